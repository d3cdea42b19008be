//! The import queue and chunk writes against a real PostgreSQL: one claimant per job, a
//! crashed job taken over at its checkpoint, chunks atomic with their events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use nexus_adapters_postgres::pool::{LARGE_MESSAGE, PgPool, PoolSettings, build_pool};
use nexus_adapters_postgres::repo::PgImportRepository;
use nexus_adapters_postgres::testing::TestDatabase;
use nexus_domain::contact::{Contact, ContactFields, EventContext};
use nexus_domain::{ContactId, EventActor, EventId, ImportId, OrgId};
use nexus_ports::imports::{
    ChunkWrite, ChunkWriteError, ImportJob, ImportRepository, ImportStatus, OnDuplicate, Turn,
};
use serde_json::json;
use uuid::Uuid;

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap() + chrono::Duration::minutes(minutes)
}

/// The turn of a chunk with nothing before it.
fn now() -> Turn {
    Box::pin(std::future::ready(true))
}

fn contact(org: OrgId, email: &str) -> (Contact, nexus_domain::DomainEvent) {
    let fields = ContactFields::parse(
        json!({"firstName": "A", "lastName": "B", "email": email})
            .as_object()
            .unwrap(),
        &[],
        None,
    )
    .unwrap();
    let ctx = EventContext {
        event_id: EventId::from_uuid(Uuid::now_v7()),
        actor: EventActor::System,
        now: at(0),
    };
    Contact::create(ContactId::from_uuid(Uuid::now_v7()), org, fields, &ctx)
}

/// A database with one organization, and a job of it over a file that is `csv`.
struct Setup {
    /// Dropping it drops the database.
    db: TestDatabase,
    repo: PgImportRepository,
    /// The repository's pool.
    pool: PgPool,
    org: OrgId,
    conn: AsyncPgConnection,
    job: ImportJob,
}

async fn setup(on_duplicate: OnDuplicate, csv: &[u8]) -> Setup {
    let db = TestDatabase::create().await;
    let pool = build_pool(
        db.url(),
        &PoolSettings {
            max_size: 4,
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let repo = PgImportRepository::new(pool.clone(), Duration::from_secs(2));
    let org = OrgId::from_uuid(Uuid::now_v7());
    let mut conn = AsyncPgConnection::establish(db.url()).await.unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO organizations (id, name, slug) VALUES ('{org}', 'Acme', 'acme')"
    ))
    .await
    .unwrap();
    let job = ImportJob::pending(
        ImportId::from_uuid(Uuid::now_v7()),
        org,
        None,
        on_duplicate,
        at(0),
    );
    assert!(repo.create(org, &job, csv, 10).await.unwrap());
    Setup {
        db,
        repo,
        pool,
        org,
        conn,
        job,
    }
}

/// Rows 1–3 of a file in two chunks: `taken@x.io` alone, then `a@x.io` and `TAKEN@x.io`,
/// whose email the first chunk took.
fn taken_then_repeated(org: OrgId, skip_taken: bool) -> (ChunkWrite, ChunkWrite) {
    let (taken, taken_event) = contact(org, "taken@x.io");
    let (a, a_event) = contact(org, "a@x.io");
    let (again, again_event) = contact(org, "TAKEN@x.io");
    let first = ChunkWrite {
        inserts: vec![(1, taken, taken_event)],
        updates: vec![],
        processed: 1,
        skipped: 0,
        failed: 0,
        errors: vec![],
        next_row: 2,
        total_rows: 3,
        fields_generation: 0,
        skip_taken,
    };
    let second = ChunkWrite {
        inserts: vec![(2, a, a_event), (3, again, again_event)],
        processed: 2,
        next_row: 4,
        ..first.clone()
    };
    (first, second)
}

