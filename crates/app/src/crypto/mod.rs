//! Adapters for the cryptographic ports: bcrypt, JWT, random secrets.

pub mod bcrypt_hasher;
pub mod jwt;
pub mod secrets;

pub use bcrypt_hasher::BcryptHasher;
pub use jwt::JwtCodec;
pub use secrets::RandomSecrets;
