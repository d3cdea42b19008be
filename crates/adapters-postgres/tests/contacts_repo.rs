//! The contacts and custom field repositories against a real PostgreSQL: tenancy,
//! atomic outbox writes, constraints, optimistic concurrency, keyset pagination, filters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Jsonb, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use nexus_adapters_postgres::numberer::CommitBell;
use nexus_adapters_postgres::pool::{PoolSettings, build_pool};
use nexus_adapters_postgres::repo::{PgContactRepository, PgCustomFieldRepository};
use nexus_adapters_postgres::testing::TestDatabase;
use nexus_domain::contact::{Contact, ContactFields, EventContext, LifecycleStage};
use nexus_domain::custom_field::{CustomFieldDefinition, FieldSpec, FieldType};
use nexus_domain::{ContactId, CustomFieldId, EventActor, EventId, OrgId, UserId};
use nexus_ports::contacts::{
    ContactFilter, ContactQuery, ContactRepository, ContactWriteError, CustomFieldRepository,
    DefinitionWriteError, Sort, SortField, TagMode,
};
use serde_json::{Value, json};
use uuid::Uuid;

struct Fixture {
    db: TestDatabase,
    contacts: PgContactRepository,
    fields: PgCustomFieldRepository,
    org: OrgId,
    other_org: OrgId,
    user: UserId,
}

async fn fixture() -> Fixture {
    let db = TestDatabase::create().await;
    let pool = build_pool(
        db.url(),
        &PoolSettings {
            max_size: 2,
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let (org, other_org, user) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut conn = AsyncPgConnection::establish(db.url()).await.unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO organizations (id, name, slug) VALUES ('{org}', 'Acme', 'acme'), ('{other_org}', 'Other', 'other');
         INSERT INTO users (id, email, name, password_hash) VALUES ('{user}', 'owner@acme.test', 'Owner', 'x');
         INSERT INTO memberships (organization_id, user_id, role) VALUES ('{org}', '{user}', 'OWNER');"
    ))
    .await
    .unwrap();
    Fixture {
        contacts: PgContactRepository::new(pool.clone(), Duration::from_secs(2)),
        fields: PgCustomFieldRepository::new(pool, Duration::from_secs(2)),
        db,
        org: OrgId::from_uuid(org),
        other_org: OrgId::from_uuid(other_org),
        user: UserId::from_uuid(user),
    }
}

fn ctx(user: UserId) -> EventContext {
    EventContext {
        event_id: EventId::from_uuid(Uuid::now_v7()),
        actor: EventActor::User { id: user },
        // Stored timestamps have microseconds.
        now: DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap(),
    }
}

fn fields(body: Value, defs: &[FieldSpec]) -> ContactFields {
    ContactFields::parse(body.as_object().unwrap(), defs, None).unwrap()
}

impl Fixture {
    async fn create(&self, org: OrgId, body: Value) -> Contact {
        let set = self.fields.field_set(org).await.unwrap();
        let (contact, event) = Contact::create(
            ContactId::from_uuid(Uuid::now_v7()),
            org,
            fields(body, &set.specs),
            &ctx(self.user),
        );
        self.contacts
            .insert(org, &contact, &event, set.generation)
            .await
            .unwrap();
        contact
    }

    async fn count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = AsyncPgConnection::establish(self.db.url()).await.unwrap();
        diesel::sql_query(sql)
            .get_result::<N>(&mut conn)
            .await
            .unwrap()
            .n
    }

    async fn json(&self, sql: &str) -> Vec<Value> {
        #[derive(QueryableByName)]
        struct J {
            #[diesel(sql_type = Jsonb)]
            j: Value,
        }
        let mut conn = AsyncPgConnection::establish(self.db.url()).await.unwrap();
        diesel::sql_query(sql)
            .load::<J>(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.j)
            .collect()
    }
}

fn query(filter: ContactFilter) -> ContactQuery {
    ContactQuery {
        filter,
        sort: Sort::DEFAULT,
        limit: 50,
        after: None,
        include_total: false,
    }
}

fn names(items: &[Contact]) -> Vec<String> {
    items
        .iter()
        .map(|c| c.fields.first_name.as_str().to_owned())
        .collect()
}

#[tokio::test]
async fn insert_get_and_the_event_land_together_and_stay_in_their_tenant() {
    let f = fixture().await;
    let c = f
        .create(f.org, json!({"firstName": "Ada", "lastName": "Lovelace", "email": "Ada@Example.com", "phone": "+44 20 7946 0958", "tags": ["VIP"], "ownerId": f.user.to_string()}))
        .await;
    let got = f.contacts.get(f.org, c.id, false).await.unwrap().unwrap();
    assert_eq!(got, c);
    assert_eq!(
        f.contacts.get(f.other_org, c.id, true).await.unwrap(),
        None,
        "another tenant sees nothing"
    );
    assert_eq!(
        f.count("SELECT count(*) AS n FROM events WHERE type = 'contact.created'")
            .await,
        1
    );
    assert_eq!(
        f.count("SELECT count(*) AS n FROM contacts WHERE phone_e164 = '+442079460958'")
            .await,
        1
    );

    // The event's contact is what the set-based SQL (contact_event_json) renders too.
    let sql_doc = &f
        .json("SELECT contact_event_json(c) AS j FROM contacts c")
        .await[0];
    let event_doc = &f.json("SELECT payload -> 'contact' AS j FROM events").await[0];
    let strip = |v: &Value| {
        let mut v = v.clone();
        for k in ["createdAt", "updatedAt"] {
            let t: DateTime<Utc> = serde_json::from_value(v[k].clone()).unwrap();
            v[k] = json!(t.timestamp_micros());
        }
        v
    };
    assert_eq!(strip(sql_doc), strip(event_doc));
}