#[tokio::test]
async fn claims_checkpoints_and_takeover_of_a_crashed_job() {
    let Setup {
        db: _db,
        repo,
        pool: _,
        org,
        mut conn,
        job,
    } = setup(OnDuplicate::Skip, b"firstName,lastName\n").await;
    let stale = |now: DateTime<Utc>| now - chrono::Duration::minutes(2);

    let (claimed, csv) = repo.claim_next(at(1), stale(at(1))).await.unwrap().unwrap();
    assert_eq!(
        (claimed.id, claimed.status, claimed.starts, csv.as_slice()),
        (
            job.id,
            ImportStatus::Running,
            1,
            &b"firstName,lastName\n"[..]
        )
    );
    assert!(
        repo.claim_next(at(1), stale(at(1)))
            .await
            .unwrap()
            .is_none(),
        "one worker per job"
    );

    // A chunk: two inserts, one of which collides with a live contact's email.
    let (first, second) = taken_then_repeated(org, false);
    repo.commit_chunk(org, job.id, &first, at(2), now())
        .await
        .unwrap();
    repo.commit_chunk(org, job.id, &second, at(3), now())
        .await
        .unwrap();
    let progress = repo.get(org, job.id).await.unwrap().unwrap();
    assert_eq!(
        (
            progress.next_row,
            progress.processed,
            progress.created,
            progress.failed
        ),
        (4, 3, 2, 1)
    );
    assert_eq!(progress.errors[0].row, 3);

    // A worker that lost the job commits the same rows again: refused, nothing written.
    let (d, d_event) = contact(org, "d@x.io");
    let again = ChunkWrite {
        inserts: vec![(2, d, d_event)],
        ..second.clone()
    };
    assert!(matches!(
        repo.commit_chunk(org, job.id, &again, at(3), now()).await,
        Err(ChunkWriteError::Abandoned)
    ));
    let unchanged = repo.get(org, job.id).await.unwrap().unwrap();
    assert_eq!((unchanged.next_row, unchanged.processed), (4, 3));
    assert!(
        repo.existing_by_email(org, &["d@x.io".into()])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        repo.existing_by_email(org, &["a@x.io".into(), "taken@x.io".into()])
            .await
            .unwrap()
            .len(),
        2
    );

    // A definition changes (the trigger moves the generation): a chunk validated under
    // the old definitions writes nothing, not even its checkpoint.
    conn.batch_execute(&format!(
        "INSERT INTO custom_field_definitions (organization_id, id, key, label, field_type) \
         VALUES ('{org}', gen_random_uuid(), 'plan', 'Plan', 'text')"
    ))
    .await
    .unwrap();
    let (c, c_event) = contact(org, "c@x.io");
    let stale_chunk = ChunkWrite {
        inserts: vec![(4, c, c_event)],
        processed: 1,
        next_row: 5,
        ..first.clone()
    };
    assert!(matches!(
        repo.commit_chunk(org, job.id, &stale_chunk, at(4), now())
            .await,
        Err(ChunkWriteError::DefinitionsChanged)
    ));
    let unchanged = repo.get(org, job.id).await.unwrap().unwrap();
    assert_eq!((unchanged.next_row, unchanged.processed), (4, 3));
    assert!(
        repo.existing_by_email(org, &["c@x.io".into()])
            .await
            .unwrap()
            .is_empty()
    );

    // The worker dies: while its heartbeat is fresh nobody takes the job; once stale, the
    // next worker gets it back at its checkpoint.
    assert!(
        repo.claim_next(at(4), stale(at(4)))
            .await
            .unwrap()
            .is_none()
    );
    // Its chunks committed, so this start is the first since its checkpoint.
    let (resumed, _) = repo.claim_next(at(6), stale(at(6))).await.unwrap().unwrap();
    assert_eq!(
        (
            resumed.id,
            resumed.next_row,
            resumed.created,
            resumed.starts
        ),
        (job.id, 4, 2, 1)
    );
    // Taken over again without a chunk in between: the starts add up.
    let (again, _) = repo.claim_next(at(9), stale(at(9))).await.unwrap().unwrap();
    assert_eq!((again.next_row, again.starts), (4, 2));

    repo.finish(org, job.id, ImportStatus::Completed, None, at(10))
        .await
        .unwrap();
    // The worker it was taken from wakes up: it can neither write into the ended job
    // (though its checkpoint still matches) nor end it a second time.
    #[derive(diesel::QueryableByName)]
    struct Generation {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        custom_fields_generation: i64,
    }
    let current: Generation = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(format!(
            "SELECT custom_fields_generation FROM organizations WHERE id = '{org}'"
        )),
        &mut conn,
    )
    .await
    .unwrap();
    let (e, e_event) = contact(org, "e@x.io");
    let late = ChunkWrite {
        inserts: vec![(4, e, e_event)],
        processed: 1,
        next_row: 5,
        fields_generation: current.custom_fields_generation,
        skip_taken: false,
        ..first.clone()
    };
    assert!(matches!(
        repo.commit_chunk(org, job.id, &late, at(11), now()).await,
        Err(ChunkWriteError::Abandoned)
    ));
    repo.finish(
        org,
        job.id,
        ImportStatus::Failed,
        Some("late".into()),
        at(12),
    )
    .await
    .unwrap();
    let ended = repo.get(org, job.id).await.unwrap().unwrap();
    assert_eq!(
        (ended.status, ended.next_row, ended.failure),
        (ImportStatus::Completed, 4, None)
    );
    #[derive(diesel::QueryableByName)]
    struct Entries {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let entries: Entries = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT count(*) AS n FROM audit_log WHERE action = 'contact_import.finished'",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(entries.n, 1, "a job ends once");
    assert!(
        repo.claim_next(at(60), stale(at(60)))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        repo.get(OrgId::from_uuid(Uuid::now_v7()), job.id)
            .await
            .unwrap()
            .is_none(),
        "tenant-scoped"
    );
}

