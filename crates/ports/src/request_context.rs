//! Where the current request comes from and who makes it, for the audit writer.
//!
//! The audit entry of a change is written by the repository, in the change's transaction,
//! but the client's IP and user agent are known only to the HTTP layer. Threading them
//! through every use case and port signature would touch hundreds of lines for data no
//! business rule reads, so the HTTP middleware scopes a task-local around each request
//! instead, and the audit writer reads it. Use cases run on the request's task (handlers
//! await them directly), so the value is visible there; background workers have none and
//! record no IP.

use std::sync::{Arc, OnceLock};

use nexus_domain::Actor;

/// What the audit log records about the request behind a change.
#[derive(Debug, Default)]
pub struct RequestContext {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Set once the request is authenticated.
    actor: OnceLock<Actor>,
}

impl RequestContext {
    #[must_use]
    pub fn new(ip: Option<String>, user_agent: Option<String>) -> Self {
        Self {
            ip,
            user_agent,
            actor: OnceLock::new(),
        }
    }

    /// Records the authenticated caller (the first one wins: one request, one actor).
    pub fn set_actor(&self, actor: Actor) {
        let _ = self.actor.set(actor);
    }

    #[must_use]
    pub fn actor(&self) -> Option<Actor> {
        self.actor.get().copied()
    }
}

tokio::task_local! {
    static CURRENT: Arc<RequestContext>;
}

/// Runs `fut` with `ctx` as the current request context.
pub async fn scope<F: Future>(ctx: Arc<RequestContext>, fut: F) -> F::Output {
    CURRENT.scope(ctx, fut).await
}

/// The context of the request this task serves, if any.
#[must_use]
pub fn current() -> Option<Arc<RequestContext>> {
    CURRENT.try_with(Arc::clone).ok()
}
