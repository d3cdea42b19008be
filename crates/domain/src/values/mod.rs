pub mod email;
pub mod password;
pub mod phone;

pub use email::EmailAddress;
pub use password::Password;
pub use phone::PhoneNumber;
