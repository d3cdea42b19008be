pub mod auth;
pub mod common;
pub mod team;
