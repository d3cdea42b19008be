use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use nexus_domain::membership::{MemberRef, MembershipError};
use nexus_domain::{ApiKeyId, DomainEvent, InvitationId, OrgId, Role, UserId};
use nexus_ports::StoreError;
use nexus_ports::identity::NewSession;
use nexus_ports::team::{
    AcceptError, ApiKeyRecord, InvitationRecord, Invitee, MemberChangeError, MemberRecord,
    NewApiKey, NewInvitation, OrganizationPatch, OrganizationRecord, RemovalRule, RoleChangeRule,
    TeamStore, UpdateError, UsedApiKey,
};
use uuid::Uuid;

use super::identity::{insert_session, insert_user, revoke_user_sessions};
use super::{is_unique_violation, role};
use crate::error::from_diesel;
use crate::pool::Db;
use crate::schema::{api_keys, invitations, memberships, organizations, users};
use crate::session_cache::SessionCache;
use crate::{audit, outbox};
use nexus_domain::audit::{AuditChange, field_changes};

#[derive(Clone)]
pub struct PgTeamStore {
    db: Db,
    sessions: SessionCache,
}

impl PgTeamStore {
    /// `sessions` is emptied after each role change and removal, so they apply at once.
    #[must_use]
    pub const fn new(db: Db, sessions: SessionCache) -> Self {
        Self { db, sessions }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = organizations)]
struct OrgRow {
    id: Uuid,
    name: String,
    slug: String,
    default_currency: String,
    settings: serde_json::Value,
    version: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl OrgRow {
    /// What the audit log compares before and after an update.
    fn audited(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name, "defaultCurrency": self.default_currency, "settings": self.settings,
        })
    }
}

impl From<OrgRow> for OrganizationRecord {
    fn from(r: OrgRow) -> Self {
        Self {
            id: OrgId::from_uuid(r.id),
            name: r.name,
            slug: r.slug,
            default_currency: r.default_currency,
            settings: r.settings,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = api_keys)]
struct ApiKeyRow {
    id: Uuid,
    organization_id: Uuid,
    name: String,
    prefix: String,
    role: String,
    created_by: Uuid,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<ApiKeyRow> for ApiKeyRecord {
    type Error = StoreError;
    fn try_from(r: ApiKeyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: ApiKeyId::from_uuid(r.id),
            org_id: OrgId::from_uuid(r.organization_id),
            name: r.name,
            prefix: r.prefix,
            role: role(&r.role)?,
            created_by: UserId::from_uuid(r.created_by),
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        })
    }
}

type InvitationTuple = (
    Uuid,
    Uuid,
    String,
    String,
    String,
    Uuid,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

fn invitation(t: InvitationTuple) -> Result<InvitationRecord, StoreError> {
    let (id, org, org_name, email, r, invited_by, created_at, expires_at, accepted_at, revoked_at) =
        t;
    Ok(InvitationRecord {
        id: InvitationId::from_uuid(id),
        org_id: OrgId::from_uuid(org),
        org_name,
        email,
        role: role(&r)?,
        invited_by: UserId::from_uuid(invited_by),
        created_at,
        expires_at,
        accepted_at,
        revoked_at,
    })
}

macro_rules! invitation_columns {
    () => {
        (
            invitations::id,
            invitations::organization_id,
            organizations::name,
            invitations::email,
            invitations::role,
            invitations::invited_by,
            invitations::created_at,
            invitations::expires_at,
            invitations::accepted_at,
            invitations::revoked_at,
        )
    };
}

/// Locks the organization row: membership changes of one organization run one at a
/// time, so rules that count owners see a count nobody else is changing.
async fn lock_org(conn: &mut AsyncPgConnection, org: OrgId) -> QueryResult<()> {
    organizations::table
        .find(org.as_uuid())
        .select(organizations::id)
        .for_update()
        .first::<Uuid>(conn)
        .await?;
    Ok(())
}

async fn member_role(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    user: UserId,
) -> QueryResult<Option<Role>> {
    let r: Option<String> = memberships::table
        .find((org.as_uuid(), user.as_uuid()))
        .select(memberships::role)
        .first(conn)
        .await
        .optional()?;
    Ok(r.and_then(|r| Role::parse(&r)))
}

async fn owner_count(conn: &mut AsyncPgConnection, org: OrgId) -> QueryResult<usize> {
    let n: i64 = memberships::table
        .filter(memberships::organization_id.eq(org.as_uuid()))
        .filter(memberships::role.eq(Role::Owner.as_str()))
        .count()
        .get_result(conn)
        .await?;
    Ok(usize::try_from(n).unwrap_or(0))
}

async fn member(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    user: UserId,
) -> QueryResult<Option<MemberRecord>> {
    let row: Option<(Uuid, String, String, String, DateTime<Utc>)> = memberships::table
        .inner_join(users::table)
        .filter(memberships::organization_id.eq(org.as_uuid()))
        .filter(memberships::user_id.eq(user.as_uuid()))
        .select((
            users::id,
            users::email,
            users::name,
            memberships::role,
            memberships::created_at,
        ))
        .first(conn)
        .await
        .optional()?;
    Ok(row.and_then(|(id, email, name, r, joined_at)| {
        Some(MemberRecord {
            user_id: UserId::from_uuid(id),
            email,
            name,
            role: Role::parse(&r)?,
            joined_at,
        })
    }))
}

enum Tx<E> {
    Domain(E),
    Db(diesel::result::Error),
}

impl<E> From<diesel::result::Error> for Tx<E> {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e)
    }
}

