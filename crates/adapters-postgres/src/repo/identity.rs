use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bytea, Double, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use nexus_domain::audit::AuditChange;
use nexus_domain::values::EmailAddress;
use nexus_domain::{OrgId, Role, SessionId, UserId};
use nexus_ports::StoreError;
use nexus_ports::identity::{
    IdentityStore, MembershipRecord, NewSession, RegisterError, Registration, RotateOutcome,
    UserRecord,
};
use uuid::Uuid;

use super::{is_unique_violation, role};
use crate::error::from_diesel;
use crate::outbox;
use crate::pool::Db;
use crate::schema::{memberships, organizations, password_resets, refresh_tokens, sessions, users};
use crate::session_cache::SessionCache;

#[derive(Clone)]
pub struct PgIdentityStore {
    db: Db,
    sessions: SessionCache,
}

impl PgIdentityStore {
    /// `sessions` answers repeated session checks and is emptied after each change to a
    /// session (`SessionCache::disabled()` checks every one in the database).
    #[must_use]
    pub const fn new(db: Db, sessions: SessionCache) -> Self {
        Self { db, sessions }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
pub(crate) struct UserRow {
    id: Uuid,
    email: String,
    name: String,
    password_hash: String,
    created_at: DateTime<Utc>,
}

impl From<UserRow> for UserRecord {
    fn from(r: UserRow) -> Self {
        Self {
            id: UserId::from_uuid(r.id),
            email: r.email,
            name: r.name,
            password_hash: r.password_hash,
            created_at: r.created_at,
        }
    }
}

pub(crate) async fn insert_session(
    conn: &mut AsyncPgConnection,
    s: &NewSession,
) -> QueryResult<()> {
    diesel::insert_into(sessions::table)
        .values((
            sessions::id.eq(s.id.as_uuid()),
            sessions::user_id.eq(s.user_id.as_uuid()),
            sessions::organization_id.eq(s.org_id.as_uuid()),
            sessions::expires_at.eq(s.expires_at),
            sessions::ip.eq(&s.ip),
            sessions::user_agent.eq(&s.user_agent),
        ))
        .execute(conn)
        .await?;
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(&s.refresh_hash),
            refresh_tokens::session_id.eq(s.id.as_uuid()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn insert_user(
    conn: &mut AsyncPgConnection,
    u: &nexus_ports::identity::NewUser,
) -> QueryResult<()> {
    diesel::insert_into(users::table)
        .values((
            users::id.eq(u.id.as_uuid()),
            users::email.eq(u.email.as_str()),
            users::name.eq(&u.name),
            users::password_hash.eq(&u.password_hash),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The first free slug among `stem`, `stem-2`, `stem-3`, ...
async fn free_slug(conn: &mut AsyncPgConnection, stem: &str) -> QueryResult<String> {
    let taken: Vec<String> = organizations::table
        .select(organizations::slug)
        .filter(
            organizations::slug
                .eq(stem)
                .or(organizations::slug.like(format!("{stem}-%"))),
        )
        .load(conn)
        .await?;
    Ok((1..)
        .map(|n| nexus_domain::organization::slug_candidate(stem, n))
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or_else(|| stem.to_owned()))
}

enum RegTx {
    EmailTaken,
    SlugRace,
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for RegTx {
    fn from(e: diesel::result::Error) -> Self {
        if is_unique_violation(&e, "users_email_key") {
            Self::EmailTaken
        } else if is_unique_violation(&e, "organizations_slug_key") {
            Self::SlugRace
        } else {
            Self::Db(e)
        }
    }
}

#[derive(QueryableByName)]
struct Rotated {
    #[diesel(sql_type = SqlUuid)]
    session_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    organization_id: Uuid,
}

#[derive(QueryableByName)]
struct Spent {
    #[diesel(sql_type = SqlUuid)]
    session_id: Uuid,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    rotated_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    live: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    within_grace: bool,
}

impl IdentityStore for PgIdentityStore {
    async fn register(&self, r: Registration) -> Result<String, RegisterError> {
        let mut conn = self.db.conn().await?;
        // A concurrent registration may take the slug we picked: pick again.
        for _ in 0..5 {
            let r = r.clone();
            let result = conn
                .transaction(async move |conn| {
                    insert_user(conn, &r.user).await?;
                    let slug = free_slug(conn, &r.slug_stem).await?;
                    diesel::insert_into(organizations::table)
                        .values((
                            organizations::id.eq(r.org_id.as_uuid()),
                            organizations::name.eq(&r.org_name),
                            organizations::slug.eq(&slug),
                        ))
                        .execute(conn)
                        .await?;
                    diesel::insert_into(memberships::table)
                        .values((
                            memberships::organization_id.eq(r.org_id.as_uuid()),
                            memberships::user_id.eq(r.user.id.as_uuid()),
                            memberships::role.eq(Role::Owner.as_str()),
                        ))
                        .execute(conn)
                        .await?;
                    super::sales::insert_pipeline(conn, r.org_id, &r.default_pipeline).await?;
                    insert_session(conn, &r.session).await?;
                    outbox::append(conn, &r.events).await?;
                    Ok::<_, RegTx>(slug)
                })
                .await;
            match result {
                Ok(slug) => return Ok(slug),
                Err(RegTx::EmailTaken) => return Err(RegisterError::EmailTaken),
                Err(RegTx::SlugRace) => {}
                Err(RegTx::Db(e)) => return Err(from_diesel(e).into()),
            }
        }
        Err(StoreError::Other(anyhow::anyhow!(
            "no free organization slug after 5 attempts"
        ))
        .into())
    }

    async fn user_by_email(&self, email: &EmailAddress) -> Result<Option<UserRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        let row: Option<UserRow> = users::table
            .filter(users::email.eq(email.as_str()))
            .select(UserRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_diesel)?;
        Ok(row.map(Into::into))
    }

    async fn user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        let row: Option<UserRow> = users::table
            .find(id.as_uuid())
            .select(UserRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_diesel)?;
        Ok(row.map(Into::into))
    }

    async fn memberships(&self, user: UserId) -> Result<Vec<MembershipRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        let rows: Vec<(Uuid, String, String, String, DateTime<Utc>)> = memberships::table
            .inner_join(organizations::table)
            .filter(memberships::user_id.eq(user.as_uuid()))
            .order((
                memberships::created_at.asc(),
                memberships::organization_id.asc(),
            ))
            .select((
                organizations::id,
                organizations::name,
                organizations::slug,
                memberships::role,
                memberships::created_at,
            ))
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        rows.into_iter()
            .map(|(id, name, slug, r, joined_at)| {
                Ok(MembershipRecord {
                    org_id: OrgId::from_uuid(id),
                    org_name: name,
                    org_slug: slug,
                    role: role(&r)?,
                    joined_at,
                })
            })
            .collect()
    }

    async fn create_session(&self, session: NewSession) -> Result<(), StoreError> {
        let mut conn = self.db.conn().await?;
        conn.transaction(async move |conn| insert_session(conn, &session).await)
            .await
            .map_err(from_diesel)
    }

    async fn rotate_refresh(
        &self,
        presented: Vec<u8>,
        replacement: Vec<u8>,
        grace: Duration,
    ) -> Result<RotateOutcome, StoreError> {
        let mut conn = self.db.conn().await?;
        // One statement: the row lock on the token makes concurrent presenters queue,
        // and only the first still sees `rotated_at IS NULL`.
        let won: Option<Rotated> = diesel::sql_query(
            "WITH spent AS (
                 UPDATE refresh_tokens t SET rotated_at = now()
                 FROM sessions s
                 WHERE t.token_hash = $1 AND t.rotated_at IS NULL AND s.id = t.session_id
                   AND s.revoked_at IS NULL AND s.expires_at > now()
                 RETURNING t.session_id, s.user_id, s.organization_id
             ), fresh AS (
                 INSERT INTO refresh_tokens (token_hash, session_id) SELECT $2, session_id FROM spent
             ), touched AS (
                 UPDATE sessions SET last_used_at = now() WHERE id IN (SELECT session_id FROM spent)
             )
             SELECT session_id, user_id, organization_id FROM spent",
        )
        .bind::<Bytea, _>(&presented)
        .bind::<Bytea, _>(&replacement)
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(from_diesel)?;
        if let Some(r) = won {
            return Ok(RotateOutcome::Rotated {
                session_id: SessionId::from_uuid(r.session_id),
                user_id: UserId::from_uuid(r.user_id),
                org_id: OrgId::from_uuid(r.organization_id),
            });
        }
        let spent: Option<Spent> = diesel::sql_query(
            "SELECT t.session_id, t.rotated_at,
                    (s.revoked_at IS NULL AND s.expires_at > now()) AS live,
                    COALESCE(t.rotated_at > now() - make_interval(secs => $2), false) AS within_grace
             FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
             WHERE t.token_hash = $1",
        )
        .bind::<Bytea, _>(&presented)
        .bind::<Double, _>(grace.as_secs_f64())
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(from_diesel)?;
        match spent {
            Some(s) if s.live && s.rotated_at.is_some() && s.within_grace => {
                Ok(RotateOutcome::Superseded)
            }
            Some(s) if s.live && s.rotated_at.is_some() => {
                self.revoke_session(SessionId::from_uuid(s.session_id), "refresh_token_reuse")
                    .await?;
                Ok(RotateOutcome::Reused)
            }
            _ => Ok(RotateOutcome::Invalid),
        }
    }

    async fn session_role(
        &self,
        session: SessionId,
        user: UserId,
        org: OrgId,
    ) -> Result<Option<Role>, StoreError> {
        let key = (session.as_uuid(), user.as_uuid(), org.as_uuid());
        if let Some(role) = self.sessions.get(&key) {
            return Ok(Some(role));
        }
        let ticket = self.sessions.ticket();
        let mut conn = self.db.conn().await?;
        let r: Option<(String, DateTime<Utc>)> = sessions::table
            .inner_join(
                memberships::table.on(memberships::organization_id
                    .eq(sessions::organization_id)
                    .and(memberships::user_id.eq(sessions::user_id))),
            )
            .filter(sessions::id.eq(session.as_uuid()))
            .filter(sessions::user_id.eq(user.as_uuid()))
            .filter(sessions::organization_id.eq(org.as_uuid()))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::expires_at.gt(diesel::dsl::now))
            .select((memberships::role, sessions::expires_at))
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_diesel)?;
        let Some((name, expires_at)) = r else {
            return Ok(None);
        };
        let granted = role(&name)?;
        if let Ok(left) = (expires_at - Utc::now()).to_std() {
            self.sessions.put(key, granted, left, ticket);
        }
        Ok(Some(granted))
    }

    async fn switch_session(&self, session: SessionId, org: OrgId) -> Result<(), StoreError> {
        let mut conn = self.db.conn().await?;
        diesel::update(sessions::table.find(session.as_uuid()))
            .set(sessions::organization_id.eq(org.as_uuid()))
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
        self.sessions.invalidate();
        Ok(())
    }

    async fn revoke_session(
        &self,
        session: SessionId,
        reason: &'static str,
    ) -> Result<(), StoreError> {
        let mut conn = self.db.conn().await?;
        diesel::update(
            sessions::table
                .find(session.as_uuid())
                .filter(sessions::revoked_at.is_null()),
        )
        .set((
            sessions::revoked_at.eq(diesel::dsl::now),
            sessions::revoked_reason.eq(reason),
        ))
        .execute(&mut conn)
        .await
        .map_err(from_diesel)?;
        self.sessions.invalidate();
        Ok(())
    }

    async fn revoke_sessions(
        &self,
        user: UserId,
        org: Option<OrgId>,
        except: Option<SessionId>,
        reason: &'static str,
    ) -> Result<u64, StoreError> {
        let mut conn = self.db.conn().await?;
        let revoked = revoke_user_sessions(&mut conn, user, org, except, reason)
            .await
            .map_err(from_diesel)?;
        self.sessions.invalidate();
        Ok(revoked)
    }

    async fn set_password(&self, user: UserId, hash: String) -> Result<(), StoreError> {
        let mut conn = self.db.conn().await?;
        let hash = &hash;
        conn.transaction(async |conn| {
            diesel::update(users::table.find(user.as_uuid()))
                .set((
                    users::password_hash.eq(hash),
                    users::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            // A user belongs to several organizations and the audit log is kept per
            // organization: each of them records that the password changed (never how).
            let orgs: Vec<Uuid> = memberships::table
                .filter(memberships::user_id.eq(user.as_uuid()))
                .select(memberships::organization_id)
                .load(conn)
                .await?;
            for org in orgs {
                let change = AuditChange::new(
                    "user.password_changed",
                    "user",
                    Some(user.as_uuid().to_string()),
                    &serde_json::json!({}),
                );
                crate::audit::record(conn, OrgId::from_uuid(org), change).await?;
            }
            Ok::<_, diesel::result::Error>(())
        })
        .await
        .map_err(from_diesel)
    }

    async fn create_password_reset(
        &self,
        user: UserId,
        token_hash: Vec<u8>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut conn = self.db.conn().await?;
        diesel::insert_into(password_resets::table)
            .values((
                password_resets::token_hash.eq(token_hash),
                password_resets::user_id.eq(user.as_uuid()),
                password_resets::expires_at.eq(expires_at),
            ))
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
        Ok(())
    }

    async fn consume_password_reset(
        &self,
        token_hash: Vec<u8>,
    ) -> Result<Option<UserId>, StoreError> {
        let mut conn = self.db.conn().await?;
        let user: Option<Uuid> = diesel::update(
            password_resets::table
                .find(token_hash)
                .filter(password_resets::used_at.is_null())
                .filter(password_resets::expires_at.gt(diesel::dsl::now)),
        )
        .set(password_resets::used_at.eq(diesel::dsl::now))
        .returning(password_resets::user_id)
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(from_diesel)?;
        Ok(user.map(UserId::from_uuid))
    }
}

pub(crate) async fn revoke_user_sessions(
    conn: &mut AsyncPgConnection,
    user: UserId,
    org: Option<OrgId>,
    except: Option<SessionId>,
    reason: &'static str,
) -> QueryResult<u64> {
    let mut query = diesel::update(sessions::table)
        .filter(sessions::user_id.eq(user.as_uuid()))
        .filter(sessions::revoked_at.is_null())
        .into_boxed();
    if let Some(org) = org {
        query = query.filter(sessions::organization_id.eq(org.as_uuid()));
    }
    if let Some(except) = except {
        query = query.filter(sessions::id.ne(except.as_uuid()));
    }
    let n = query
        .set((
            sessions::revoked_at.eq(diesel::dsl::now),
            sessions::revoked_reason.eq(reason),
        ))
        .execute(conn)
        .await?;
    Ok(n as u64)
}
