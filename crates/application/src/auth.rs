//! Registration, login, sessions with rotating refresh tokens, passwords, and turning a
//! presented credential into an [`Actor`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nexus_domain::membership::api_key_acts_as;
use nexus_domain::organization::OrganizationName;
use nexus_domain::values::{EmailAddress, Password};
use nexus_domain::{
    Actor, ApiKeyId, DomainEvent, EventActor, EventId, EventType, OrgId, Principal, Role,
    SessionId, UserId,
};
use nexus_ports::identity::{
    IdentityStore, MembershipRecord, NewSession, NewUser, RegisterError, Registration,
    RotateOutcome, UserRecord,
};
use nexus_ports::security::{
    AccessClaims, Mail, Mailer, PasswordHasher, RateDecision, RateLimiter, SecretGenerator,
    TokenCodec, TokenError,
};
use nexus_ports::team::{TeamStore, UsedApiKey};
use nexus_ports::{Clock, IdGenerator};

use crate::error::{AppError, Issues, digest, person_name};

/// Limits and lifetimes of authentication.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub refresh_ttl: Duration,
    /// A refresh token spent this recently by a concurrent request is "superseded", not
    /// "reused": parallel tabs must not revoke their own session.
    pub refresh_reuse_grace: Duration,
    pub reset_ttl: Duration,
    pub login_failures_per_email: u32,
    pub login_failures_per_ip: u32,
    pub login_failure_window: Duration,
    pub registrations_per_ip: u32,
    pub password_resets_per_ip: u32,
    pub per_ip_window: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            refresh_ttl: Duration::from_secs(7 * 24 * 3600),
            refresh_reuse_grace: Duration::from_secs(5),
            reset_ttl: Duration::from_secs(3600),
            login_failures_per_email: 5,
            login_failures_per_ip: 50,
            login_failure_window: Duration::from_secs(15 * 60),
            registrations_per_ip: 20,
            password_resets_per_ip: 20,
            per_ip_window: Duration::from_secs(3600),
        }
    }
}

/// Where a request came from, for sessions, limits and the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RegisterCommand {
    pub email: String,
    pub password: String,
    pub name: String,
    pub organization_name: String,
}

/// Tokens handed to a client after login, registration, refresh or switching.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    /// `None` when the session continues with the refresh token it has.
    pub refresh_token: Option<String>,
    pub expires_in: Duration,
    pub session_id: SessionId,
    pub org_id: OrgId,
    pub role: Role,
}

/// The caller as `GET /auth/me` shows them.
#[derive(Debug, Clone)]
pub struct Me {
    pub user: UserRecord,
    pub org_id: OrgId,
    pub role: Role,
    pub memberships: Vec<MembershipRecord>,
    pub via_api_key: Option<ApiKeyId>,
}

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, AppError>> + Send + 'a>>;

/// What the HTTP layer calls.
pub trait AuthUseCases: Send + Sync + 'static {
    fn register(&self, cmd: RegisterCommand, meta: ClientMeta) -> Fut<'_, IssuedTokens>;
    fn login(&self, email: String, password: String, meta: ClientMeta) -> Fut<'_, IssuedTokens>;
    fn refresh(&self, refresh_token: String) -> Fut<'_, IssuedTokens>;
    fn logout(&self, actor: Actor) -> Fut<'_, ()>;
    fn me(&self, actor: Actor) -> Fut<'_, Me>;
    fn switch_organization(&self, actor: Actor, org: OrgId) -> Fut<'_, IssuedTokens>;
    fn change_password(&self, actor: Actor, current: String, new: String) -> Fut<'_, ()>;
    /// Checks the address and the per-IP limit; the rest runs in [`Self::deliver_password_reset`].
    fn request_password_reset(&self, email: String, meta: ClientMeta) -> Fut<'_, EmailAddress>;
    /// Sends a reset link when the account exists; silent otherwise.
    fn deliver_password_reset(&self, email: EmailAddress) -> Fut<'_, ()>;
    fn reset_password(&self, token: String, new_password: String) -> Fut<'_, ()>;
    /// Turns a bearer credential (access token or API key) into an actor.
    fn authenticate(&self, credential: String) -> Fut<'_, Actor>;
    /// Creates the organization and its OWNER without a session (seeding).
    fn seed_owner(&self, cmd: RegisterCommand) -> Fut<'_, IssuedTokens>;
}

