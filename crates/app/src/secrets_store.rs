//! Development conveniences kept in the data folder: a JWT secret generated once (so
//! sessions survive restarts) and the demo login.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nexus_ports::security::SecretGenerator;

use crate::crypto::RandomSecrets;

/// Reads `<data dir>/<name>`, creating it (mode 0600) with a fresh secret if absent.
///
/// # Errors
/// File system failures.
pub fn load_or_create(data_dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = data_dir.join(name);
    if let Ok(existing) = fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if existing.len() >= 32 {
            return Ok(existing);
        }
    }
    fs::create_dir_all(data_dir)?;
    let secret = RandomSecrets.token();
    let mut file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(secret.as_bytes())?;
    Ok(secret)
}