#[tokio::test]
async fn chunk_updates_apply_only_at_the_version_read_with_their_events() {
    let Setup {
        db: _db,
        repo,
        pool: _,
        org,
        mut conn,
        job,
    } = setup(OnDuplicate::Update, b"firstName,lastName,email\n").await;
    let (fresh, fresh_event) = contact(org, "fresh@x.io");
    let (stale, stale_event) = contact(org, "stale@x.io");
    let inserts = ChunkWrite {
        inserts: vec![
            (1, fresh.clone(), fresh_event),
            (2, stale.clone(), stale_event),
        ],
        updates: vec![],
        processed: 2,
        skipped: 0,
        failed: 0,
        errors: vec![],
        next_row: 3,
        total_rows: 4,
        fields_generation: 0,
        skip_taken: false,
    };
    repo.commit_chunk(org, job.id, &inserts, at(1), now())
        .await
        .unwrap();
    // Someone edits one of them between the worker's read and its write.
    conn.batch_execute(&format!(
        "UPDATE contacts SET version = version + 1 WHERE id = '{}'",
        stale.id
    ))
    .await
    .unwrap();
    let renamed = |c: &Contact| {
        let mut fields = c.fields.clone();
        fields.company = Some(nexus_domain::contact::CompanyName::parse("Engines").unwrap());
        let ctx = EventContext {
            event_id: EventId::from_uuid(Uuid::now_v7()),
            actor: EventActor::System,
            now: at(2),
        };
        c.update(fields, &ctx).unwrap()
    };
    let (fresh_new, fresh_update) = renamed(&fresh);
    let (stale_new, stale_update) = renamed(&stale);
    let updates = ChunkWrite {
        inserts: vec![],
        updates: vec![
            (3, fresh_new, fresh.version, fresh_update),
            (4, stale_new, stale.version, stale_update),
        ],
        processed: 2,
        next_row: 5,
        ..inserts.clone()
    };
    repo.commit_chunk(org, job.id, &updates, at(2), now())
        .await
        .unwrap();
    let progress = repo.get(org, job.id).await.unwrap().unwrap();
    assert_eq!(
        (
            progress.created,
            progress.updated,
            progress.failed,
            progress.next_row
        ),
        (2, 1, 1, 5)
    );
    assert_eq!(progress.errors[0].row, 4);
    let found = repo
        .existing_by_email(
            org,
            &["fresh@x.io".into(), "stale@x.io".into(), "none@x.io".into()],
        )
        .await
        .unwrap();
    let company = |email: &str| {
        found
            .iter()
            .find(|c| c.fields.email.as_ref().is_some_and(|e| e.as_str() == email))
            .and_then(|c| c.fields.company.as_ref().map(|n| n.as_str().to_owned()))
    };
    assert_eq!(company("fresh@x.io").as_deref(), Some("Engines"));
    assert_eq!(company("stale@x.io"), None, "changed meanwhile: left alone");
    #[derive(diesel::QueryableByName)]
    struct Event {
        #[diesel(sql_type = diesel::sql_types::Text)]
        kind: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        contact: String,
    }
    let events: Vec<Event> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT type AS kind, coalesce(payload->>'id', payload->'contact'->>'id') AS contact FROM events ORDER BY append_seq",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    let events: Vec<(String, String)> = events.into_iter().map(|e| (e.kind, e.contact)).collect();
    assert_eq!(
        events,
        vec![
            ("contact.created".into(), fresh.id.to_string()),
            ("contact.created".into(), stale.id.to_string()),
            ("contact.updated".into(), fresh.id.to_string()),
        ]
    );
}

