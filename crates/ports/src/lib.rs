//! Driven ports: what the NEXUS core needs from the world, as traits.
//!
//! Every trait is `Send + Sync + 'static` and its async methods return
//! `impl Future<Output = ..> + Send`, so services stay generic (static dispatch) and
//! can be unit-tested with the mockall mocks enabled by the `mocks` feature.

pub mod audit;
pub mod clock;
pub mod contacts;
pub mod error;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod identity;
pub mod ids;
pub mod imports;
pub mod request_context;
pub mod sales;
pub mod security;
pub mod team;
pub mod webhooks;

pub use clock::{Clock, SystemClock};
pub use contacts::{ContactRepository, CustomFieldRepository};
pub use error::StoreError;
pub use health::{DatabaseProbe, PoolStats};
pub use ids::{IdGenerator, UuidV7Generator};