/// Loads actor and target on locked rows for a membership rule.
async fn refs(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    actor: UserId,
    target: UserId,
) -> Result<(MemberRef, MemberRef, usize), Tx<MemberChangeError>> {
    lock_org(conn, org).await?;
    let target_role = member_role(conn, org, target)
        .await?
        .ok_or(Tx::Domain(MemberChangeError::NotFound))?;
    // An API key acts for its creator, who may since have lost the membership.
    let actor_role =
        member_role(conn, org, actor)
            .await?
            .ok_or(Tx::Domain(MemberChangeError::Rule(
                MembershipError::Forbidden,
            )))?;
    let owners = owner_count(conn, org).await?;
    Ok((
        MemberRef {
            user_id: actor,
            role: actor_role,
        },
        MemberRef {
            user_id: target,
            role: target_role,
        },
        owners,
    ))
}

fn member_change(e: Tx<MemberChangeError>) -> MemberChangeError {
    match e {
        Tx::Domain(d) => d,
        Tx::Db(e) => MemberChangeError::Store(from_diesel(e)),
    }
}

impl TeamStore for PgTeamStore {
    async fn organization(&self, org: OrgId) -> Result<Option<OrganizationRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        let row: Option<OrgRow> = organizations::table
            .find(org.as_uuid())
            .select(OrgRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_diesel)?;
        Ok(row.map(Into::into))
    }

    async fn update_organization(
        &self,
        org: OrgId,
        patch: OrganizationPatch,
        expected_version: Option<i32>,
    ) -> Result<OrganizationRecord, UpdateError> {
        let mut conn = self.db.conn().await?;
        let result = conn
            .transaction(async move |conn| {
                let current: OrgRow = organizations::table
                    .find(org.as_uuid())
                    .select(OrgRow::as_select())
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?
                    .ok_or(Tx::Domain(UpdateError::NotFound))?;
                if let Some(expected) = expected_version.filter(|v| *v != current.version) {
                    return Err(Tx::Domain(UpdateError::VersionMismatch { expected }));
                }
                let before = current.audited();
                let row: OrgRow = diesel::update(organizations::table.find(org.as_uuid()))
                    .set((
                        organizations::name.eq(patch.name.unwrap_or(current.name)),
                        organizations::default_currency
                            .eq(patch.default_currency.unwrap_or(current.default_currency)),
                        organizations::settings.eq(patch.settings.unwrap_or(current.settings)),
                        organizations::version.eq(current.version + 1),
                        organizations::updated_at.eq(diesel::dsl::now),
                    ))
                    .returning(OrgRow::as_returning())
                    .get_result(conn)
                    .await?;
                let change = AuditChange::new(
                    "organization.updated",
                    "organization",
                    Some(org.as_uuid().to_string()),
                    &field_changes(&before, &row.audited()),
                );
                audit::record(conn, org, change).await?;
                Ok(row)
            })
            .await;
        match result {
            Ok(row) => Ok(row.into()),
            Err(Tx::Domain(e)) => Err(e),
            Err(Tx::Db(e)) => Err(UpdateError::Store(from_diesel(e))),
        }
    }

    async fn members(
        &self,
        org: OrgId,
        after: Option<(DateTime<Utc>, UserId)>,
        limit: i64,
    ) -> Result<Vec<MemberRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        let mut query = memberships::table
            .inner_join(users::table)
            .filter(memberships::organization_id.eq(org.as_uuid()))
            .select((
                users::id,
                users::email,
                users::name,
                memberships::role,
                memberships::created_at,
            ))
            .order((memberships::created_at.asc(), memberships::user_id.asc()))
            .limit(limit)
            .into_boxed();
        if let Some((at, id)) = after {
            query = query.filter(
                memberships::created_at.gt(at).or(memberships::created_at
                    .eq(at)
                    .and(memberships::user_id.gt(id.as_uuid()))),
            );
        }
        let rows: Vec<(Uuid, String, String, String, DateTime<Utc>)> =
            query.load(&mut conn).await.map_err(from_diesel)?;
        rows.into_iter()
            .map(|(id, email, name, r, joined_at)| {
                Ok(MemberRecord {
                    user_id: UserId::from_uuid(id),
                    email,
                    name,
                    role: role(&r)?,
                    joined_at,
                })
            })
            .collect()
    }

    async fn change_role(
        &self,
        org: OrgId,
        actor: UserId,
        target: UserId,
        new_role: Role,
        rule: RoleChangeRule,
    ) -> Result<MemberRecord, MemberChangeError> {
        let mut conn = self.db.conn().await?;
        let changed = conn
            .transaction(async move |conn| {
                let (a, t, owners) = refs(conn, org, actor, target).await?;
                rule(a, t, new_role, owners).map_err(|e| Tx::Domain(MemberChangeError::Rule(e)))?;
                diesel::update(memberships::table.find((org.as_uuid(), target.as_uuid())))
                    .set((
                        memberships::role.eq(new_role.as_str()),
                        memberships::updated_at.eq(diesel::dsl::now),
                    ))
                    .execute(conn)
                    .await?;
                let change = AuditChange::new(
                    "member.role_changed",
                    "member",
                    Some(target.as_uuid().to_string()),
                    &serde_json::json!({ "role": { "from": t.role, "to": new_role } }),
                );
                audit::record(conn, org, change).await?;
                member(conn, org, target)
                    .await?
                    .ok_or(Tx::Domain(MemberChangeError::NotFound))
            })
            .await
            .map_err(member_change);
        self.sessions.invalidate();
        changed
    }

    async fn remove_member(
        &self,
        org: OrgId,
        actor: UserId,
        target: UserId,
        rule: RemovalRule,
        events: Vec<DomainEvent>,
    ) -> Result<(), MemberChangeError> {
        let mut conn = self.db.conn().await?;
        let removed = conn
            .transaction(async move |conn| {
                let (a, t, owners) = refs(conn, org, actor, target).await?;
                rule(a, t, owners).map_err(|e| Tx::Domain(MemberChangeError::Rule(e)))?;
                diesel::delete(memberships::table.find((org.as_uuid(), target.as_uuid())))
                    .execute(conn)
                    .await?;
                revoke_user_sessions(conn, target, Some(org), None, "member_removed").await?;
                // Their keys go with them: refused while they are away anyway, they must
                // not come back if the person is invited again.
                diesel::update(
                    api_keys::table
                        .filter(api_keys::organization_id.eq(org.as_uuid()))
                        .filter(api_keys::created_by.eq(target.as_uuid()))
                        .filter(api_keys::revoked_at.is_null()),
                )
                .set(api_keys::revoked_at.eq(diesel::dsl::now))
                .execute(conn)
                .await?;
                outbox::append(conn, &events).await?;
                Ok(())
            })
            .await
            .map_err(member_change);
        self.sessions.invalidate();
        removed
    }

    async fn create_invitation(&self, i: NewInvitation) -> Result<InvitationRecord, StoreError> {
        let mut conn = self.db.conn().await?;
        let change = AuditChange::new(
            "invitation.created",
            "invitation",
            Some(i.id.as_uuid().to_string()),
            &serde_json::json!({ "after": {
                "email": i.email, "role": i.role, "expiresAt": i.expires_at,
            } }),
        );
        let i = &i;
        conn.transaction(async move |conn| {
            diesel::insert_into(invitations::table)
                .values((
                    invitations::id.eq(i.id.as_uuid()),
                    invitations::organization_id.eq(i.org_id.as_uuid()),
                    invitations::email.eq(&i.email),
                    invitations::role.eq(i.role.as_str()),
                    invitations::token_hash.eq(&i.token_hash),
                    invitations::invited_by.eq(i.invited_by.as_uuid()),
                    invitations::expires_at.eq(i.expires_at),
                ))
                .execute(conn)
                .await?;
            audit::record(conn, i.org_id, change).await
        })
        .await
        .map_err(from_diesel)?;
        let row: InvitationTuple = invitations::table
            .inner_join(organizations::table)
            .filter(invitations::id.eq(i.id.as_uuid()))
            .select(invitation_columns!())
            .first(&mut conn)
            .await
            .map_err(from_diesel)?;
        invitation(row)
    }

    async fn invitations(&self, org: OrgId) -> Result<Vec<InvitationRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        let rows: Vec<InvitationTuple> = invitations::table
            .inner_join(organizations::table)
            .filter(invitations::organization_id.eq(org.as_uuid()))
            .filter(invitations::accepted_at.is_null())
            .filter(invitations::revoked_at.is_null())
            .order((invitations::created_at.desc(), invitations::id.desc()))
            .select(invitation_columns!())
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        rows.into_iter().map(invitation).collect()
    }

    async fn revoke_invitation(&self, org: OrgId, id: InvitationId) -> Result<bool, StoreError> {
        let mut conn = self.db.conn().await?;
        conn.transaction(async move |conn| {
            let n = diesel::update(
                invitations::table
                    .filter(invitations::organization_id.eq(org.as_uuid()))
                    .filter(invitations::id.eq(id.as_uuid()))
                    .filter(invitations::accepted_at.is_null())
                    .filter(invitations::revoked_at.is_null()),
            )
            .set(invitations::revoked_at.eq(diesel::dsl::now))
            .execute(conn)
            .await?;
            if n == 1 {
                let change = AuditChange::new(
                    "invitation.revoked",
                    "invitation",
                    Some(id.as_uuid().to_string()),
                    &serde_json::json!({}),
                );
                audit::record(conn, org, change).await?;
            }
            Ok(n == 1)
        })
        .await
        .map_err(from_diesel)
    }

    async fn invitation_by_token(
        &self,
        token_hash: Vec<u8>,
    ) -> Result<Option<InvitationRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        let row: Option<InvitationTuple> = invitations::table
            .inner_join(organizations::table)
            .filter(invitations::token_hash.eq(token_hash))
            .filter(invitations::accepted_at.is_null())
            .filter(invitations::revoked_at.is_null())
            .filter(invitations::expires_at.gt(diesel::dsl::now))
            .select(invitation_columns!())
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_diesel)?;
        row.map(invitation).transpose()
    }

    async fn accept_invitation(
        &self,
        token_hash: Vec<u8>,
        invitee: Invitee,
        session: NewSession,
        events: Vec<DomainEvent>,
    ) -> Result<InvitationRecord, AcceptError> {
        let mut conn = self.db.conn().await?;
        let result = conn
            .transaction(async move |conn| {
                // Spending the token first makes acceptance single-use under concurrency.
                let spent: Option<Uuid> = diesel::update(
                    invitations::table
                        .filter(invitations::token_hash.eq(&token_hash))
                        .filter(invitations::accepted_at.is_null())
                        .filter(invitations::revoked_at.is_null())
                        .filter(invitations::expires_at.gt(diesel::dsl::now)),
                )
                .set(invitations::accepted_at.eq(diesel::dsl::now))
                .returning(invitations::id)
                .get_result(conn)
                .await
                .optional()?;
                let id = spent.ok_or(Tx::Domain(AcceptError::Invalid))?;
                let row: InvitationTuple = invitations::table
                    .inner_join(organizations::table)
                    .filter(invitations::id.eq(id))
                    .select(invitation_columns!())
                    .first(conn)
                    .await?;
                let record = invitation(row).map_err(|e| Tx::Domain(AcceptError::Store(e)))?;
                let user_id = match &invitee {
                    Invitee::Existing(id) => *id,
                    Invitee::New(user) => {
                        insert_user(conn, user).await.map_err(|e| {
                            if is_unique_violation(&e, "users_email_key") {
                                Tx::Domain(AcceptError::EmailTaken)
                            } else {
                                Tx::Db(e)
                            }
                        })?;
                        user.id
                    }
                };
                let inserted = diesel::insert_into(memberships::table)
                    .values((
                        memberships::organization_id.eq(record.org_id.as_uuid()),
                        memberships::user_id.eq(user_id.as_uuid()),
                        memberships::role.eq(record.role.as_str()),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                if inserted == 0 {
                    return Err(Tx::Domain(AcceptError::AlreadyMember));
                }
                insert_session(conn, &session).await?;
                outbox::append(conn, &events).await?;
                Ok(record)
            })
            .await;
        match result {
            Ok(r) => Ok(r),
            Err(Tx::Domain(e)) => Err(e),
            Err(Tx::Db(e)) => Err(AcceptError::Store(from_diesel(e))),
        }
    }

    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKeyRecord, StoreError> {
        let mut conn = self.db.conn().await?;
        // The secret's hash stays out of the entry; name, prefix and role identify the key.
        let change = AuditChange::new(
            "api_key.created",
            "api_key",
            Some(key.id.as_uuid().to_string()),
            &serde_json::json!({ "after": {
                "name": key.name, "prefix": key.prefix, "role": key.role, "expiresAt": key.expires_at,
            } }),
        );
        let key = &key;
        let row: ApiKeyRow = conn
            .transaction(async move |conn| {
                let row = diesel::insert_into(api_keys::table)
                    .values((
                        api_keys::id.eq(key.id.as_uuid()),
                        api_keys::organization_id.eq(key.org_id.as_uuid()),
                        api_keys::name.eq(&key.name),
                        api_keys::prefix.eq(&key.prefix),
                        api_keys::secret_hash.eq(&key.secret_hash),
                        api_keys::role.eq(key.role.as_str()),
                        api_keys::created_by.eq(key.created_by.as_uuid()),
                        api_keys::expires_at.eq(key.expires_at),
                    ))
                    .returning(ApiKeyRow::as_returning())
                    .get_result(conn)
                    .await?;
                audit::record(conn, key.org_id, change).await?;
                Ok(row)
            })
            .await
            .map_err(from_diesel)?;
        row.try_into()
    }

    async fn api_keys(&self, org: OrgId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        let rows: Vec<ApiKeyRow> = api_keys::table
            .filter(api_keys::organization_id.eq(org.as_uuid()))
            .order((api_keys::created_at.desc(), api_keys::id.desc()))
            .select(ApiKeyRow::as_select())
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn revoke_api_key(&self, org: OrgId, id: ApiKeyId) -> Result<bool, StoreError> {
        let mut conn = self.db.conn().await?;
        conn.transaction(async move |conn| {
            let n = diesel::update(
                api_keys::table
                    .filter(api_keys::organization_id.eq(org.as_uuid()))
                    .filter(api_keys::id.eq(id.as_uuid()))
                    .filter(api_keys::revoked_at.is_null()),
            )
            .set(api_keys::revoked_at.eq(diesel::dsl::now))
            .execute(conn)
            .await?;
            if n == 1 {
                let change = AuditChange::new(
                    "api_key.revoked",
                    "api_key",
                    Some(id.as_uuid().to_string()),
                    &serde_json::json!({}),
                );
                audit::record(conn, org, change).await?;
            }
            Ok(n == 1)
        })
        .await
        .map_err(from_diesel)
    }

    async fn use_api_key(&self, secret_hash: Vec<u8>) -> Result<Option<UsedApiKey>, StoreError> {
        let mut conn = self.db.conn().await?;
        let found: Option<(ApiKeyRow, Option<String>)> = api_keys::table
            .left_join(
                memberships::table.on(memberships::organization_id
                    .eq(api_keys::organization_id)
                    .and(memberships::user_id.eq(api_keys::created_by))),
            )
            .filter(api_keys::secret_hash.eq(&secret_hash))
            .select((ApiKeyRow::as_select(), memberships::role.nullable()))
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_diesel)?;
        let Some((row, creator_role)) = found else {
            return Ok(None);
        };
        // At most one write a minute per key: a busy integration must not turn every
        // read into a write. A key whose creator has left is refused, not used.
        if creator_role.is_some()
            && row
                .last_used_at
                .is_none_or(|at| at < Utc::now() - chrono::Duration::minutes(1))
        {
            diesel::update(api_keys::table.find(row.id))
                .set(api_keys::last_used_at.eq(diesel::dsl::now))
                .execute(&mut conn)
                .await
                .map_err(from_diesel)?;
        }
        Ok(Some(UsedApiKey {
            key: row.try_into()?,
            creator_role: creator_role.as_deref().map(role).transpose()?,
        }))
    }
}
