pub mod api_keys;
pub mod auth;
pub mod contacts;
pub mod custom_fields;
pub mod health;
pub mod members;
pub mod organization;
pub mod tags;
