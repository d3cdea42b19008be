pub mod email;
pub mod password;

pub use email::EmailAddress;
pub use password::Password;
