//! bcrypt on the blocking pool, behind a semaphore sized to the cores: actix's blocking
//! pool alone would run hundreds of hashes at once and starve everything else of CPU.
//! A caller that cannot get a slot within the queue timeout gets `Busy` (503).

use std::sync::Arc;
use std::time::Duration;

use nexus_domain::values::Password;
use nexus_ports::security::{HashError, PasswordHasher};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct BcryptHasher {
    cost: u32,
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
    /// Verified against when the account does not exist, so that path costs the same.
    dummy: Arc<String>,
}

impl BcryptHasher {
    /// # Errors
    /// An invalid cost (bcrypt accepts 4–31).
    pub fn new(cost: u32, slots: usize, queue_timeout: Duration) -> anyhow::Result<Self> {
        let dummy = bcrypt::hash("nexus-dummy-password-for-timing", cost)?;
        Ok(Self {
            cost,
            slots: Arc::new(Semaphore::new(slots.max(1))),
            queue_timeout,
            dummy: Arc::new(dummy),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|e| HashError::Other(e.into()))?;
        let span = tracing::Span::current();
        let result = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(|e| HashError::Other(e.into()))?;
        Ok(result)
    }
}

impl PasswordHasher for BcryptHasher {
    async fn hash(&self, password: Password) -> Result<String, HashError> {
        let cost = self.cost;
        self.run(move || bcrypt::hash(password.expose(), cost))
            .await?
            .map_err(|e| HashError::Other(e.into()))
    }

    async fn verify(&self, password: Password, hash: Option<String>) -> Result<bool, HashError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.as_ref().clone());
        let matched = self
            .run(move || bcrypt::verify(password.expose(), &hash).unwrap_or(false))
            .await?;
        Ok(matched && known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::new(s.into()).unwrap()
    }

    #[tokio::test]
    async fn hashes_verify_and_the_dummy_never_matches() {
        let hasher = BcryptHasher::new(4, 2, Duration::from_secs(5)).unwrap();
        let hash = hasher.hash(pw("correct horse")).await.unwrap();
        assert!(hash.starts_with("$2b$04$"));
        assert!(
            hasher
                .verify(pw("correct horse"), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!hasher.verify(pw("wrong horse!"), Some(hash)).await.unwrap());
        assert!(
            !hasher
                .verify(pw("nexus-dummy-password-for-timing"), None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_saturated_hasher_answers_busy_instead_of_queueing_forever() {
        let hasher = BcryptHasher::new(4, 1, Duration::from_millis(20)).unwrap();
        let held = hasher.slots.clone().acquire_owned().await.unwrap();
        assert!(matches!(
            hasher.hash(pw("whatever1")).await,
            Err(HashError::Busy)
        ));
        drop(held);
        assert!(hasher.hash(pw("whatever1")).await.is_ok());
    }
}
