//! The `nexus` binary's library half: configuration, wiring and start-up, so tests can
//! start the real application in-process.

pub mod config;
pub mod crypto;
pub mod database;
pub mod demo;
pub mod scheduling;
pub mod secrets_store;
#[cfg(feature = "testing")]
pub mod sse_client;
pub mod startup;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhook_transport;

pub use config::Config;
pub use startup::Application;
