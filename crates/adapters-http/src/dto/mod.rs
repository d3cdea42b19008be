pub mod auth;
pub mod common;
pub mod contacts;
pub mod events;
pub mod sales;
pub mod team;
pub mod timestamp;
pub mod webhooks;