#[tokio::test]
async fn duplicate_emails_are_refused_case_insensitively_among_live_contacts() {
    let f = fixture().await;
    let first = f
        .create(
            f.org,
            json!({"firstName": "A", "lastName": "B", "email": "same@example.com"}),
        )
        .await;
    let (dupe, event) = Contact::create(
        ContactId::from_uuid(Uuid::now_v7()),
        f.org,
        fields(
            json!({"firstName": "C", "lastName": "D", "email": "SAME@example.com"}),
            &[],
        ),
        &ctx(f.user),
    );
    assert!(matches!(
        f.contacts.insert(f.org, &dupe, &event, 0).await,
        Err(ContactWriteError::DuplicateEmail)
    ));
    assert_eq!(
        f.count("SELECT count(*) AS n FROM contacts").await,
        1,
        "nothing written"
    );
    assert_eq!(
        f.count("SELECT count(*) AS n FROM events").await,
        1,
        "no orphan event"
    );
    // Another organization may hold the same address.
    f.create(
        f.other_org,
        json!({"firstName": "C", "lastName": "D", "email": "same@example.com"}),
    )
    .await;
    // Once the first is deleted, the address is free again.
    let (deleted, event) = first.delete(&ctx(f.user));
    f.contacts
        .save(f.org, &deleted, first.version, &event, None)
        .await
        .unwrap();
    f.contacts
        .insert(
            f.org,
            &dupe,
            &Contact::create(dupe.id, f.org, dupe.fields.clone(), &ctx(f.user)).1,
            0,
        )
        .await
        .unwrap();
    assert_eq!(
        f.contacts.get(f.org, first.id, false).await.unwrap(),
        None,
        "deleted contacts disappear from reads"
    );
    assert!(
        f.contacts
            .get(f.org, first.id, true)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn owners_must_be_members_of_the_organization() {
    let f = fixture().await;
    let stranger = Uuid::now_v7();
    let (c, e) = Contact::create(
        ContactId::from_uuid(Uuid::now_v7()),
        f.org,
        fields(
            json!({"firstName": "A", "lastName": "B", "ownerId": stranger.to_string()}),
            &[],
        ),
        &ctx(f.user),
    );
    assert!(matches!(
        f.contacts.insert(f.org, &c, &e, 0).await,
        Err(ContactWriteError::OwnerNotMember)
    ));
    assert_eq!(f.count("SELECT count(*) AS n FROM contacts").await, 0);
    // The contact, its event and its audit entry are one statement: none of them.
    assert_eq!(
        f.count("SELECT count(*) AS n FROM events WHERE type = 'contact.created'")
            .await,
        0
    );
    assert_eq!(
        f.count("SELECT count(*) AS n FROM audit_log WHERE action = 'contact.created'")
            .await,
        0
    );
}

#[tokio::test]
async fn saves_are_guarded_by_the_version() {
    let f = fixture().await;
    let c = f
        .create(f.org, json!({"firstName": "Ada", "lastName": "Lovelace"}))
        .await;
    let patched = c
        .apply_merge_patch(json!({"company": "Engines"}).as_object().unwrap(), &[])
        .unwrap();
    let (v2, event) = c.update(patched, &ctx(f.user)).unwrap();
    f.contacts.save(f.org, &v2, 1, &event, None).await.unwrap();
    assert_eq!(
        f.contacts.get(f.org, c.id, false).await.unwrap().unwrap(),
        v2
    );

    // A writer still holding version 1 loses and changes nothing.
    let stale = c
        .apply_merge_patch(json!({"company": "Other"}).as_object().unwrap(), &[])
        .unwrap();
    let (stale, event) = c.update(stale, &ctx(f.user)).unwrap();
    assert!(matches!(
        f.contacts.save(f.org, &stale, 1, &event, None).await,
        Err(ContactWriteError::VersionMismatch { current: 2 })
    ));
    assert_eq!(
        f.contacts
            .get(f.org, c.id, false)
            .await
            .unwrap()
            .unwrap()
            .fields
            .company
            .unwrap()
            .as_str(),
        "Engines"
    );
    assert_eq!(
        f.count("SELECT count(*) AS n FROM events WHERE type = 'contact.updated'")
            .await,
        1
    );
    // Another tenant's id is simply not found.
    assert!(matches!(
        f.contacts.save(f.other_org, &stale, 2, &event, None).await,
        Err(ContactWriteError::NotFound)
    ));
}

#[tokio::test]
async fn an_export_reads_one_snapshot_whatever_changes_meanwhile() {
    let f = fixture().await;
    let mut made = Vec::new();
    for name in ["A", "B", "C", "D", "E"] {
        made.push(
            f.create(f.org, json!({"firstName": name, "lastName": "X"}))
                .await,
        );
    }
    f.create(f.other_org, json!({"firstName": "Theirs", "lastName": "X"}))
        .await;
    let by_update = ContactQuery {
        sort: Sort {
            field: SortField::UpdatedAt,
            descending: false,
        },
        limit: 2,
        ..query(ContactFilter::default())
    };
    let mut pages = f.contacts.export(f.org, by_update.clone()).await.unwrap();
    let mut seen = names(&pages.next_page().await.unwrap());
    assert_eq!(seen, ["A", "B"]);
    // A (read already) and D (not yet) change: by `updatedAt` both move to the end, so
    // pages read each from the database as it is then would give A twice.
    for c in [&made[0], &made[3]] {
        let patched = c
            .apply_merge_patch(json!({"company": "Moved"}).as_object().unwrap(), &[])
            .unwrap();
        let (v2, event) = c.update(patched, &ctx(f.user)).unwrap();
        f.contacts.save(f.org, &v2, 1, &event, None).await.unwrap();
    }
    loop {
        let page = pages.next_page().await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(
            page.iter().all(|c| c.fields.company.is_none()),
            "as of the snapshot"
        );
        seen.extend(names(&page));
    }
    assert_eq!(seen, ["A", "B", "C", "D", "E"]);
    assert!(pages.next_page().await.unwrap().is_empty());

    // Left before its last page, the snapshot's connection is closed, not pooled while
    // still in its transaction.
    let mut pages = f.contacts.export(f.org, by_update).await.unwrap();
    assert_eq!(pages.next_page().await.unwrap().len(), 2);
    let in_transaction = "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND state LIKE 'idle in transaction%'";
    assert_eq!(f.count(in_transaction).await, 1);
    drop(pages);
    let started = std::time::Instant::now();
    while f.count(in_transaction).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the snapshot's connection stayed open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.create(f.org, json!({"firstName": "After", "lastName": "X"}))
        .await;
}

#[tokio::test]
async fn keyset_pages_walk_every_sort_exactly_once_in_order() {
    let f = fixture().await;
    let last_names = ["Zed", "Adams", "Moss", "adams", "Brown", "Moss", "Young"];
    let mut created = Vec::new();
    for (i, last) in last_names.iter().enumerate() {
        let stage = LifecycleStage::ALL[i % 7].as_str();
        created.push(f.create(f.org, json!({"firstName": format!("P{i}"), "lastName": last, "lifecycleStage": stage, "email": if i % 2 == 0 { json!(format!("p{i}@x.io")) } else { json!(null) }})).await);
    }
    f.create(
        f.other_org,
        json!({"firstName": "Other", "lastName": "Tenant"}),
    )
    .await;
    // Updated in an order of their own (not their creation order), so that a sort by
    // `updatedAt` that read `createdAt` would fail.
    let shuffled = [3_usize, 0, 5, 1, 6, 2, 4];
    for (minute, &i) in shuffled.iter().enumerate() {
        f.json(&format!(
            "UPDATE contacts SET updated_at = now() + interval '{minute} minutes' \
             WHERE id = '{}' RETURNING '{{}}'::jsonb AS j",
            created[i].id
        ))
        .await;
    }
    for c in &mut created {
        *c = f.contacts.get(f.org, c.id, false).await.unwrap().unwrap();
    }
    // Last names in the database's own collation (which the keyset compares in).
    let by_last_name: Vec<String> = f
        .json(&format!(
            "SELECT to_jsonb(first_name) AS j FROM contacts WHERE organization_id = '{}' \
             ORDER BY last_name, id",
            f.org
        ))
        .await
        .into_iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    for field in SortField::ALL {
        for descending in [false, true] {
            let sort = Sort { field, descending };
            let mut seen = Vec::new();
            let mut q = ContactQuery {
                sort,
                limit: 2,
                ..query(ContactFilter::default())
            };
            loop {
                let page = f.contacts.list(f.org, &q).await.unwrap();
                assert!(page.items.len() <= 2);
                seen.extend(page.items);
                match page.next {
                    Some(next) => q.after = Some(next),
                    None => break,
                }
            }
            let mut expected = created.clone();
            expected.sort_by(|a, b| {
                let key = |c: &Contact| match field {
                    SortField::CreatedAt => (c.created_at.timestamp_micros().to_string(), c.id),
                    SortField::UpdatedAt => (c.updated_at.timestamp_micros().to_string(), c.id),
                    SortField::LastName => (String::new(), c.id), // from the database, below
                    SortField::LeadScore => (format!("{:03}", c.lead_score.value()), c.id),
                };
                key(a).cmp(&key(b))
            });
            let mut expected = if field == SortField::LastName {
                by_last_name.clone()
            } else {
                names(&expected)
            };
            if descending {
                expected.reverse();
            }
            assert_eq!(names(&seen), expected, "{}", sort.as_param());
        }
    }
}

#[tokio::test]
async fn filters_search_and_totals() {
    let f = fixture().await;
    let spec = FieldSpec::new(
        "industry",
        "Industry",
        FieldType::Select,
        false,
        &["saas".into(), "retail".into()],
    )
    .unwrap();
    let now = Utc::now();
    let def = CustomFieldDefinition {
        id: CustomFieldId::from_uuid(Uuid::now_v7()),
        organization_id: f.org,
        spec,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    f.fields.insert(f.org, &def, 200).await.unwrap();
    let ada = f.create(f.org, json!({"firstName": "Ada", "lastName": "Lovelace", "email": "ada@engines.io", "company": "Analytical Engines", "phone": "+44 20 7946 0958", "tags": ["vip", "math"], "lifecycleStage": "customer", "ownerId": f.user.to_string(), "customFields": {"industry": "saas"}})).await;
    let grace = f.create(f.org, json!({"firstName": "Grace", "lastName": "Hopper", "email": "grace@navy.mil", "company": "US Navy", "tags": ["vip"], "customFields": {"industry": "retail"}})).await;
    let _alan = f.create(f.org, json!({"firstName": "Alan", "lastName": "Turing", "company": "Bletchley 100%_Park", "tags": ["math"]})).await;
    f.create(
        f.other_org,
        json!({"firstName": "Ada", "lastName": "Lovelace"}),
    )
    .await;

    let run = async |filter: ContactFilter| {
        let mut q = query(filter);
        q.include_total = true;
        let page = f.contacts.list(f.org, &q).await.unwrap();
        assert_eq!(page.total, Some(i64::try_from(page.items.len()).unwrap()));
        let mut n = names(&page.items);
        n.sort();
        n
    };
    let q = |s: &str| ContactFilter {
        q: Some(s.into()),
        ..ContactFilter::default()
    };
    assert_eq!(run(q("LOVE")).await, ["Ada"], "case-insensitive last name");
    assert_eq!(run(q("ada love")).await, ["Ada"], "full name");
    assert_eq!(run(q("navy.m")).await, ["Grace"], "email");
    assert_eq!(run(q("analytical")).await, ["Ada"], "company");
    assert_eq!(run(q("7946")).await, ["Ada"], "phone");
    assert_eq!(run(q("20 7946 09")).await, ["Ada"], "phone as given");
    assert_eq!(run(q("2079460958")).await, ["Ada"], "phone by its digits");
    assert_eq!(run(q("+442079")).await, ["Ada"], "phone in E.164");
    // Whatever punctuation either side uses: stored "+44 20 7946 0958".
    assert_eq!(run(q("20-7946-0958")).await, ["Ada"], "other punctuation");
    assert_eq!(run(q("(20) 7946.0958")).await, ["Ada"], "dots and brackets");
    assert!(run(q("20-7946-0959")).await.is_empty(), "other digits");
    assert_eq!(
        run(q("100%_")).await,
        ["Alan"],
        "LIKE wildcards are literal"
    );
    assert_eq!(run(q("%")).await, ["Alan"]);
    assert!(run(q("nobody")).await.is_empty());

    let tags = |t: &[&str], mode| ContactFilter {
        tags: t.iter().map(|s| (*s).to_owned()).collect(),
        tag_mode: mode,
        ..ContactFilter::default()
    };
    assert_eq!(
        run(tags(&["vip", "math"], TagMode::Any)).await,
        ["Ada", "Alan", "Grace"]
    );
    assert_eq!(run(tags(&["vip", "math"], TagMode::All)).await, ["Ada"]);
    assert_eq!(
        run(ContactFilter {
            lifecycle_stage: Some(LifecycleStage::Customer),
            ..ContactFilter::default()
        })
        .await,
        ["Ada"]
    );
    assert_eq!(
        run(ContactFilter {
            owner_id: Some(f.user),
            ..ContactFilter::default()
        })
        .await,
        ["Ada"]
    );
    assert_eq!(
        run(ContactFilter {
            custom_fields: vec![("industry".into(), json!("retail"))],
            ..ContactFilter::default()
        })
        .await,
        ["Grace"]
    );
    assert_eq!(
        run(ContactFilter {
            created_after: Some(grace.created_at),
            ..ContactFilter::default()
        })
        .await,
        ["Alan", "Grace"]
    );
    assert_eq!(
        run(ContactFilter {
            created_before: Some(grace.created_at),
            ..ContactFilter::default()
        })
        .await,
        ["Ada"]
    );

    // Deleted contacts leave lists.
    let (deleted, event) = ada.delete(&ctx(f.user));
    f.contacts
        .save(f.org, &deleted, ada.version, &event, None)
        .await
        .unwrap();
    assert!(run(q("lovelace")).await.is_empty());
    assert_eq!(
        f.contacts
            .list(f.org, &query(ContactFilter::default()))
            .await
            .unwrap()
            .total,
        None,
        "no count unless asked"
    );
}

#[tokio::test]
async fn tags_are_counted_renamed_with_merge_and_deleted_with_events() {
    let f = fixture().await;
    let a = f
        .create(
            f.org,
            json!({"firstName": "A", "lastName": "A", "tags": ["prospect", "vip", "hot"]}),
        )
        .await;
    f.create(
        f.org,
        json!({"firstName": "B", "lastName": "B", "tags": ["vip"]}),
    )
    .await;
    f.create(
        f.org,
        json!({"firstName": "C", "lastName": "C", "tags": ["hot"]}),
    )
    .await;
    f.create(
        f.other_org,
        json!({"firstName": "X", "lastName": "X", "tags": ["vip"]}),
    )
    .await;
    assert_eq!(
        f.contacts.tag_counts(f.org, None, 200).await.unwrap(),
        [
            ("hot".to_owned(), 2),
            ("vip".to_owned(), 2),
            ("prospect".to_owned(), 1)
        ]
    );
    // The whole list's length, whichever page is read; the other tenant's own.
    assert_eq!(f.contacts.tag_total(f.org).await.unwrap(), 3);
    assert_eq!(f.contacts.tag_total(f.other_org).await.unwrap(), 1);
    // Pages continue after a (count, name) position: within a count by name, then the
    // smaller counts.
    assert_eq!(
        f.contacts.tag_counts(f.org, None, 1).await.unwrap(),
        [("hot".to_owned(), 2)]
    );
    assert_eq!(
        f.contacts
            .tag_counts(f.org, Some((2, "hot".into())), 1)
            .await
            .unwrap(),
        [("vip".to_owned(), 2)]
    );
    assert_eq!(
        f.contacts
            .tag_counts(f.org, Some((2, "vip".into())), 5)
            .await
            .unwrap(),
        [("prospect".to_owned(), 1)]
    );
    assert_eq!(
        f.contacts
            .tag_counts(f.org, Some((1, "prospect".into())), 5)
            .await
            .unwrap(),
        []
    );
    let actor = EventActor::User { id: f.user };
    // `hot` → `vip`: A holds both and keeps one `vip` at the first place either held.
    assert_eq!(
        f.contacts
            .rename_tag(f.org, "hot", "vip", &actor, Utc::now())
            .await
            .unwrap(),
        2
    );
    let a2 = f.contacts.get(f.org, a.id, false).await.unwrap().unwrap();
    assert_eq!(a2.fields.tags.to_strings(), ["prospect", "vip"]);
    assert_eq!(a2.version, 2);
    assert_eq!(
        f.contacts.tag_counts(f.org, None, 200).await.unwrap(),
        [("vip".to_owned(), 3), ("prospect".to_owned(), 1)]
    );
    assert_eq!(
        f.contacts.tag_counts(f.other_org, None, 200).await.unwrap(),
        [("vip".to_owned(), 1)],
        "other tenant untouched"
    );
    assert_eq!(
        f.count("SELECT count(*) AS n FROM events WHERE substr(id::text, 15, 1) <> '7'")
            .await,
        0,
        "event ids are UUIDv7, as every id the API shows"
    );
    let changes = f.json("SELECT payload -> 'changes' -> 'tags' AS j FROM events WHERE type = 'contact.updated' ORDER BY append_seq").await;
    assert_eq!(
        changes[0],
        json!({"from": ["prospect", "vip", "hot"], "to": ["prospect", "vip"]})
    );

    assert_eq!(
        f.contacts
            .delete_tag(f.org, "vip", &actor, Utc::now())
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        f.contacts.tag_counts(f.org, None, 200).await.unwrap(),
        [("prospect".to_owned(), 1)]
    );
    assert_eq!(f.contacts.tag_total(f.org).await.unwrap(), 1);
    assert_eq!(
        f.count("SELECT count(*) AS n FROM events WHERE type = 'contact.updated'")
            .await,
        5
    );
}

#[tokio::test]
async fn a_tag_rename_reaches_contacts_being_restored_or_deleted_meanwhile() {
    let f = fixture().await;
    let live = f
        .create(
            f.org,
            json!({"firstName": "Live", "lastName": "L", "tags": ["hot"]}),
        )
        .await;
    let restored = f
        .create(
            f.org,
            json!({"firstName": "Back", "lastName": "B", "tags": ["hot"]}),
        )
        .await;
    let deleted = f
        .create(
            f.org,
            json!({"firstName": "Gone", "lastName": "G", "tags": ["hot"]}),
        )
        .await;
    let mut other = AsyncPgConnection::establish(f.db.url()).await.unwrap();
    other
        .batch_execute(&format!(
            "UPDATE contacts SET deleted_at = now() WHERE id = '{}'",
            restored.id
        ))
        .await
        .unwrap();
    // A restore and a delete that commit while the rename waits for their rows.
    other
        .batch_execute(&format!(
            "BEGIN;
             UPDATE contacts SET deleted_at = NULL, version = version + 1 WHERE id = '{}';
             UPDATE contacts SET deleted_at = now(), version = version + 1 WHERE id = '{}';",
            restored.id, deleted.id
        ))
        .await
        .unwrap();
    let contacts = f.contacts.clone();
    let (org, actor) = (f.org, EventActor::User { id: f.user });
    let rename = tokio::spawn(async move {
        contacts
            .rename_tag(org, "hot", "warm", &actor, Utc::now())
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!rename.is_finished(), "the rename waits for the rows");
    other.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        rename.await.unwrap().unwrap(),
        2,
        "live at the end: the first two"
    );

    for (contact, trashed) in [(&live, false), (&restored, false), (&deleted, true)] {
        let now = f
            .contacts
            .get(f.org, contact.id, trashed)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            now.fields.tags.to_strings(),
            ["warm"],
            "{}",
            now.fields.first_name.as_str()
        );
    }
    assert_eq!(
        f.count("SELECT count(*) AS n FROM events WHERE type = 'contact.updated'")
            .await,
        3,
        "an event for each contact renamed"
    );
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) AS n FROM events WHERE type = 'contact.updated' \
             AND payload->'contact'->>'id' = '{}' AND payload->'contact' ? 'deletedAt'",
            deleted.id
        ))
        .await,
        1,
        "the one deleted meanwhile says so"
    );
}