#[tokio::test]
async fn a_chunk_written_beside_the_one_before_commits_after_it_or_not_at_all() {
    let Setup {
        db: _db,
        repo,
        pool: _,
        org,
        mut conn,
        job,
    } = setup(OnDuplicate::Skip, b"firstName,lastName,email\n").await;
    let chunk = |row: i64, email: &str| {
        let (c, event) = contact(org, email);
        ChunkWrite {
            inserts: vec![(row, c, event)],
            updates: vec![],
            processed: 1,
            skipped: 0,
            failed: 0,
            errors: vec![],
            next_row: row + 1,
            total_rows: 3,
            fields_generation: 0,
            skip_taken: false,
        }
    };
    let (first, second, third) = (chunk(1, "a@x.io"), chunk(2, "b@x.io"), chunk(3, "c@x.io"));
    let checkpoint = async || repo.get(org, job.id).await.unwrap().unwrap().next_row;

    // The second chunk starts first; it may write its rows, but not commit before the first.
    let (go, signal) = tokio::sync::oneshot::channel::<()>();
    let second_write = repo.commit_chunk(
        org,
        job.id,
        &second,
        at(2),
        Box::pin(async move { signal.await.is_ok() }),
    );
    let first_then_go = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(checkpoint().await, 1, "the second chunk waits for its turn");
        repo.commit_chunk(org, job.id, &first, at(1), now())
            .await
            .unwrap();
        assert_eq!(checkpoint().await, 2);
        go.send(()).unwrap();
    };
    let (second_written, ()) = tokio::join!(second_write, first_then_go);
    second_written.unwrap();
    let progress = repo.get(org, job.id).await.unwrap().unwrap();
    assert_eq!((progress.next_row, progress.created), (3, 2));

    // A chunk whose predecessor failed rolls back: no row, event or checkpoint of it.
    assert!(matches!(
        repo.commit_chunk(
            org,
            job.id,
            &third,
            at(3),
            Box::pin(std::future::ready(false))
        )
        .await,
        Err(ChunkWriteError::Abandoned)
    ));
    let unchanged = repo.get(org, job.id).await.unwrap().unwrap();
    assert_eq!((unchanged.next_row, unchanged.created), (3, 2));
    assert!(
        repo.existing_by_email(org, &["c@x.io".into()])
            .await
            .unwrap()
            .is_empty()
    );

    // Events follow the commit order, which is the file order, and are numbered at the
    // commit (no numbering pass runs here).
    #[derive(diesel::QueryableByName)]
    struct Event {
        #[diesel(sql_type = diesel::sql_types::Text)]
        contact: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        seq: Option<i64>,
    }
    let events: Vec<Event> = diesel_async::RunQueryDsl::load(
        diesel::sql_query("SELECT coalesce(payload->>'id', payload->'contact'->>'id') AS contact, seq FROM events ORDER BY append_seq"),
        &mut conn,
    )
    .await
    .unwrap();
    let ids = |c: &ChunkWrite| c.inserts[0].1.id.to_string();
    assert_eq!(
        events
            .into_iter()
            .map(|e| (e.contact, e.seq))
            .collect::<Vec<_>>(),
        [(ids(&first), Some(1)), (ids(&second), Some(2))]
    );
}

