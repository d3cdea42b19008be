//! The organization, its members, invitations and API keys.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nexus_domain::membership::{
    MembershipError, check_api_key_role, check_invitation, check_removal, check_role_change,
};
use nexus_domain::organization::OrganizationName;
use nexus_domain::values::{EmailAddress, Password};
use nexus_domain::{
    Action, Actor, ApiKeyId, DomainEvent, EventActor, EventId, EventType, InvitationId, Principal,
    Resource, Role, SessionId, UserId,
};
use nexus_ports::identity::{IdentityStore, NewSession, NewUser};
use nexus_ports::security::{Mail, Mailer, PasswordHasher, SecretGenerator, TokenCodec};
use nexus_ports::team::{
    AcceptError, ApiKeyRecord, InvitationRecord, Invitee, MemberChangeError, MemberRecord,
    NewApiKey, NewInvitation, OrganizationPatch, OrganizationRecord, TeamStore, UpdateError,
};
use nexus_ports::{Clock, IdGenerator};

use crate::auth::{API_KEY_PREFIX, ClientMeta, IssuedTokens};
use crate::error::{AppError, Issues, digest, person_name};

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, AppError>> + Send + 'a>>;

#[derive(Debug, Clone, Default)]
pub struct OrganizationUpdate {
    pub name: Option<String>,
    pub default_currency: Option<String>,
    pub settings: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct AcceptCommand {
    pub token: String,
    pub password: String,
    /// Required when the invitee has no account yet.
    pub name: Option<String>,
}

/// A freshly created API key: the secret exists only here.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    pub record: ApiKeyRecord,
    pub secret: String,
}

pub trait TeamUseCases: Send + Sync + 'static {
    fn organization(&self, actor: Actor) -> Fut<'_, OrganizationRecord>;
    fn update_organization(
        &self,
        actor: Actor,
        update: OrganizationUpdate,
        if_match: Option<i32>,
    ) -> Fut<'_, OrganizationRecord>;
    fn members(
        &self,
        actor: Actor,
        after: Option<(DateTime<Utc>, UserId)>,
        limit: i64,
    ) -> Fut<'_, Vec<MemberRecord>>;
    fn change_role(&self, actor: Actor, target: UserId, role: Role) -> Fut<'_, MemberRecord>;
    fn remove_member(&self, actor: Actor, target: UserId) -> Fut<'_, ()>;
    fn invite(&self, actor: Actor, email: String, role: Role) -> Fut<'_, InvitationRecord>;
    fn invitations(&self, actor: Actor) -> Fut<'_, Vec<InvitationRecord>>;
    fn revoke_invitation(&self, actor: Actor, id: InvitationId) -> Fut<'_, ()>;
    fn accept_invitation(&self, cmd: AcceptCommand, meta: ClientMeta) -> Fut<'_, IssuedTokens>;
    fn create_api_key(
        &self,
        actor: Actor,
        name: String,
        role: Role,
        expires_at: Option<DateTime<Utc>>,
    ) -> Fut<'_, CreatedApiKey>;
    fn api_keys(&self, actor: Actor) -> Fut<'_, Vec<ApiKeyRecord>>;
    fn revoke_api_key(&self, actor: Actor, id: ApiKeyId) -> Fut<'_, ()>;
}

pub struct TeamPorts<I, K, H, T, S, M, C, G> {
    pub identity: I,
    pub team: K,
    pub hasher: H,
    pub tokens: T,
    pub secrets: S,
    pub mailer: M,
    pub clock: C,
    pub ids: G,
}

pub struct TeamService<I, K, H, T, S, M, C, G> {
    p: TeamPorts<I, K, H, T, S, M, C, G>,
    invitation_ttl: Duration,
    refresh_ttl: Duration,
}