#[tokio::test]
async fn custom_field_definitions_keys_versions_and_deletion_of_values() {
    let f = fixture().await;
    let now = Utc::now();
    let def = |key: &str| CustomFieldDefinition {
        id: CustomFieldId::from_uuid(Uuid::now_v7()),
        organization_id: f.org,
        spec: FieldSpec::new(key, "Seats", FieldType::Number, false, &[]).unwrap(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let seats = def("seats");
    f.fields.insert(f.org, &seats, 200).await.unwrap();
    // A second field, whose value stays when `seats` goes.
    f.fields.insert(f.org, &def("desks"), 200).await.unwrap();
    assert!(matches!(
        f.fields.insert(f.org, &def("seats"), 200).await,
        Err(DefinitionWriteError::DuplicateKey)
    ));
    assert_eq!(f.fields.list(f.other_org).await.unwrap(), []);
    assert_eq!(f.fields.get(f.other_org, seats.id).await.unwrap(), None);

    assert!(!f.fields.values_exist(f.org, "seats").await.unwrap());
    let c = f
        .create(
            f.org,
            json!({"firstName": "A", "lastName": "B", "customFields": {"seats": 12, "desks": 3}}),
        )
        .await;
    assert!(f.fields.values_exist(f.org, "seats").await.unwrap());
    let retyped = CustomFieldDefinition {
        version: 2,
        spec: FieldSpec::new("seats", "Seats", FieldType::Text, false, &[]).unwrap(),
        ..seats.clone()
    };
    assert!(matches!(
        f.fields.update(f.org, &retyped, 1).await,
        Err(DefinitionWriteError::ValuesExist)
    ));

    let changed = CustomFieldDefinition {
        version: 2,
        spec: FieldSpec {
            label: "Licences".into(),
            ..seats.spec.clone()
        },
        ..seats.clone()
    };
    f.fields.update(f.org, &changed, 1).await.unwrap();
    assert!(matches!(
        f.fields.update(f.org, &changed, 1).await,
        Err(DefinitionWriteError::VersionMismatch { current: 2 })
    ));
    assert_eq!(
        f.fields
            .get(f.org, seats.id)
            .await
            .unwrap()
            .unwrap()
            .spec
            .label,
        "Licences"
    );

    let actor = EventActor::User { id: f.user };
    assert!(matches!(
        f.fields
            .delete(f.other_org, seats.id, None, &actor, now)
            .await,
        Err(DefinitionWriteError::NotFound)
    ));
    // A stale version deletes nothing: the definition and the contact's value stay.
    assert!(matches!(
        f.fields.delete(f.org, seats.id, Some(1), &actor, now).await,
        Err(DefinitionWriteError::VersionMismatch { current: 2 })
    ));
    let kept = f.contacts.get(f.org, c.id, false).await.unwrap().unwrap();
    assert_eq!((kept.version, kept.fields.custom_fields.len()), (1, 2));
    assert_eq!(f.fields.list(f.org).await.unwrap().len(), 2);
    f.fields
        .delete(f.org, seats.id, Some(2), &actor, now)
        .await
        .unwrap();
    let after = f.contacts.get(f.org, c.id, false).await.unwrap().unwrap();
    assert_eq!(
        after.fields.custom_fields.keys().collect::<Vec<_>>(),
        ["desks"]
    );
    assert_eq!(after.version, 2);
    let changes = f
        .json("SELECT payload -> 'changes' AS j FROM events WHERE type = 'contact.updated'")
        .await;
    assert_eq!(
        f.count("SELECT count(*) AS n FROM events WHERE substr(id::text, 15, 1) <> '7'")
            .await,
        0,
        "event ids are UUIDv7, as every id the API shows"
    );
    // The whole `customFields` before and after, as a PATCH's event reports it.
    assert_eq!(
        changes,
        [json!({"customFields": {"from": {"seats": 12, "desks": 3}, "to": {"desks": 3}}})]
    );
    assert_eq!(f.fields.list(f.org).await.unwrap().len(), 1);
}

/// The cap on definitions holds against concurrent creates: each insert counts after the
/// organization's other inserts have committed.
#[tokio::test]
async fn concurrent_definitions_never_pass_the_organizations_limit() {
    let f = fixture().await;
    let pool = build_pool(
        f.db.url(),
        &PoolSettings {
            max_size: 6,
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let repo = PgCustomFieldRepository::new(pool, Duration::from_secs(5));
    let now = Utc::now();
    let def = |org: OrgId, key: String| CustomFieldDefinition {
        id: CustomFieldId::from_uuid(Uuid::now_v7()),
        organization_id: org,
        spec: FieldSpec::new(&key, "Field", FieldType::Text, false, &[]).unwrap(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    repo.insert(f.org, &def(f.org, "first".into()), 3)
        .await
        .unwrap();
    // Another organization's definitions do not count against this one's.
    for i in 0..3 {
        repo.insert(f.other_org, &def(f.other_org, format!("o{i}")), 3)
            .await
            .unwrap();
    }
    let defs: Vec<_> = (0..6).map(|i| def(f.org, format!("k{i}"))).collect();
    let results =
        futures_util::future::join_all(defs.iter().map(|d| repo.insert(f.org, d, 3))).await;
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(DefinitionWriteError::TooMany)))
        .count();
    assert_eq!((results.len() - refused, refused), (2, 4), "{results:?}");
    assert_eq!(repo.list(f.org).await.unwrap().len(), 3);
    assert_eq!(
        f.count("SELECT count(*) AS n FROM audit_log WHERE action = 'custom_field.created'")
            .await,
        6,
        "a refused definition leaves no audit entry"
    );
}

#[tokio::test]
async fn writes_validated_under_older_definitions_are_refused_and_write_nothing() {
    let f = fixture().await;
    let empty = f.fields.field_set(f.org).await.unwrap();
    assert_eq!((empty.generation, empty.specs.len()), (0, 0));
    let now = Utc::now();
    let plan = CustomFieldDefinition {
        id: CustomFieldId::from_uuid(Uuid::now_v7()),
        organization_id: f.org,
        spec: FieldSpec::new("plan", "Plan", FieldType::Text, false, &[]).unwrap(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    f.fields.insert(f.org, &plan, 200).await.unwrap();
    let set = f.fields.field_set(f.org).await.unwrap();
    assert_eq!(set.generation, 1);
    assert_eq!(set.specs, std::slice::from_ref(&plan.spec));
    assert_eq!(
        f.fields.field_set(f.other_org).await.unwrap().generation,
        0,
        "another organization's definitions keep their generation"
    );

    let (contact, event) = Contact::create(
        ContactId::from_uuid(Uuid::now_v7()),
        f.org,
        fields(json!({"firstName": "A", "lastName": "B"}), &[]),
        &ctx(f.user),
    );
    assert!(matches!(
        f.contacts.insert(f.org, &contact, &event, 0).await,
        Err(ContactWriteError::DefinitionsChanged)
    ));
    assert_eq!(f.count("SELECT count(*) AS n FROM contacts").await, 0);
    assert_eq!(
        f.count("SELECT count(*) AS n FROM events WHERE type LIKE 'contact.%'")
            .await,
        0
    );
    assert_eq!(
        f.count("SELECT count(*) AS n FROM audit_log WHERE action LIKE 'contact.%'")
            .await,
        0
    );
    f.contacts.insert(f.org, &contact, &event, 1).await.unwrap();

    let (renamed, event) = contact
        .update(
            fields(json!({"firstName": "A", "lastName": "C"}), &set.specs),
            &ctx(f.user),
        )
        .unwrap();
    f.fields
        .delete(f.org, plan.id, None, &EventActor::User { id: f.user }, now)
        .await
        .unwrap();
    assert!(matches!(
        f.contacts.save(f.org, &renamed, 1, &event, Some(1)).await,
        Err(ContactWriteError::DefinitionsChanged)
    ));
    let stored = f
        .contacts
        .get(f.org, contact.id, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.version, stored.fields.last_name.as_str()), (1, "B"));
    f.contacts
        .save(f.org, &renamed, 1, &event, Some(2))
        .await
        .unwrap();
    assert_eq!(
        f.contacts
            .get(f.org, contact.id, false)
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
}

#[tokio::test]
async fn searches_beyond_the_first_scan_window_and_seeded_data_is_valid() {
    let f = fixture().await;
    let mut conn = AsyncPgConnection::establish(f.db.url()).await.unwrap();
    nexus_adapters_postgres::seed::contacts(&mut conn, f.org.as_uuid(), 10_200, |_| {})
        .await
        .unwrap();
    // An old contact with a unique name lies past the newest 10,000 rows.
    conn.batch_execute(&format!(
        "INSERT INTO contacts (organization_id, id, first_name, last_name, created_at, updated_at)
         VALUES ('{}', '{}', 'Quintessa', 'Zyxwvut', now() - interval '10 years', now() - interval '10 years')",
        f.org,
        Uuid::now_v7()
    ))
    .await
    .unwrap();
    let q = |s: &str| ContactFilter {
        q: Some(s.into()),
        ..ContactFilter::default()
    };
    let page = f.contacts.list(f.org, &query(q("zyxwv"))).await.unwrap();
    assert_eq!(names(&page.items), ["Quintessa"]);

    // A common fragment: pages from the scan window equal the database's own answer.
    let expected = f
        .json(&format!(
            "SELECT to_jsonb(array_agg(id ORDER BY created_at DESC, id DESC)) AS j FROM (SELECT id, created_at FROM contacts
             WHERE organization_id = '{}' AND search LIKE '%smi%' ORDER BY created_at DESC, id DESC LIMIT 120) s",
            f.org
        ))
        .await;
    let mut got = Vec::new();
    let mut page_query = ContactQuery {
        limit: 40,
        ..query(q("SMI"))
    };
    for _ in 0..3 {
        let page = f.contacts.list(f.org, &page_query).await.unwrap();
        got.extend(page.items.iter().map(|c| json!(c.id)));
        page_query.after = page.next;
    }
    assert_eq!(json!(got), expected[0]);

    // Every seeded row reads back through the domain's validation.
    let all = f
        .contacts
        .list(
            f.org,
            &ContactQuery {
                limit: 200,
                ..query(ContactFilter::default())
            },
        )
        .await
        .unwrap();
    assert_eq!(all.items.len(), 200);
    for c in &all.items {
        // The generator's lead score and E.164 follow the domain's rules.
        assert_eq!(
            c.lead_score,
            nexus_domain::contact::LeadScore::compute(&c.fields),
            "{c:?}"
        );
        if let Some(phone) = &c.fields.phone {
            assert!(
                phone.e164().is_some_and(|e| e.starts_with("+1555")),
                "{phone:?}"
            );
        }
    }
    assert_eq!(f.count("SELECT count(*) AS n FROM contacts").await, 10_201);
}

#[tokio::test]
async fn the_purge_removes_only_contacts_deleted_long_enough_ago() {
    let f = fixture().await;
    let keep = f
        .create(f.org, json!({"firstName": "Live", "lastName": "One"}))
        .await;
    let recent = f
        .create(
            f.org,
            json!({"firstName": "Recently", "lastName": "Deleted"}),
        )
        .await;
    let old = f
        .create(f.org, json!({"firstName": "Long", "lastName": "Gone"}))
        .await;
    let theirs = f
        .create(
            f.other_org,
            json!({"firstName": "Other", "lastName": "Tenant"}),
        )
        .await;
    let mut conn = AsyncPgConnection::establish(f.db.url()).await.unwrap();
    conn.batch_execute(&format!(
        "UPDATE contacts SET deleted_at = now() - interval '10 days' WHERE id = '{}';
         UPDATE contacts SET deleted_at = now() - interval '40 days' WHERE id IN ('{}', '{}');",
        recent.id, old.id, theirs.id
    ))
    .await
    .unwrap();
    let before = Utc::now() - chrono::Duration::days(30);
    let mut orgs = f.contacts.organizations_to_purge(before).await.unwrap();
    orgs.sort();
    let mut expected = vec![f.org, f.other_org];
    expected.sort();
    assert_eq!(orgs, expected);
    assert_eq!(
        f.contacts.purge_deleted(f.org, before, 1000).await.unwrap(),
        1
    );
    assert!(f.contacts.get(f.org, old.id, true).await.unwrap().is_none());
    assert!(
        f.contacts
            .get(f.org, recent.id, true)
            .await
            .unwrap()
            .is_some(),
        "still restorable"
    );
    assert!(
        f.contacts
            .get(f.org, keep.id, false)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        f.contacts
            .get(f.other_org, theirs.id, true)
            .await
            .unwrap()
            .is_some(),
        "one tenant at a time"
    );
    assert_eq!(
        f.contacts.purge_deleted(f.org, before, 1000).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn the_purge_keeps_contacts_that_have_deals_and_never_destroys_deals() {
    let f = fixture().await;
    let with_deal = f
        .create(f.org, json!({"firstName": "Has", "lastName": "Deal"}))
        .await;
    let without = f
        .create(f.org, json!({"firstName": "No", "lastName": "Deal"}))
        .await;
    // The deal's first contact: the deal has moved on to `with_deal` since.
    let moved_from = f
        .create(f.org, json!({"firstName": "Deal's", "lastName": "First"}))
        .await;
    let (pipeline, stage, deal) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut conn = AsyncPgConnection::establish(f.db.url()).await.unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO pipelines (organization_id, id, name) VALUES ('{org}', '{pipeline}', 'Sales');
         INSERT INTO pipeline_stages (organization_id, id, pipeline_id, name, probability, kind, position)
             VALUES ('{org}', '{stage}', '{pipeline}', 'Lead', 10, 'open', 0);
         INSERT INTO deals (organization_id, id, pipeline_id, stage_id, contact_id, title, value_minor, currency,
                            status, probability, position)
             VALUES ('{org}', '{deal}', '{pipeline}', '{stage}', '{contact}', 'Big one', 100000, 'EUR', 'OPEN', 10, 1);
         INSERT INTO activities (organization_id, id, type, subject, contact_id)
             VALUES ('{org}', gen_random_uuid(), 'NOTE', 'About the other one', '{without}');
         INSERT INTO activities (organization_id, id, type, subject, contact_id, deal_id)
             VALUES ('{org}', gen_random_uuid(), 'DEAL_CREATED', 'Deal created', '{moved_from}', '{deal}');
         UPDATE contacts SET deleted_at = now() - interval '40 days'
             WHERE id IN ('{contact}', '{without}', '{moved_from}');",
        org = f.org,
        contact = with_deal.id,
        without = without.id,
        moved_from = moved_from.id,
    ))
    .await
    .unwrap();
    let before = Utc::now() - chrono::Duration::days(30);
    assert_eq!(
        f.contacts.purge_deleted(f.org, before, 1000).await.unwrap(),
        2,
        "only the contacts without deals go"
    );
    assert!(
        f.contacts
            .get(f.org, without.id, true)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        f.contacts
            .get(f.org, with_deal.id, true)
            .await
            .unwrap()
            .is_some(),
        "kept, still soft-deleted"
    );
    assert_eq!(f.count("SELECT count(*) AS n FROM deals").await, 1);
    assert_eq!(
        f.count("SELECT count(*) AS n FROM activities WHERE type = 'NOTE'")
            .await,
        0,
        "the purged contact's own activities go with it"
    );
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) AS n FROM activities WHERE type = 'DEAL_CREATED' \
             AND deal_id = '{deal}' AND contact_id IS NULL"
        ))
        .await,
        1,
        "the deal's history stays, off the purged contact's timeline"
    );
    assert_eq!(
        f.contacts.purge_deleted(f.org, before, 1000).await.unwrap(),
        0
    );
    assert!(
        f.contacts
            .organizations_to_purge(before)
            .await
            .unwrap()
            .is_empty(),
        "what deals keep is no reason to come back"
    );
    // Recorded once for the batch (the empty second pass records nothing), by `system`,
    // naming what went.
    let entries = f
        .json(
            "SELECT jsonb_build_object('actor', actor_type, 'changes', changes) AS j \
             FROM audit_log WHERE action = 'contacts.purged'",
        )
        .await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["actor"], "system");
    assert_eq!(entries[0]["changes"]["before"]["count"], 2);
    let mut ids: Vec<String> = entries[0]["changes"]["before"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut expected = vec![without.id.to_string(), moved_from.id.to_string()];
    expected.sort();
    assert_eq!(ids, expected);
    // Any other hard delete of a contact with deals is refused rather than cascading.
    let refused = conn
        .batch_execute(&format!(
            "DELETE FROM contacts WHERE organization_id = '{}' AND id = '{}'",
            f.org, with_deal.id
        ))
        .await;
    assert!(refused.is_err());
    assert_eq!(f.count("SELECT count(*) AS n FROM deals").await, 1);
}

#[tokio::test]
async fn a_create_writes_its_event_and_audit_entry_and_rings_the_commit_bell() {
    let f = fixture().await;
    let bell = CommitBell::default();
    let pool = build_pool(f.db.url(), &PoolSettings::default()).unwrap();
    let contacts =
        PgContactRepository::new(pool, Duration::from_secs(2)).with_commit_bell(bell.clone());
    let (c, e) = Contact::create(
        ContactId::from_uuid(Uuid::now_v7()),
        f.org,
        fields(
            json!({"firstName": "Ada", "lastName": "Lovelace", "ownerId": f.user.as_uuid().to_string()}),
            &[],
        ),
        &ctx(f.user),
    );
    let rung = tokio::spawn({
        let bell = bell.clone();
        async move { bell.rung().await }
    });
    contacts.insert(f.org, &c, &e, 0).await.unwrap();
    // The statement committed on its own: the numberer must hear of it at once.
    tokio::time::timeout(Duration::from_secs(2), rung)
        .await
        .expect("the create rang the commit bell")
        .unwrap();
    assert_eq!(contacts.get(f.org, c.id, false).await.unwrap(), Some(c));
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) AS n FROM events WHERE id = '{}' AND type = 'contact.created'",
            e.id.as_uuid()
        ))
        .await,
        1
    );
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) AS n FROM audit_log WHERE action = 'contact.created' \
             AND actor_user_id = '{}'",
            f.user.as_uuid()
        ))
        .await,
        1
    );
}