/// A contact parsed from `body` under a `seats` number field, created at `at(0)`.
fn contact_from(org: OrgId, body: &serde_json::Value) -> (Contact, nexus_domain::DomainEvent) {
    let seats = nexus_domain::custom_field::FieldSpec::new(
        "seats",
        "Seats",
        nexus_domain::custom_field::FieldType::Number,
        false,
        &[],
    )
    .unwrap();
    let fields = ContactFields::parse(body.as_object().unwrap(), &[seats], None).unwrap();
    let ctx = EventContext {
        event_id: EventId::from_uuid(Uuid::now_v7()),
        actor: EventActor::System,
        now: at(0),
    };
    Contact::create(ContactId::from_uuid(Uuid::now_v7()), org, fields, &ctx)
}

#[tokio::test]
async fn every_field_of_a_chunk_is_stored_as_written_each_row_with_its_own_tags() {
    let Setup {
        db: _db,
        repo,
        pool: _,
        org,
        mut conn,
        job,
    } = setup(OnDuplicate::Update, b"firstName,lastName,email\n").await;
    let owner = Uuid::now_v7();
    conn.batch_execute(&format!(
        "INSERT INTO users (id, email, name, password_hash) VALUES ('{owner}', 'o@x.io', 'O', 'x')"
    ))
    .await
    .unwrap();
    // Rows with no tags first, between and last, so that a slice off by one shows.
    let bodies = [
        json!({"firstName": "Ada", "lastName": "L", "email": "ada@x.io"}),
        json!({"firstName": "Bo", "lastName": "M", "email": "bo@x.io", "tags": ["vip"],
               "phone": "+44 20 7946 0958", "company": "Engines", "lifecycleStage": "customer",
               "ownerId": owner, "customFields": {"seats": 3}}),
        json!({"firstName": "Cy", "lastName": "N", "email": "cy@x.io", "phone": "555-0100"}),
        json!({"firstName": "Di", "lastName": "O", "email": "di@x.io", "tags": ["a", "b, \"c\"", "d"]}),
        json!({"firstName": "Ed", "lastName": "P", "email": "ed@x.io"}),
    ];
    let rows: Vec<_> = bodies.iter().map(|b| contact_from(org, b)).collect();
    let inserts = ChunkWrite {
        inserts: (1..)
            .zip(&rows)
            .map(|(row, (c, e))| (row, c.clone(), e.clone()))
            .collect(),
        updates: vec![],
        processed: 5,
        skipped: 0,
        failed: 0,
        errors: vec![],
        next_row: 6,
        total_rows: 10,
        fields_generation: 0,
        skip_taken: false,
    };
    repo.commit_chunk(org, job.id, &inserts, at(1), now())
        .await
        .unwrap();
    let emails: Vec<String> = ["ada", "bo", "cy", "di", "ed"]
        .iter()
        .map(|n| format!("{n}@x.io"))
        .collect();
    let stored = repo.existing_by_email(org, &emails).await.unwrap();
    let written: Vec<Contact> = rows.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(stored, written);

    // Updates that move tags between rows: the first gains some, the fourth loses all.
    let retag = |c: &Contact, tags: &[&str]| {
        let mut fields = c.fields.clone();
        fields.tags = nexus_domain::contact::Tags::parse(tags).unwrap();
        let ctx = EventContext {
            event_id: EventId::from_uuid(Uuid::now_v7()),
            actor: EventActor::System,
            now: at(2),
        };
        c.update(fields, &ctx).unwrap()
    };
    let (ada, ada_event) = retag(&written[0], &["x", "y"]);
    let (di, di_event) = retag(&written[3], &[]);
    let (bo, bo_event) = retag(&written[1], &["vip", "z"]);
    let updates = ChunkWrite {
        inserts: vec![],
        updates: vec![
            (6, ada.clone(), written[0].version, ada_event),
            (7, di.clone(), written[3].version, di_event),
            (8, bo.clone(), written[1].version, bo_event),
        ],
        processed: 3,
        next_row: 9,
        ..inserts.clone()
    };
    repo.commit_chunk(org, job.id, &updates, at(2), now())
        .await
        .unwrap();
    let stored = repo.existing_by_email(org, &emails).await.unwrap();
    assert_eq!(
        stored,
        vec![ada, bo, written[2].clone(), di, written[4].clone()]
    );

    // Every event as written, in chunk order: id, type, time, actor and payload.
    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct StoredEvent {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Text)]
        kind: String,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        occurred_at: DateTime<Utc>,
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        actor: serde_json::Value,
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        payload: serde_json::Value,
    }
    let stored: Vec<StoredEvent> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT id, type AS kind, occurred_at, actor, payload FROM events ORDER BY seq",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    let expected: Vec<StoredEvent> = rows
        .iter()
        .map(|(_, e)| e)
        .chain(updates.updates.iter().map(|(_, _, _, e)| e))
        .map(|e| StoredEvent {
            id: e.id.as_uuid(),
            kind: e.event_type.as_str().to_owned(),
            occurred_at: e.occurred_at,
            actor: serde_json::to_value(&e.actor).unwrap(),
            payload: e.payload.clone(),
        })
        .collect();
    assert_eq!(stored, expected);
}

