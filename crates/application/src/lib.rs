//! Use cases of NEXUS: one service per area, generic over the driven ports it needs.
//! Each service also implements a dyn-compatible use-case trait so the HTTP layer can
//! hold it as `Arc<dyn ..>` (actix handlers cannot be generic).

pub mod auth;
pub mod contacts;
pub mod csv;
pub mod error;
pub mod events;
mod field_sets;
pub mod health;
pub mod idempotency;
pub mod imports;
pub mod sales;
pub mod team;
pub mod webhooks;

pub use auth::{AuthService, AuthSettings, AuthUseCases, ClientMeta, IssuedTokens};
pub use contacts::{ContactService, ContactUseCases};
pub use error::{AppError, FieldIssue};
pub use events::{EventService, EventUseCases, LiveEvents};
pub use health::{HealthService, HealthUseCases, Readiness};
pub use idempotency::{Begun, IdempotencyService, IdempotencyUseCases};
pub use imports::{ImportService, ImportUseCases};
pub use sales::{SalesService, SalesUseCases};
pub use team::{TeamService, TeamUseCases};
pub use webhooks::{WebhookService, WebhookSettings, WebhookUseCases};