/// Statements sent by connections established after [`capture_statements`], as diesel's
/// instrumentation prints them (`<sql> -- binds: [...]`).
static CAPTURED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

struct Capture;

impl diesel::connection::Instrumentation for Capture {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        if let diesel::connection::InstrumentationEvent::StartQuery { query, .. } = event {
            CAPTURED.lock().unwrap().push(query.to_string());
        }
    }
}

fn capture_statements() {
    diesel::connection::set_default_instrumentation(|| Some(Box::new(Capture))).unwrap();
}

/// A statement's shape: its tokens, lower-cased, with every value (a literal, a
/// parameter, a psql variable, an array or a `now() - interval` expression) as `?` and
/// casts dropped, so the documented SQL (values inlined) and the sent SQL (values bound)
/// compare equal when they have the same structure.
fn shape(sql: &str) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens: Vec<String> = Vec::new();
    let mut i = 0;
    let quoted_end = |mut j: usize| {
        // `j` is just after the opening quote; `''` is an escaped quote.
        while j < chars.len() {
            if chars[j] == '\'' {
                if chars.get(j + 1) == Some(&'\'') {
                    j += 2;
                    continue;
                }
                return j + 1;
            }
            j += 1;
        }
        j
    };
    // The end of the word (letters, digits, `_`) that starts at `j`.
    let word = |j: usize| {
        let mut k = j;
        while k < chars.len() && (chars[k].is_alphanumeric() || chars[k] == '_') {
            k += 1;
        }
        k
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            i = quoted_end(i + 1);
            tokens.push("?".into());
        } else if c == ':' && chars.get(i + 1) == Some(&'\'') {
            i = quoted_end(i + 2);
            tokens.push("?".into());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            i = word(i + 2);
            if chars.get(i) == Some(&'[') && chars.get(i + 1) == Some(&']') {
                i += 2;
            }
        } else if c == '$' || c.is_ascii_digit() {
            i = word(i + 1);
            tokens.push("?".into());
        } else if c.is_alphabetic() || c == '_' {
            let end = word(i);
            let w: String = chars[i..end].iter().collect::<String>().to_lowercase();
            if w == "array" && chars.get(end) == Some(&'[') {
                i = end;
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
                i += 1;
                tokens.push("?".into());
            } else {
                i = end;
                tokens.push(w);
            }
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["&&", "@>", "<=", ">=", "<>", "!=", "||"].contains(&two.as_str()) {
                tokens.push(two);
                i += 2;
            } else {
                tokens.push(c.to_string());
                i += 1;
            }
        }
    }
    let mut out: Vec<String> = Vec::new();
    for t in tokens {
        out.push(t);
        if out.ends_with(&["now", "(", ")", "-", "interval", "?"].map(String::from)) {
            out.truncate(out.len() - 6);
            out.push("?".into());
        }
    }
    out.join(" ")
}

