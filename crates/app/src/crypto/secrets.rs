use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nexus_ports::security::SecretGenerator;
use rand::RngCore;

/// 256-bit secrets from the OS-seeded CSPRNG, base64url without padding (43 chars).
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomSecrets;

impl SecretGenerator for RandomSecrets {
    fn token(&self) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_url_safe_and_distinct() {
        let a = RandomSecrets.token();
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(a, RandomSecrets.token());
    }
}