/// The ports the auth service needs.
pub struct AuthPorts<I, K, H, T, S, R, M, C, G> {
    pub identity: I,
    pub team: K,
    pub hasher: H,
    pub tokens: T,
    pub secrets: S,
    pub limiter: R,
    pub mailer: M,
    pub clock: C,
    pub ids: G,
}

pub struct AuthService<I, K, H, T, S, R, M, C, G> {
    p: AuthPorts<I, K, H, T, S, R, M, C, G>,
    settings: AuthSettings,
}

pub const API_KEY_PREFIX: &str = "nx_live_";

fn ttl(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn limited(decision: RateDecision) -> Result<(), AppError> {
    match decision {
        RateDecision::Allowed => Ok(()),
        RateDecision::Limited { retry_after } => Err(AppError::RateLimited { retry_after }),
    }
}

impl<I, K, H, T, S, R, M, C, G> AuthService<I, K, H, T, S, R, M, C, G>
where
    I: IdentityStore,
    K: TeamStore,
    H: PasswordHasher,
    T: TokenCodec,
    S: SecretGenerator,
    R: RateLimiter,
    M: Mailer,
    C: Clock,
    G: IdGenerator,
{
    pub const fn new(ports: AuthPorts<I, K, H, T, S, R, M, C, G>, settings: AuthSettings) -> Self {
        Self { p: ports, settings }
    }

    fn access_token(
        &self,
        user: UserId,
        org: OrgId,
        role: Role,
        session: SessionId,
    ) -> Result<String, AppError> {
        let now = self.p.clock.now();
        let claims = AccessClaims {
            user_id: user,
            org_id: org,
            role,
            session_id: session,
            token_id: self.p.ids.new_id(),
            issued_at: now,
            expires_at: now + ttl(self.p.tokens.access_ttl()),
        };
        self.p
            .tokens
            .issue(&claims)
            .map_err(|e| AppError::Store(e.into()))
    }

    fn new_session(&self, user: UserId, org: OrgId, meta: &ClientMeta) -> (NewSession, String) {
        let refresh = self.p.secrets.token();
        let session = NewSession {
            id: SessionId::from_uuid(self.p.ids.new_id()),
            user_id: user,
            org_id: org,
            expires_at: self.p.clock.now() + ttl(self.settings.refresh_ttl),
            refresh_hash: digest(&refresh),
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
        };
        (session, refresh)
    }

    fn tokens(
        &self,
        session: &NewSession,
        refresh: String,
        role: Role,
    ) -> Result<IssuedTokens, AppError> {
        Ok(IssuedTokens {
            access_token: self.access_token(session.user_id, session.org_id, role, session.id)?,
            refresh_token: Some(refresh),
            expires_in: self.p.tokens.access_ttl(),
            session_id: session.id,
            org_id: session.org_id,
            role,
        })
    }

    fn default_pipeline(&self) -> Result<nexus_domain::pipeline::Pipeline, AppError> {
        use nexus_domain::pipeline::{Pipeline, default_stages, validate_definition};
        let (name, stages) = validate_definition("Sales", default_stages(), || {
            nexus_domain::StageId::from_uuid(self.p.ids.new_id())
        })
        .map_err(|_| AppError::Store(anyhow::anyhow!("the default pipeline is invalid").into()))?;
        Ok(Pipeline {
            id: nexus_domain::PipelineId::from_uuid(self.p.ids.new_id()),
            name,
            is_default: true,
            stages,
        })
    }

    fn member_joined(&self, org: OrgId, user: UserId, role: Role, email: &str) -> DomainEvent {
        DomainEvent {
            id: EventId::from_uuid(self.p.ids.new_id()),
            organization_id: org,
            event_type: EventType::MemberJoined,
            occurred_at: self.p.clock.now(),
            actor: EventActor::User { id: user },
            payload: serde_json::json!({ "userId": user, "email": email, "role": role }),
        }
    }

    /// # Errors
    /// Validation (all fields at once), rate limits, a taken email (409, nothing written).
    pub async fn register(
        &self,
        cmd: RegisterCommand,
        meta: ClientMeta,
    ) -> Result<IssuedTokens, AppError> {
        if let Some(ip) = &meta.ip {
            let key = format!("register:ip:{ip}");
            limited(
                self.p
                    .limiter
                    .hit(
                        &key,
                        self.settings.registrations_per_ip,
                        self.settings.per_ip_window,
                    )
                    .await?,
            )?;
        }
        self.create_owner(cmd, meta).await
    }

    async fn create_owner(
        &self,
        cmd: RegisterCommand,
        meta: ClientMeta,
    ) -> Result<IssuedTokens, AppError> {
        let mut issues = Issues::default();
        let email = issues.check(
            "email",
            |e: &nexus_domain::values::email::EmailError| e.code(),
            EmailAddress::parse(&cmd.email),
        );
        let password = issues.check(
            "password",
            |e: &nexus_domain::values::password::PasswordError| e.code(),
            Password::new(cmd.password),
        );
        let name = issues.check(
            "name",
            |e: &crate::error::NameError| e.code(),
            person_name(&cmd.name),
        );
        let org_name = issues.check(
            "organizationName",
            |e: &nexus_domain::organization::OrganizationNameError| e.code(),
            OrganizationName::parse(&cmd.organization_name),
        );
        issues.finish()?;
        let (Some(email), Some(password), Some(name), Some(org_name)) =
            (email, password, name, org_name)
        else {
            return Err(AppError::Validation(Vec::new()));
        };
        let password_hash = self.p.hasher.hash(password).await?;
        let user_id = UserId::from_uuid(self.p.ids.new_id());
        let org_id = OrgId::from_uuid(self.p.ids.new_id());
        let (session, refresh) = self.new_session(user_id, org_id, &meta);
        let event = self.member_joined(org_id, user_id, Role::Owner, email.as_str());
        let registration = Registration {
            user: NewUser {
                id: user_id,
                email,
                name,
                password_hash,
            },
            org_id,
            org_name: org_name.as_str().to_owned(),
            slug_stem: org_name.slug_stem(),
            session: session.clone(),
            events: vec![event],
            default_pipeline: self.default_pipeline()?,
        };
        match self.p.identity.register(registration).await {
            Ok(_slug) => self.tokens(&session, refresh, Role::Owner),
            Err(RegisterError::EmailTaken) => Err(AppError::conflict(
                "email_taken",
                "An account with this email address already exists.",
            )),
            Err(RegisterError::Store(e)) => Err(e.into()),
        }
    }

    /// # Errors
    /// [`AppError::InvalidCredentials`] for any wrong email/password pair (same answer,
    /// same time), [`AppError::RateLimited`] after repeated failures.
    pub async fn login(
        &self,
        email: String,
        password: String,
        meta: ClientMeta,
    ) -> Result<IssuedTokens, AppError> {
        let normalized = EmailAddress::parse(&email).ok();
        let email_key = format!(
            "login:email:{}",
            normalized
                .as_ref()
                .map_or(email.trim().to_lowercase(), ToString::to_string)
        );
        let ip_key = meta.ip.as_ref().map(|ip| format!("login:ip:{ip}"));
        let window = self.settings.login_failure_window;
        limited(
            self.p
                .limiter
                .peek(&email_key, self.settings.login_failures_per_email, window)
                .await?,
        )?;
        if let Some(key) = &ip_key {
            limited(
                self.p
                    .limiter
                    .peek(key, self.settings.login_failures_per_ip, window)
                    .await?,
            )?;
        }

        let user = match &normalized {
            Some(e) => self.p.identity.user_by_email(e).await?,
            None => None,
        };
        // Any password that cannot be valid still spends a full verification.
        let candidate = Password::new(password).or_else(|_| Password::new("\u{0}".repeat(8)));
        let matched = match candidate {
            Ok(p) => {
                self.p
                    .hasher
                    .verify(p, user.as_ref().map(|u| u.password_hash.clone()))
                    .await?
            }
            Err(_) => false,
        };
        let Some(user) = user.filter(|_| matched) else {
            self.p.limiter.hit(&email_key, u32::MAX, window).await?;
            if let Some(key) = &ip_key {
                self.p.limiter.hit(key, u32::MAX, window).await?;
            }
            return Err(AppError::InvalidCredentials);
        };
        self.p.limiter.reset(&email_key).await?;

        let memberships = self.p.identity.memberships(user.id).await?;
        let Some(first) = memberships.first() else {
            return Err(AppError::Forbidden("no_membership"));
        };
        let (session, refresh) = self.new_session(user.id, first.org_id, &meta);
        self.p.identity.create_session(session.clone()).await?;
        self.tokens(&session, refresh, first.role)
    }

    /// # Errors
    /// 401 for unknown, expired, superseded or reused tokens (reuse revokes the family).
    pub async fn refresh(&self, presented: String) -> Result<IssuedTokens, AppError> {
        let replacement = self.p.secrets.token();
        let outcome = self
            .p
            .identity
            .rotate_refresh(
                digest(&presented),
                digest(&replacement),
                self.settings.refresh_reuse_grace,
            )
            .await?;
        match outcome {
            RotateOutcome::Rotated {
                session_id,
                user_id,
                org_id,
            } => {
                let Some(role) = self
                    .p
                    .identity
                    .session_role(session_id, user_id, org_id)
                    .await?
                else {
                    return Err(AppError::Unauthenticated("invalid_refresh_token"));
                };
                Ok(IssuedTokens {
                    access_token: self.access_token(user_id, org_id, role, session_id)?,
                    refresh_token: Some(replacement),
                    expires_in: self.p.tokens.access_ttl(),
                    session_id,
                    org_id,
                    role,
                })
            }
            RotateOutcome::Superseded => Err(AppError::Unauthenticated("refresh_token_superseded")),
            RotateOutcome::Reused => {
                tracing::warn!("refresh token reuse detected; session family revoked");
                Err(AppError::Unauthenticated("refresh_token_reused"))
            }
            RotateOutcome::Invalid => Err(AppError::Unauthenticated("invalid_refresh_token")),
        }
    }

    fn session_of(actor: &Actor) -> Result<(UserId, SessionId), AppError> {
        match actor.principal {
            Principal::User {
                user_id,
                session_id,
            } => Ok((user_id, session_id)),
            Principal::ApiKey { .. } => Err(AppError::Forbidden("session_required")),
        }
    }

    /// # Errors
    /// API keys have no session to end (403).
    pub async fn logout(&self, actor: Actor) -> Result<(), AppError> {
        let (_, session) = Self::session_of(&actor)?;
        self.p.identity.revoke_session(session, "logout").await?;
        Ok(())
    }

    /// # Errors
    /// Storage failures; a vanished user is 401.
    pub async fn me(&self, actor: Actor) -> Result<Me, AppError> {
        let user = self
            .p
            .identity
            .user(actor.user_id())
            .await?
            .ok_or(AppError::Unauthenticated("invalid_token"))?;
        let memberships = self.p.identity.memberships(user.id).await?;
        let via_api_key = match actor.principal {
            Principal::ApiKey { api_key_id, .. } => Some(api_key_id),
            Principal::User { .. } => None,
        };
        Ok(Me {
            user,
            org_id: actor.org_id,
            role: actor.role,
            memberships,
            via_api_key,
        })
    }

    /// # Errors
    /// 404 when the user is not a member of `org` (another tenant looks missing).
    pub async fn switch_organization(
        &self,
        actor: Actor,
        org: OrgId,
    ) -> Result<IssuedTokens, AppError> {
        let (user, session) = Self::session_of(&actor)?;
        let memberships = self.p.identity.memberships(user).await?;
        let membership = memberships
            .iter()
            .find(|m| m.org_id == org)
            .ok_or(AppError::NotFound)?;
        self.p.identity.switch_session(session, org).await?;
        Ok(IssuedTokens {
            access_token: self.access_token(user, org, membership.role, session)?,
            refresh_token: None,
            expires_in: self.p.tokens.access_ttl(),
            session_id: session,
            org_id: org,
            role: membership.role,
        })
    }

    /// # Errors
    /// 422 for a bad new password, 401-like `InvalidCredentials` for a wrong current one.
    pub async fn change_password(
        &self,
        actor: Actor,
        current: String,
        new: String,
    ) -> Result<(), AppError> {
        let (user_id, session) = Self::session_of(&actor)?;
        let new = Password::new(new)
            .map_err(|e| AppError::invalid("newPassword", e.code(), e.to_string()))?;
        let user = self
            .p
            .identity
            .user(user_id)
            .await?
            .ok_or(AppError::Unauthenticated("invalid_token"))?;
        let current = Password::new(current).map_err(|_| AppError::InvalidCredentials)?;
        if !self
            .p
            .hasher
            .verify(current, Some(user.password_hash))
            .await?
        {
            return Err(AppError::InvalidCredentials);
        }
        let hash = self.p.hasher.hash(new).await?;
        self.p.identity.set_password(user_id, hash).await?;
        self.p
            .identity
            .revoke_sessions(user_id, None, Some(session), "password_changed")
            .await?;
        Ok(())
    }

    /// # Errors
    /// 422 for an address that cannot be one; 429 past the per-IP limit.
    pub async fn request_password_reset(
        &self,
        email: String,
        meta: ClientMeta,
    ) -> Result<EmailAddress, AppError> {
        let email = EmailAddress::parse(&email)
            .map_err(|e| AppError::invalid("email", e.code(), e.to_string()))?;
        if let Some(ip) = &meta.ip {
            let key = format!("reset:ip:{ip}");
            limited(
                self.p
                    .limiter
                    .hit(
                        &key,
                        self.settings.password_resets_per_ip,
                        self.settings.per_ip_window,
                    )
                    .await?,
            )?;
        }
        Ok(email)
    }

    /// # Errors
    /// Storage or mail failures.
    pub async fn deliver_password_reset(&self, email: EmailAddress) -> Result<(), AppError> {
        let Some(user) = self.p.identity.user_by_email(&email).await? else {
            return Ok(());
        };
        let token = self.p.secrets.token();
        let expires_at = self.p.clock.now() + ttl(self.settings.reset_ttl);
        self.p
            .identity
            .create_password_reset(user.id, digest(&token), expires_at)
            .await?;
        self.p
            .mailer
            .send(Mail {
                to: user.email,
                subject: "Reset your NEXUS password".into(),
                body: format!(
                    "Someone asked to reset your password. Use this token within one hour: {token}\n\
                     If it was not you, ignore this message."
                ),
            })
            .await?;
        Ok(())
    }

    /// # Errors
    /// 422 for a bad password or an unknown, used or expired token.
    pub async fn reset_password(
        &self,
        token: String,
        new_password: String,
    ) -> Result<(), AppError> {
        let password = Password::new(new_password)
            .map_err(|e| AppError::invalid("newPassword", e.code(), e.to_string()))?;
        let Some(user) = self
            .p
            .identity
            .consume_password_reset(digest(&token))
            .await?
        else {
            return Err(AppError::invalid(
                "token",
                "invalid_token",
                "The reset token is unknown, used or expired.",
            ));
        };
        let hash = self.p.hasher.hash(password).await?;
        self.p.identity.set_password(user, hash).await?;
        self.p
            .identity
            .revoke_sessions(user, None, None, "password_reset")
            .await?;
        Ok(())
    }

    /// # Errors
    /// 401 with a code saying why.
    pub async fn authenticate(&self, credential: String) -> Result<Actor, AppError> {
        if credential.starts_with(API_KEY_PREFIX) {
            let UsedApiKey { key, creator_role } = self
                .p
                .team
                .use_api_key(digest(&credential))
                .await?
                .ok_or(AppError::Unauthenticated("invalid_api_key"))?;
            let now: DateTime<Utc> = self.p.clock.now();
            if key.revoked_at.is_some() {
                return Err(AppError::Unauthenticated("api_key_revoked"));
            }
            if key.expires_at.is_some_and(|at| at <= now) {
                return Err(AppError::Unauthenticated("api_key_expired"));
            }
            // Checked at each use, not only at creation: a creator who was demoted or
            // removed must not keep acting through a key made before.
            let Some(creator_role) = creator_role else {
                return Err(AppError::Unauthenticated("api_key_creator_removed"));
            };
            return Ok(Actor {
                principal: Principal::ApiKey {
                    api_key_id: key.id,
                    created_by: key.created_by,
                },
                org_id: key.org_id,
                role: api_key_acts_as(key.role, creator_role),
            });
        }
        let claims = self.p.tokens.verify(&credential).map_err(|e| match e {
            TokenError::Expired => AppError::Unauthenticated("token_expired"),
            TokenError::Invalid => AppError::Unauthenticated("invalid_token"),
        })?;
        // The session decides, not the token: logout, removal and role changes apply at once.
        let role = self
            .p
            .identity
            .session_role(claims.session_id, claims.user_id, claims.org_id)
            .await?
            .ok_or(AppError::Unauthenticated("session_revoked"))?;
        Ok(Actor {
            principal: Principal::User {
                user_id: claims.user_id,
                session_id: claims.session_id,
            },
            org_id: claims.org_id,
            role,
        })
    }
}

impl<I, K, H, T, S, R, M, C, G> AuthUseCases for AuthService<I, K, H, T, S, R, M, C, G>
where
    I: IdentityStore,
    K: TeamStore,
    H: PasswordHasher,
    T: TokenCodec,
    S: SecretGenerator,
    R: RateLimiter,
    M: Mailer,
    C: Clock,
    G: IdGenerator,
{
    fn register(&self, cmd: RegisterCommand, meta: ClientMeta) -> Fut<'_, IssuedTokens> {
        Box::pin(Self::register(self, cmd, meta))
    }
    fn login(&self, email: String, password: String, meta: ClientMeta) -> Fut<'_, IssuedTokens> {
        Box::pin(Self::login(self, email, password, meta))
    }
    fn refresh(&self, refresh_token: String) -> Fut<'_, IssuedTokens> {
        Box::pin(Self::refresh(self, refresh_token))
    }
    fn logout(&self, actor: Actor) -> Fut<'_, ()> {
        Box::pin(Self::logout(self, actor))
    }
    fn me(&self, actor: Actor) -> Fut<'_, Me> {
        Box::pin(Self::me(self, actor))
    }
    fn switch_organization(&self, actor: Actor, org: OrgId) -> Fut<'_, IssuedTokens> {
        Box::pin(Self::switch_organization(self, actor, org))
    }
    fn change_password(&self, actor: Actor, current: String, new: String) -> Fut<'_, ()> {
        Box::pin(Self::change_password(self, actor, current, new))
    }
    fn request_password_reset(&self, email: String, meta: ClientMeta) -> Fut<'_, EmailAddress> {
        Box::pin(Self::request_password_reset(self, email, meta))
    }
    fn deliver_password_reset(&self, email: EmailAddress) -> Fut<'_, ()> {
        Box::pin(Self::deliver_password_reset(self, email))
    }
    fn reset_password(&self, token: String, new_password: String) -> Fut<'_, ()> {
        Box::pin(Self::reset_password(self, token, new_password))
    }
    fn authenticate(&self, credential: String) -> Fut<'_, Actor> {
        Box::pin(Self::authenticate(self, credential))
    }
    fn seed_owner(&self, cmd: RegisterCommand) -> Fut<'_, IssuedTokens> {
        Box::pin(self.create_owner(cmd, ClientMeta::default()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nexus_ports::clock::MockClock;
    use nexus_ports::identity::MockIdentityStore;
    use nexus_ports::ids::MockIdGenerator;
    use nexus_ports::security::{
        MockMailer, MockPasswordHasher, MockRateLimiter, MockSecretGenerator, MockTokenCodec,
    };
    use nexus_ports::team::{ApiKeyRecord, MockTeamStore, UsedApiKey};

    use super::*;

    type Mocked = AuthService<
        MockIdentityStore,
        MockTeamStore,
        MockPasswordHasher,
        MockTokenCodec,
        MockSecretGenerator,
        MockRateLimiter,
        MockMailer,
        MockClock,
        MockIdGenerator,
    >;

    /// Mocks with no expectations: any call a test did not ask for fails it.
    fn ports() -> AuthPorts<
        MockIdentityStore,
        MockTeamStore,
        MockPasswordHasher,
        MockTokenCodec,
        MockSecretGenerator,
        MockRateLimiter,
        MockMailer,
        MockClock,
        MockIdGenerator,
    > {
        let mut clock = MockClock::new();
        clock.expect_now().returning(Utc::now);
        let mut ids = MockIdGenerator::new();
        ids.expect_new_id().returning(uuid::Uuid::now_v7);
        AuthPorts {
            identity: MockIdentityStore::new(),
            team: MockTeamStore::new(),
            hasher: MockPasswordHasher::new(),
            tokens: MockTokenCodec::new(),
            secrets: MockSecretGenerator::new(),
            limiter: MockRateLimiter::new(),
            mailer: MockMailer::new(),
            clock,
            ids,
        }
    }

    fn service(
        p: AuthPorts<
            MockIdentityStore,
            MockTeamStore,
            MockPasswordHasher,
            MockTokenCodec,
            MockSecretGenerator,
            MockRateLimiter,
            MockMailer,
            MockClock,
            MockIdGenerator,
        >,
    ) -> Mocked {
        AuthService::new(p, AuthSettings::default())
    }

    fn meta() -> ClientMeta {
        ClientMeta {
            ip: Some("192.0.2.7".into()),
            user_agent: None,
        }
    }

    #[tokio::test]
    async fn registration_reports_every_bad_field_before_hashing_or_writing() {
        let mut p = ports();
        p.limiter
            .expect_hit()
            .times(1)
            .returning(|_, _, _| Box::pin(async { Ok(RateDecision::Allowed) }));
        let cmd = RegisterCommand {
            email: "nope".into(),
            password: "short".into(),
            name: String::new(),
            organization_name: "x".repeat(101),
        };
        let Err(AppError::Validation(issues)) = service(p).register(cmd, meta()).await else {
            panic!("expected 422")
        };
        let fields: Vec<_> = issues.iter().map(|i| i.field.as_str()).collect();
        assert_eq!(fields, ["email", "password", "name", "organizationName"]);
    }

    #[tokio::test]
    async fn an_unknown_email_costs_a_full_verification_and_counts_as_a_failure() {
        let mut p = ports();
        p.limiter
            .expect_peek()
            .times(2)
            .returning(|_, _, _| Box::pin(async { Ok(RateDecision::Allowed) }));
        p.identity
            .expect_user_by_email()
            .times(1)
            .returning(|_| Box::pin(async { Ok(None) }));
        p.hasher
            .expect_verify()
            .withf(|_, hash| hash.is_none())
            .times(1)
            .returning(|_, _| Box::pin(async { Ok(false) }));
        p.limiter
            .expect_hit()
            .withf(|key, _, _| {
                key == "login:email:ghost@example.com" || key == "login:ip:192.0.2.7"
            })
            .times(2)
            .returning(|_, _, _| Box::pin(async { Ok(RateDecision::Allowed) }));
        let result = service(p)
            .login(
                "Ghost@Example.com".into(),
                "whatever-password".into(),
                meta(),
            )
            .await;
        assert!(matches!(result, Err(AppError::InvalidCredentials)));
    }

    #[tokio::test]
    async fn a_throttled_account_is_refused_before_any_password_check() {
        let mut p = ports();
        p.limiter.expect_peek().times(1).returning(|_, _, _| {
            Box::pin(async {
                Ok(RateDecision::Limited {
                    retry_after: Duration::from_secs(42),
                })
            })
        });
        let result = service(p)
            .login("a@b.co".into(), "password123".into(), meta())
            .await;
        assert!(
            matches!(result, Err(AppError::RateLimited { retry_after }) if retry_after.as_secs() == 42)
        );
    }

    #[tokio::test]
    async fn reuse_of_a_refresh_token_is_reported_as_such() {
        let mut p = ports();
        p.secrets.expect_token().returning(|| "replacement".into());
        p.identity
            .expect_rotate_refresh()
            .times(1)
            .returning(|_, _, _| Box::pin(async { Ok(RotateOutcome::Reused) }));
        let result = service(p).refresh("old".into()).await;
        assert!(matches!(
            result,
            Err(AppError::Unauthenticated("refresh_token_reused"))
        ));
    }

    fn api_key(
        role: Role,
        expires_at: Option<DateTime<Utc>>,
        revoked_at: Option<DateTime<Utc>>,
    ) -> ApiKeyRecord {
        ApiKeyRecord {
            id: ApiKeyId::from_uuid(uuid::Uuid::now_v7()),
            org_id: OrgId::from_uuid(uuid::Uuid::now_v7()),
            name: "k".into(),
            prefix: "nx_live_abcdef".into(),
            role,
            created_by: UserId::from_uuid(uuid::Uuid::now_v7()),
            created_at: Utc::now(),
            expires_at,
            last_used_at: None,
            revoked_at,
        }
    }

    #[tokio::test]
    async fn an_api_key_acts_no_higher_than_its_creator_now_and_not_at_all_once_they_left() {
        for (key_role, creator_role, expected) in [
            (Role::Admin, Some(Role::Owner), Ok(Role::Admin)),
            (Role::Admin, Some(Role::Viewer), Ok(Role::Viewer)),
            (Role::Member, Some(Role::Admin), Ok(Role::Member)),
            (Role::Admin, None, Err("api_key_creator_removed")),
        ] {
            let mut p = ports();
            p.team.expect_use_api_key().times(1).returning(move |_| {
                Box::pin(async move {
                    Ok(Some(UsedApiKey {
                        key: api_key(key_role, None, None),
                        creator_role,
                    }))
                })
            });
            let result = service(p).authenticate("nx_live_secret".into()).await;
            match (result, expected) {
                (Ok(actor), Ok(role)) => assert_eq!(actor.role, role),
                (Err(AppError::Unauthenticated(code)), Err(expected)) => {
                    assert_eq!(code, expected);
                }
                (other, expected) => panic!("{other:?} where {expected:?} was expected"),
            }
        }
    }

    #[tokio::test]
    async fn revoked_and_expired_api_keys_are_refused() {
        for (revoked, expired, code) in [
            (true, false, "api_key_revoked"),
            (false, true, "api_key_expired"),
        ] {
            let mut p = ports();
            p.team.expect_use_api_key().times(1).returning(move |_| {
                let now = Utc::now();
                Box::pin(async move {
                    Ok(Some(UsedApiKey {
                        key: api_key(
                            Role::Admin,
                            expired.then(|| now - chrono::Duration::seconds(1)),
                            revoked.then_some(now),
                        ),
                        creator_role: Some(Role::Owner),
                    }))
                })
            });
            let result = service(p).authenticate("nx_live_secret".into()).await;
            assert!(
                matches!(result, Err(AppError::Unauthenticated(c)) if c == code),
                "{code}"
            );
        }
    }

    #[tokio::test]
    async fn a_valid_token_of_a_revoked_session_is_refused() {
        let mut p = ports();
        p.tokens.expect_verify().returning(|_| {
            Ok(AccessClaims {
                user_id: UserId::from_uuid(uuid::Uuid::now_v7()),
                org_id: OrgId::from_uuid(uuid::Uuid::now_v7()),
                role: Role::Owner,
                session_id: SessionId::from_uuid(uuid::Uuid::now_v7()),
                token_id: uuid::Uuid::now_v7(),
                issued_at: Utc::now(),
                expires_at: Utc::now(),
            })
        });
        p.identity
            .expect_session_role()
            .times(1)
            .returning(|_, _, _| Box::pin(async { Ok(None) }));
        let result = service(p).authenticate("eyJ.a.b".into()).await;
        assert!(matches!(
            result,
            Err(AppError::Unauthenticated("session_revoked"))
        ));
    }
}