fn rule_error(e: MemberChangeError) -> AppError {
    match e {
        MemberChangeError::NotFound => AppError::NotFound,
        MemberChangeError::Rule(MembershipError::Forbidden) => AppError::Forbidden("role"),
        MemberChangeError::Rule(MembershipError::OwnerOnly) => AppError::Forbidden("owner_only"),
        MemberChangeError::Rule(MembershipError::OwnRole) => {
            AppError::conflict("own_role", "Nobody changes their own role.")
        }
        MemberChangeError::Rule(MembershipError::LastOwner) => AppError::conflict(
            "last_owner",
            "An organization always keeps at least one owner.",
        ),
        MemberChangeError::Store(s) => s.into(),
    }
}

fn ttl(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl<I, K, H, T, S, M, C, G> TeamService<I, K, H, T, S, M, C, G>
where
    I: IdentityStore,
    K: TeamStore,
    H: PasswordHasher,
    T: TokenCodec,
    S: SecretGenerator,
    M: Mailer,
    C: Clock,
    G: IdGenerator,
{
    pub const fn new(
        ports: TeamPorts<I, K, H, T, S, M, C, G>,
        invitation_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Self {
        Self {
            p: ports,
            invitation_ttl,
            refresh_ttl,
        }
    }

    fn event(
        &self,
        actor: &Actor,
        event_type: EventType,
        payload: serde_json::Value,
    ) -> DomainEvent {
        DomainEvent {
            id: EventId::from_uuid(self.p.ids.new_id()),
            organization_id: actor.org_id,
            event_type,
            occurred_at: self.p.clock.now(),
            actor: match actor.principal {
                Principal::User { user_id, .. } => EventActor::User { id: user_id },
                Principal::ApiKey { api_key_id, .. } => EventActor::ApiKey {
                    id: api_key_id.as_uuid(),
                },
            },
            payload,
        }
    }

    /// # Errors
    /// 404 when the organization vanished.
    pub async fn organization(&self, actor: Actor) -> Result<OrganizationRecord, AppError> {
        actor.authorize(Resource::OrganizationSettings, Action::Read)?;
        self.p
            .team
            .organization(actor.org_id)
            .await?
            .ok_or(AppError::NotFound)
    }

    /// # Errors
    /// 403 below ADMIN, 422 for bad fields, 412 for a stale `If-Match`.
    pub async fn update_organization(
        &self,
        actor: Actor,
        update: OrganizationUpdate,
        if_match: Option<i32>,
    ) -> Result<OrganizationRecord, AppError> {
        actor.authorize(Resource::OrganizationSettings, Action::Update)?;
        let mut issues = Issues::default();
        let name = update.name.as_deref().and_then(|n| {
            issues.check(
                "name",
                |e: &nexus_domain::organization::OrganizationNameError| e.code(),
                OrganizationName::parse(n),
            )
        });
        let is_currency = |c: &str| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase());
        if update
            .default_currency
            .as_deref()
            .is_some_and(|c| !is_currency(c))
        {
            issues.push(
                "defaultCurrency",
                "invalid_format",
                "an ISO 4217 code such as USD",
            );
        }
        if update.settings.as_ref().is_some_and(|s| !s.is_object()) {
            issues.push("settings", "invalid_type", "settings is a JSON object");
        }
        issues.finish()?;
        let patch = OrganizationPatch {
            name: name.map(|n| n.as_str().to_owned()),
            default_currency: update.default_currency,
            settings: update.settings,
        };
        self.p
            .team
            .update_organization(actor.org_id, patch, if_match)
            .await
            .map_err(|e| match e {
                UpdateError::NotFound => AppError::NotFound,
                UpdateError::VersionMismatch { .. } => AppError::PreconditionFailed,
                UpdateError::Store(s) => s.into(),
            })
    }

    /// # Errors
    /// Storage failures.
    pub async fn members(
        &self,
        actor: Actor,
        after: Option<(DateTime<Utc>, UserId)>,
        limit: i64,
    ) -> Result<Vec<MemberRecord>, AppError> {
        actor.authorize(Resource::Members, Action::Read)?;
        Ok(self.p.team.members(actor.org_id, after, limit).await?)
    }

    /// # Errors
    /// 403/404/409 per the membership rules.
    pub async fn change_role(
        &self,
        actor: Actor,
        target: UserId,
        role: Role,
    ) -> Result<MemberRecord, AppError> {
        actor.authorize(Resource::Members, Action::Update)?;
        if matches!(actor.principal, Principal::ApiKey { .. }) && role == Role::Owner {
            return Err(AppError::Forbidden("owner_only"));
        }
        self.p
            .team
            .change_role(
                actor.org_id,
                actor.user_id(),
                target,
                role,
                check_role_change,
            )
            .await
            .map_err(rule_error)
    }

    /// # Errors
    /// 403/404/409 per the membership rules.
    pub async fn remove_member(&self, actor: Actor, target: UserId) -> Result<(), AppError> {
        actor.authorize(Resource::Members, Action::Read)?;
        let event = self.event(
            &actor,
            EventType::MemberRemoved,
            serde_json::json!({ "userId": target }),
        );
        self.p
            .team
            .remove_member(
                actor.org_id,
                actor.user_id(),
                target,
                check_removal,
                vec![event],
            )
            .await
            .map_err(rule_error)
    }

    /// # Errors
    /// 403 when the role may not invite (or not with that role), 422 for a bad email,
    /// 409 when the person is already a member.
    pub async fn invite(
        &self,
        actor: Actor,
        email: String,
        role: Role,
    ) -> Result<InvitationRecord, AppError> {
        check_invitation(actor.role, role).map_err(|e| match e {
            MembershipError::OwnerOnly => AppError::Forbidden("owner_only"),
            _ => AppError::Forbidden("role"),
        })?;
        let email = EmailAddress::parse(&email)
            .map_err(|e| AppError::invalid("email", e.code(), e.to_string()))?;
        if let Some(user) = self.p.identity.user_by_email(&email).await? {
            let memberships = self.p.identity.memberships(user.id).await?;
            if memberships.iter().any(|m| m.org_id == actor.org_id) {
                return Err(AppError::conflict(
                    "already_member",
                    "This person is already a member.",
                ));
            }
        }
        let token = self.p.secrets.token();
        let invitation = NewInvitation {
            id: InvitationId::from_uuid(self.p.ids.new_id()),
            org_id: actor.org_id,
            email: email.to_string(),
            role,
            token_hash: digest(&token),
            invited_by: actor.user_id(),
            expires_at: self.p.clock.now() + ttl(self.invitation_ttl),
        };
        let record = self.p.team.create_invitation(invitation).await?;
        self.p
            .mailer
            .send(Mail {
                to: record.email.clone(),
                subject: format!("You are invited to {} on NEXUS", record.org_name),
                body: format!(
                    "You have been invited to join {} as {}. Accept within 7 days with this token: {token}",
                    record.org_name,
                    role.as_str()
                ),
            })
            .await?;
        Ok(record)
    }

    /// # Errors
    /// Storage failures.
    pub async fn invitations(&self, actor: Actor) -> Result<Vec<InvitationRecord>, AppError> {
        actor.authorize(Resource::Members, Action::Read)?;
        Ok(self.p.team.invitations(actor.org_id).await?)
    }

    /// # Errors
    /// 403 below ADMIN, 404 for unknown ids.
    pub async fn revoke_invitation(&self, actor: Actor, id: InvitationId) -> Result<(), AppError> {
        actor.authorize(Resource::Members, Action::Update)?;
        if self.p.team.revoke_invitation(actor.org_id, id).await? {
            Ok(())
        } else {
            Err(AppError::NotFound)
        }
    }

    /// # Errors
    /// 404 for unknown/expired/used tokens, 401 for a wrong password of an existing
    /// account, 422 for bad fields, 409 when already a member.
    pub async fn accept_invitation(
        &self,
        cmd: AcceptCommand,
        meta: ClientMeta,
    ) -> Result<IssuedTokens, AppError> {
        let token_hash = digest(&cmd.token);
        let invitation = self
            .p
            .team
            .invitation_by_token(token_hash.clone())
            .await?
            .ok_or(AppError::NotFound)?;
        let email = EmailAddress::parse(&invitation.email).map_err(|_| AppError::NotFound)?;
        let existing = self.p.identity.user_by_email(&email).await?;
        let (invitee, user_id) = if let Some(user) = existing {
            let password = Password::new(cmd.password).map_err(|_| AppError::InvalidCredentials)?;
            if !self
                .p
                .hasher
                .verify(password, Some(user.password_hash.clone()))
                .await?
            {
                return Err(AppError::InvalidCredentials);
            }
            (Invitee::Existing(user.id), user.id)
        } else {
            let mut issues = Issues::default();
            let password = issues.check(
                "password",
                |e: &nexus_domain::values::password::PasswordError| e.code(),
                Password::new(cmd.password),
            );
            let name = match cmd.name.as_deref() {
                Some(n) => issues.check(
                    "name",
                    |e: &crate::error::NameError| e.code(),
                    person_name(n),
                ),
                None => {
                    issues.push(
                        "name",
                        "required",
                        "a name is required to create the account",
                    );
                    None
                }
            };
            issues.finish()?;
            let (Some(password), Some(name)) = (password, name) else {
                return Err(AppError::Validation(Vec::new()));
            };
            let id = UserId::from_uuid(self.p.ids.new_id());
            let password_hash = self.p.hasher.hash(password).await?;
            (
                Invitee::New(NewUser {
                    id,
                    email: email.clone(),
                    name,
                    password_hash,
                }),
                id,
            )
        };
        let refresh = self.p.secrets.token();
        let session = NewSession {
            id: SessionId::from_uuid(self.p.ids.new_id()),
            user_id,
            org_id: invitation.org_id,
            expires_at: self.p.clock.now() + ttl(self.refresh_ttl),
            refresh_hash: digest(&refresh),
            ip: meta.ip,
            user_agent: meta.user_agent,
        };
        let joined = DomainEvent {
            id: EventId::from_uuid(self.p.ids.new_id()),
            organization_id: invitation.org_id,
            event_type: EventType::MemberJoined,
            occurred_at: self.p.clock.now(),
            actor: EventActor::User { id: user_id },
            payload: serde_json::json!({ "userId": user_id, "email": email.as_str(), "role": invitation.role }),
        };
        let accepted = self
            .p
            .team
            .accept_invitation(token_hash, invitee, session.clone(), vec![joined])
            .await
            .map_err(|e| match e {
                AcceptError::Invalid => AppError::NotFound,
                AcceptError::AlreadyMember => {
                    AppError::conflict("already_member", "You are already a member.")
                }
                AcceptError::EmailTaken => {
                    AppError::conflict("email_taken", "An account with this email already exists.")
                }
                AcceptError::Store(s) => s.into(),
            })?;
        let now = self.p.clock.now();
        let claims = nexus_ports::security::AccessClaims {
            user_id,
            org_id: accepted.org_id,
            role: accepted.role,
            session_id: session.id,
            token_id: self.p.ids.new_id(),
            issued_at: now,
            expires_at: now + ttl(self.p.tokens.access_ttl()),
        };
        Ok(IssuedTokens {
            access_token: self
                .p
                .tokens
                .issue(&claims)
                .map_err(|e| AppError::Store(e.into()))?,
            refresh_token: Some(refresh),
            expires_in: self.p.tokens.access_ttl(),
            session_id: session.id,
            org_id: accepted.org_id,
            role: accepted.role,
        })
    }

    /// # Errors
    /// 403 for roles without integrations access or asking above their own role; 422
    /// for a bad name or a past expiry.
    pub async fn create_api_key(
        &self,
        actor: Actor,
        name: String,
        role: Role,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<CreatedApiKey, AppError> {
        check_api_key_role(actor.role, role).map_err(|_| AppError::Forbidden("role"))?;
        let mut issues = Issues::default();
        let name = issues.check(
            "name",
            |e: &crate::error::NameError| e.code(),
            person_name(&name),
        );
        if expires_at.is_some_and(|at| at <= self.p.clock.now()) {
            issues.push(
                "expiresAt",
                "in_the_past",
                "the expiry must be in the future",
            );
        }
        issues.finish()?;
        let secret = format!("{API_KEY_PREFIX}{}", self.p.secrets.token());
        let key = NewApiKey {
            id: ApiKeyId::from_uuid(self.p.ids.new_id()),
            org_id: actor.org_id,
            name: name.unwrap_or_default(),
            prefix: secret.chars().take(API_KEY_PREFIX.len() + 6).collect(),
            secret_hash: digest(&secret),
            role,
            created_by: actor.user_id(),
            expires_at,
        };
        let record = self.p.team.create_api_key(key).await?;
        Ok(CreatedApiKey { record, secret })
    }

    /// # Errors
    /// 403 for MEMBER and VIEWER.
    pub async fn api_keys(&self, actor: Actor) -> Result<Vec<ApiKeyRecord>, AppError> {
        actor.authorize(Resource::Integrations, Action::Read)?;
        Ok(self.p.team.api_keys(actor.org_id).await?)
    }

    /// # Errors
    /// 403 for MEMBER and VIEWER, 404 for unknown ids.
    pub async fn revoke_api_key(&self, actor: Actor, id: ApiKeyId) -> Result<(), AppError> {
        actor.authorize(Resource::Integrations, Action::Delete)?;
        if self.p.team.revoke_api_key(actor.org_id, id).await? {
            Ok(())
        } else {
            Err(AppError::NotFound)
        }
    }
}

impl<I, K, H, T, S, M, C, G> TeamUseCases for TeamService<I, K, H, T, S, M, C, G>
where
    I: IdentityStore,
    K: TeamStore,
    H: PasswordHasher,
    T: TokenCodec,
    S: SecretGenerator,
    M: Mailer,
    C: Clock,
    G: IdGenerator,
{
    fn organization(&self, actor: Actor) -> Fut<'_, OrganizationRecord> {
        Box::pin(Self::organization(self, actor))
    }
    fn update_organization(
        &self,
        actor: Actor,
        update: OrganizationUpdate,
        if_match: Option<i32>,
    ) -> Fut<'_, OrganizationRecord> {
        Box::pin(Self::update_organization(self, actor, update, if_match))
    }
    fn members(
        &self,
        actor: Actor,
        after: Option<(DateTime<Utc>, UserId)>,
        limit: i64,
    ) -> Fut<'_, Vec<MemberRecord>> {
        Box::pin(Self::members(self, actor, after, limit))
    }
    fn change_role(&self, actor: Actor, target: UserId, role: Role) -> Fut<'_, MemberRecord> {
        Box::pin(Self::change_role(self, actor, target, role))
    }
    fn remove_member(&self, actor: Actor, target: UserId) -> Fut<'_, ()> {
        Box::pin(Self::remove_member(self, actor, target))
    }
    fn invite(&self, actor: Actor, email: String, role: Role) -> Fut<'_, InvitationRecord> {
        Box::pin(Self::invite(self, actor, email, role))
    }
    fn invitations(&self, actor: Actor) -> Fut<'_, Vec<InvitationRecord>> {
        Box::pin(Self::invitations(self, actor))
    }
    fn revoke_invitation(&self, actor: Actor, id: InvitationId) -> Fut<'_, ()> {
        Box::pin(Self::revoke_invitation(self, actor, id))
    }
    fn accept_invitation(&self, cmd: AcceptCommand, meta: ClientMeta) -> Fut<'_, IssuedTokens> {
        Box::pin(Self::accept_invitation(self, cmd, meta))
    }
    fn create_api_key(
        &self,
        actor: Actor,
        name: String,
        role: Role,
        expires_at: Option<DateTime<Utc>>,
    ) -> Fut<'_, CreatedApiKey> {
        Box::pin(Self::create_api_key(self, actor, name, role, expires_at))
    }
    fn api_keys(&self, actor: Actor) -> Fut<'_, Vec<ApiKeyRecord>> {
        Box::pin(Self::api_keys(self, actor))
    }
    fn revoke_api_key(&self, actor: Actor, id: ApiKeyId) -> Fut<'_, ()> {
        Box::pin(Self::revoke_api_key(self, actor, id))
    }
}
