//! Use cases of NEXUS: one service per area, generic over the driven ports it needs.
//! Each service also implements a dyn-compatible use-case trait so the HTTP layer can
//! hold it as `Arc<dyn ..>` (actix handlers cannot be generic).

pub mod health;

pub use health::{HealthService, HealthUseCases, Readiness};