/// The statements of docs/perf/contacts-explain.sql: each `EXPLAIN`ed one and each
/// `PREPARE`d one, with the psql variable `:cols` expanded.
fn documented_shapes() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/perf/contacts-explain.sql"
    ))
    .unwrap();
    let cols = doc
        .lines()
        .find_map(|l| l.strip_prefix("\\set cols '"))
        .and_then(|l| l.strip_suffix('\''))
        .unwrap();
    let doc = doc.replace(":cols", cols);
    let mut shapes = Vec::new();
    let mut rest = doc.as_str();
    while let Some(at) = rest.find("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)") {
        rest = &rest[at + "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)".len()..];
        let end = rest.find(';').unwrap();
        if !rest[..end].trim_start().starts_with("EXECUTE") {
            shapes.push(shape(&rest[..end]));
        }
        rest = &rest[end..];
    }
    for statement in doc.split(';') {
        if let Some(at) = statement.find("PREPARE ") {
            let body = &statement[at..];
            shapes.push(shape(&body[body.find(" AS").unwrap() + 3..]));
        }
    }
    shapes
}

#[test]
fn statement_shapes_ignore_values_casts_and_layout() {
    assert_eq!(
        shape("SELECT a FROM t WHERE x = :'org' AND tags && ARRAY['a', 'b']\n  LIMIT 51"),
        shape("select a from t where x = $1 and tags && $2::text[] limit $3")
    );
    assert_eq!(
        shape("created_at >= now() - interval '60 days'"),
        shape("created_at >= $2")
    );
    assert_ne!(shape("ORDER BY a DESC"), shape("ORDER BY a ASC"));
    assert_ne!(shape("x = 'it''s' AND y"), shape("x = ?"));
}