/// The driver's buffers keep the size of the largest message a connection carried, so a
/// connection that carried a large file is closed after use instead of pooled; one that
/// carried a small file goes back to the pool.
#[tokio::test]
async fn a_connection_that_carried_a_large_file_is_closed_not_pooled() {
    let small = b"firstName,lastName\nAda,Lovelace\n";
    let Setup {
        db: _db,
        repo,
        pool,
        org,
        conn: _,
        job,
    } = setup(OnDuplicate::Skip, small).await;
    assert_eq!(
        pool.status().size,
        1,
        "a small upload's connection is pooled"
    );

    let mut large = b"firstName,lastName\n".to_vec();
    while large.len() <= LARGE_MESSAGE {
        large.extend_from_slice(b"Ada,Lovelace\n");
    }
    let big = ImportJob::pending(
        ImportId::from_uuid(Uuid::now_v7()),
        org,
        None,
        OnDuplicate::Skip,
        at(1),
    );
    assert!(repo.create(org, &big, &large, 10).await.unwrap());
    assert_eq!(
        pool.status().size,
        0,
        "a large upload's connection is closed"
    );

    let stale = at(0);
    let (claimed, csv) = repo.claim_next(at(2), stale).await.unwrap().unwrap();
    assert_eq!((claimed.id, csv.as_slice()), (job.id, &small[..]));
    assert_eq!(
        pool.status().size,
        1,
        "a small claim's connection is pooled"
    );

    let (claimed, csv) = repo.claim_next(at(2), stale).await.unwrap().unwrap();
    assert_eq!(claimed.id, big.id);
    assert!(csv == large, "the large file comes back whole");
    assert_eq!(
        pool.status().size,
        0,
        "a large claim's connection is closed"
    );
}

/// The contacts table's statistics and the pages they counted.
async fn contacts_stats(conn: &mut AsyncPgConnection) -> (f32, i32) {
    #[derive(diesel::QueryableByName)]
    struct Stats {
        #[diesel(sql_type = diesel::sql_types::Float)]
        reltuples: f32,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        relpages: i32,
    }
    let s: Stats = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT reltuples, relpages FROM pg_class WHERE oid = 'contacts'::regclass",
        ),
        conn,
    )
    .await
    .unwrap();
    (s.reltuples, s.relpages)
}

