//! PostgreSQL adapters of NEXUS: the pool, embedded migrations, the private local
//! cluster, repository implementations and (feature `testing`) per-test databases.

pub mod admin;
pub mod audit;
pub mod cluster;
pub mod error;
pub mod listener;
pub mod migrate;
pub mod numberer;
pub mod outbox;
pub mod pool;
mod positional;
pub mod probe;
pub mod repo;
pub mod retention;
pub mod schema;
pub mod seed;
pub mod session_cache;
pub mod shared_reader;
mod statement;
#[cfg(feature = "testing")]
pub mod testing;

pub use pool::{PgPool, PoolSettings};
pub use probe::PgProbe;