/// docs/perf/contacts-explain.{sql,txt} show the plans of the SQL that `list` and `get`
/// send: every statement they send for each documented query shape must be there.
#[tokio::test]
async fn the_documented_explain_statements_are_the_ones_sent() {
    capture_statements();
    let f = fixture().await;
    let ada = f
        .create(
            f.org,
            json!({"firstName": "Ada", "lastName": "Lovelace", "tags": ["vip"]}),
        )
        .await;
    let base = |filter: ContactFilter| ContactQuery {
        limit: 50,
        ..query(filter)
    };
    let q = |s: &str| ContactFilter {
        q: Some(s.into()),
        ..ContactFilter::default()
    };
    let tags = |t: &[&str], tag_mode: TagMode| ContactFilter {
        tags: t.iter().map(|s| (*s).to_owned()).collect(),
        tag_mode,
        ..ContactFilter::default()
    };
    let sorted = |field, descending| ContactQuery {
        sort: Sort { field, descending },
        ..base(ContactFilter::default())
    };
    let now = Utc::now();
    let shapes = [
        base(ContactFilter::default()),
        ContactQuery {
            after: Some(nexus_ports::contacts::Keyset::after(
                &ada,
                SortField::CreatedAt,
            )),
            ..base(ContactFilter::default())
        },
        base(q("smi")),
        base(q("555) 12")),
        base(tags(&["vip"], TagMode::Any)),
        base(tags(&["vip", "trial"], TagMode::All)),
        base(ContactFilter {
            custom_fields: vec![("industry".into(), json!("saas"))],
            ..ContactFilter::default()
        }),
        ContactQuery {
            sort: Sort {
                field: SortField::UpdatedAt,
                descending: true,
            },
            ..base(ContactFilter {
                tags: vec!["vip".into()],
                ..q("smi")
            })
        },
        base(ContactFilter {
            lifecycle_stage: Some(LifecycleStage::ALL[6]),
            ..ContactFilter::default()
        }),
        base(ContactFilter {
            owner_id: Some(f.user),
            ..ContactFilter::default()
        }),
        base(ContactFilter {
            created_after: Some(now - chrono::Duration::days(60)),
            created_before: Some(now - chrono::Duration::days(30)),
            ..ContactFilter::default()
        }),
        sorted(SortField::LastName, false),
        sorted(SortField::LeadScore, true),
        ContactQuery {
            include_total: true,
            ..base(q("smi"))
        },
        ContactQuery {
            include_total: true,
            ..base(ContactFilter::default())
        },
        sorted(SortField::UpdatedAt, true),
        ContactQuery {
            sort: Sort {
                field: SortField::LastName,
                descending: false,
            },
            ..base(ContactFilter {
                lifecycle_stage: Some(LifecycleStage::ALL[6]),
                ..ContactFilter::default()
            })
        },
        ContactQuery {
            after: Some(nexus_ports::contacts::Keyset::after(
                &ada,
                SortField::CreatedAt,
            )),
            ..base(q("smi"))
        },
    ];
    for query in &shapes {
        f.contacts.list(f.org, query).await.unwrap();
    }
    f.contacts.get(f.org, ada.id, false).await.unwrap().unwrap();
    // The trash's first page and a next one.
    f.contacts.deleted(f.org, None, 51).await.unwrap();
    f.contacts
        .deleted(f.org, Some((now, ada.id)), 51)
        .await
        .unwrap();

    let org = f.org.as_uuid().to_string();
    let sent: Vec<String> = CAPTURED
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.contains(&org) && s.contains("FROM contacts") && s.starts_with("SELECT"))
        .map(|s| shape(s.split(" -- binds:").next().unwrap()))
        .collect();
    // First page, next page, two phases for each of 6 GIN filtered ones, stage, owner,
    // dates, last name, lead score, two phases and a count for the total, the first page
    // and the count of an unfiltered total, -updatedAt, a stage by last name, a search's
    // next page in two phases, the get, the trash's two pages.
    assert!(sent.len() >= 31, "{sent:#?}");
    let documented = documented_shapes();
    let missing: Vec<&String> = sent.iter().filter(|s| !documented.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "sent but not in docs/perf/contacts-explain.sql (update it and run `just explain`):\n{missing:#?}"
    );
}