/// With no statistics, PostgreSQL may answer the lookup by email through an index that
/// reads every contact of the organization per address (a first import into a new
/// database ran 12 times slower until autovacuum came). The lookup analyzes a table
/// that has outgrown its statistics, and leaves one that has not alone.
#[tokio::test]
async fn the_lookup_by_email_analyzes_a_table_that_outgrew_its_statistics() {
    let Setup {
        db: _db,
        repo,
        org,
        mut conn,
        ..
    } = setup(OnDuplicate::Skip, b"firstName,lastName,email\n").await;
    let add = |from: i32, to: i32| {
        format!(
            "INSERT INTO contacts (organization_id, id, first_name, last_name, email)
             SELECT '{org}', gen_random_uuid(), 'F', 'L', 'p' || i || '@x.io'
             FROM generate_series({from}, {to}) AS i"
        )
    };
    conn.batch_execute(&add(1, 3000)).await.unwrap();
    let (_, pages_before) = contacts_stats(&mut conn).await;
    assert_eq!(
        pages_before, 0,
        "a new database's contacts were never analyzed"
    );

    let found = repo
        .existing_by_email(org, &["p7@x.io".into(), "none@x.io".into()])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    let (tuples, pages) = contacts_stats(&mut conn).await;
    assert_eq!(tuples, 3000.0, "analyzed before the lookup");
    assert!(pages > 0);

    // Grown by a tenth: the statistics still hold, nothing is analyzed again.
    conn.batch_execute(&add(3001, 3300)).await.unwrap();
    repo.existing_by_email(org, &["p3100@x.io".into()])
        .await
        .unwrap();
    assert_eq!(contacts_stats(&mut conn).await, (3000.0, pages));

    // Past twice the pages counted: analyzed again.
    conn.batch_execute(&add(3301, 9000)).await.unwrap();
    repo.existing_by_email(org, &["p8000@x.io".into()])
        .await
        .unwrap();
    assert_eq!(contacts_stats(&mut conn).await.0, 9000.0);
}