#[tokio::test]
async fn a_phone_written_with_a_trunk_prefix_is_found_in_every_form() {
    let f = fixture().await;
    f.create(
        f.org,
        json!({"firstName": "Tom", "lastName": "Trunk", "phone": "+44 (0)20 7946 0000"}),
    )
    .await;
    let found = async |q: &str| {
        let filter = ContactFilter {
            q: Some(q.into()),
            ..ContactFilter::default()
        };
        names(&f.contacts.list(f.org, &query(filter)).await.unwrap().items)
    };
    // As typed, by its digits (trunk `0` included), and in E.164 (without it).
    for q in [
        "(0)20 7946",
        "4402079460000",
        "+442079460000",
        "442079460000",
        "20-7946-0000",
        "+44 20 7946 0000",
        "44 20 7946 0000",
    ] {
        assert_eq!(found(q).await, ["Tom"], "{q}");
    }
    assert!(found("+442079461111").await.is_empty());
    // Digits elsewhere (an email, a company) are not a phone's: "12-50" is a phone
    // fragment, "1250" in an email is not what it asks for.
    f.create(
        f.org,
        json!({"firstName": "Jane", "lastName": "Digits", "email": "jane1250@acme.io", "company": "Route 1250"}),
    )
    .await;
    assert!(
        found("12-50").await.is_empty(),
        "{:?}",
        found("12-50").await
    );
    assert_eq!(
        found("1250").await,
        ["Jane"],
        "digits alone are a plain substring"
    );
    assert_eq!(found("79-46").await, ["Tom"]);
}

#[tokio::test]
async fn a_create_is_planned_once_per_connection_not_on_every_execution() {
    #[derive(QueryableByName)]
    struct Plans {
        #[diesel(sql_type = Text)]
        statement: String,
        #[diesel(sql_type = BigInt)]
        generic: i64,
        #[diesel(sql_type = BigInt)]
        custom: i64,
    }
    let f = fixture().await;
    // One connection, so that every create runs on the one whose plans are read below.
    let pool = build_pool(
        f.db.url(),
        &PoolSettings {
            max_size: 1,
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let contacts = PgContactRepository::new(pool.clone(), Duration::from_secs(2));
    let set = f.fields.field_set(f.org).await.unwrap();
    for (i, owner) in [None, Some(f.user)]
        .into_iter()
        .cycle()
        .take(16)
        .enumerate()
    {
        let mut body = json!({"firstName": "Plan", "lastName": format!("N{i}")});
        if let Some(owner) = owner {
            body["ownerId"] = json!(owner.as_uuid());
        }
        let (contact, event) = Contact::create(
            ContactId::from_uuid(Uuid::now_v7()),
            f.org,
            fields(body, &set.specs),
            &ctx(f.user),
        );
        contacts
            .insert(f.org, &contact, &event, set.generation)
            .await
            .unwrap();
    }
    let mut conn = pool.get().await.unwrap();
    let plans: Vec<Plans> = diesel::sql_query(
        "SELECT statement, generic_plans AS generic, custom_plans AS custom
         FROM pg_prepared_statements WHERE statement LIKE 'WITH gate%'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    // With an owner and without, the create is one statement, planned anew only while
    // PostgreSQL compares (five times), then run on its generic plan.
    let seen: Vec<(&str, i64, i64)> = plans
        .iter()
        .map(|p| (&p.statement[..60], p.generic, p.custom))
        .collect();
    assert!(
        !plans.is_empty() && plans.iter().all(|p| p.custom <= 5 && p.generic >= 3),
        "{seen:?}"
    );
}

#[tokio::test]
async fn seeded_contacts_carry_a_valid_value_for_each_required_custom_field() {
    let f = fixture().await;
    let mut conn = AsyncPgConnection::establish(f.db.url()).await.unwrap();
    let mut definitions = String::new();
    for (key, kind, required, options) in [
        ("plan", "text", true, "{}"),
        ("seats", "number", true, "{}"),
        ("since", "date", true, "{}"),
        ("active", "boolean", true, "{}"),
        ("tier", "select", true, "{gold,silver}"),
        ("regions", "multiselect", true, "{eu,us}"),
        ("notes", "text", false, "{}"),
    ] {
        definitions.push_str(&format!(
            "INSERT INTO custom_field_definitions (organization_id, id, key, label, field_type, required, options) \
             VALUES ('{}', '{}', '{key}', '{key}', '{kind}', {required}, '{options}');",
            f.org,
            Uuid::now_v7()
        ));
    }
    conn.batch_execute(&definitions).await.unwrap();
    nexus_adapters_postgres::seed::contacts(&mut conn, f.org.as_uuid(), 3, |_| {})
        .await
        .unwrap();
    let expected = json!({"plan": "Seeded", "seats": 0, "since": Utc::now().date_naive().to_string(),
                          "active": false, "tier": "gold", "regions": ["eu"]});
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) AS n FROM contacts WHERE organization_id = '{}' AND custom_fields = '{expected}'::jsonb",
            f.org
        ))
        .await,
        3
    );
}