/// A plan made for a new organization's id takes it from the statistics, where it is
/// absent, expects about one contact, and may read them all per address through
/// another index that leads with the organization: which one wins that near tie
/// depends on the indexes' sizes, so a narrow index on the organization alone stands
/// in for the loser here. The lookup of 1,000 addresses among 20,000 contacts of such
/// an organization then takes seconds (the statement timeout here is 1 s); through the
/// email index it takes milliseconds.
#[tokio::test]
async fn the_lookup_by_email_probes_the_email_index_for_an_organization_new_to_the_statistics() {
    let db = TestDatabase::create().await;
    let pool = build_pool(
        db.url(),
        &PoolSettings {
            max_size: 2,
            statement_timeout: Duration::from_secs(1),
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let repo = PgImportRepository::new(pool, Duration::from_secs(2));
    let (known, new) = (
        OrgId::from_uuid(Uuid::now_v7()),
        OrgId::from_uuid(Uuid::now_v7()),
    );
    let mut conn = AsyncPgConnection::establish(db.url()).await.unwrap();
    let add = |org: OrgId, prefix: &str, n: i32| {
        format!(
            "INSERT INTO contacts (organization_id, id, first_name, last_name, email)
             SELECT '{org}', gen_random_uuid(), 'F', 'L', '{prefix}' || i || '@x.io'
             FROM generate_series(1, {n}) AS i"
        )
    };
    conn.batch_execute(&format!(
        "INSERT INTO organizations (id, name, slug) VALUES ('{known}', 'Known', 'known'), ('{new}', 'New', 'new');
         {}; CREATE INDEX contacts_org_only ON contacts (organization_id);
         ANALYZE contacts; {}",
        add(known, "a", 50_000),
        add(new, "b", 20_000),
    ))
    .await
    .unwrap();

    let emails: Vec<String> = (1..=1000).map(|i| format!("b{}@x.io", i * 20)).collect();
    let found = repo.existing_by_email(new, &emails).await.unwrap();
    assert_eq!(found.len(), 1000);
    let (tuples, _) = contacts_stats(&mut conn).await;
    assert_eq!(
        tuples, 50_000.0,
        "not grown past twice its pages: not analyzed again"
    );
}

#[tokio::test]
async fn organizations_take_turns_in_the_queue() {
    let Setup {
        db: _db,
        repo,
        pool: _,
        org: busy,
        mut conn,
        job: first,
    } = setup(OnDuplicate::Skip, b"firstName,lastName\n").await;
    let queue = |org: OrgId, minute: i64| {
        ImportJob::pending(
            ImportId::from_uuid(Uuid::now_v7()),
            org,
            None,
            OnDuplicate::Skip,
            at(minute),
        )
    };
    let second = queue(busy, 1);
    assert!(
        repo.create(busy, &second, b"firstName,lastName\n", 10)
            .await
            .unwrap()
    );
    let other = OrgId::from_uuid(Uuid::now_v7());
    conn.batch_execute(&format!(
        "INSERT INTO organizations (id, name, slug) VALUES ('{other}', 'Other', 'other')"
    ))
    .await
    .unwrap();
    // Queued after both of the busy organization's jobs.
    let theirs = queue(other, 2);
    assert!(
        repo.create(other, &theirs, b"firstName,lastName\n", 10)
            .await
            .unwrap()
    );

    let stale = at(0) - chrono::Duration::minutes(2);
    let mut order = Vec::new();
    for minute in 3..6 {
        let (job, _) = repo.claim_next(at(minute), stale).await.unwrap().unwrap();
        order.push(job.id);
    }
    assert_eq!(order, [first.id, theirs.id, second.id]);
}

/// An organization's unfinished imports are bounded, also against concurrent uploads;
/// finished ones and other organizations' do not count.
#[tokio::test]
async fn unfinished_imports_are_bounded_per_organization() {
    let Setup {
        db,
        org,
        mut conn,
        job: first,
        ..
    } = setup(OnDuplicate::Skip, b"firstName,lastName\n").await;
    let pool = build_pool(
        db.url(),
        &PoolSettings {
            max_size: 6,
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let repo = PgImportRepository::new(pool, Duration::from_secs(5));
    let pending = |org: OrgId| {
        ImportJob::pending(
            ImportId::from_uuid(Uuid::now_v7()),
            org,
            None,
            OnDuplicate::Skip,
            at(1),
        )
    };
    let csv = b"firstName,lastName\n".as_slice();
    // One pending already (the setup's): room for two more under a bound of three.
    let jobs: Vec<ImportJob> = (0..6).map(|_| pending(org)).collect();
    let stored =
        futures_util::future::join_all(jobs.iter().map(|job| repo.create(org, job, csv, 3))).await;
    assert_eq!(
        stored.iter().filter(|s| matches!(s, Ok(true))).count(),
        2,
        "{stored:?}"
    );
    assert_eq!(stored.iter().filter(|s| matches!(s, Ok(false))).count(), 4);
    #[derive(diesel::QueryableByName)]
    struct Stored {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let stored_jobs: Stored = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(format!(
            "SELECT count(*) AS n FROM contact_imports WHERE organization_id = '{org}'"
        )),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(stored_jobs.n, 3, "a refused file is not stored");

    // A finished job makes room; another organization has its own bound.
    conn.batch_execute(&format!(
        "UPDATE contact_imports SET status = 'completed' WHERE id = '{}'",
        first.id
    ))
    .await
    .unwrap();
    assert!(repo.create(org, &pending(org), csv, 3).await.unwrap());
    assert!(!repo.create(org, &pending(org), csv, 3).await.unwrap());
    let other = OrgId::from_uuid(Uuid::now_v7());
    conn.batch_execute(&format!(
        "INSERT INTO organizations (id, name, slug) VALUES ('{other}', 'Other', 'other')"
    ))
    .await
    .unwrap();
    assert!(repo.create(other, &pending(other), csv, 3).await.unwrap());
}

/// `onDuplicate=skip`: a row whose email another contact took after the chunk looked it
/// up is skipped as the caller asked, not failed; nothing of it is written.
#[tokio::test]
async fn an_email_taken_meanwhile_is_skipped_when_duplicates_are_skipped() {
    let Setup {
        db: _db,
        repo,
        org,
        job,
        ..
    } = setup(OnDuplicate::Skip, b"firstName,lastName,email\n").await;
    repo.claim_next(at(1), at(-1)).await.unwrap().unwrap();
    let (first, second) = taken_then_repeated(org, true);
    repo.commit_chunk(org, job.id, &first, at(2), now())
        .await
        .unwrap();
    repo.commit_chunk(org, job.id, &second, at(3), now())
        .await
        .unwrap();
    let progress = repo.get(org, job.id).await.unwrap().unwrap();
    assert_eq!(
        (
            progress.processed,
            progress.created,
            progress.skipped,
            progress.failed
        ),
        (3, 2, 1, 0)
    );
    assert!(progress.errors.is_empty(), "{:?}", progress.errors);
}
