use std::future::Future;
use std::pin::Pin;

use nexus_ports::{DatabaseProbe, PoolStats, StoreError};

/// Whether the service can take traffic, and why not.
#[derive(Debug)]
pub enum Readiness {
    Ready,
    NotReady(StoreError),
}

/// What the HTTP layer needs for `/health/*` and `/metrics`.
pub trait HealthUseCases: Send + Sync + 'static {
    fn readiness(&self) -> Pin<Box<dyn Future<Output = Readiness> + Send + '_>>;
    fn pool_stats(&self) -> PoolStats;
}

pub struct HealthService<P> {
    probe: P,
}

impl<P: DatabaseProbe> HealthService<P> {
    pub const fn new(probe: P) -> Self {
        Self { probe }
    }

    pub async fn check(&self) -> Readiness {
        match self.probe.ping().await {
            Ok(()) => Readiness::Ready,
            Err(err) => {
                tracing::warn!(error = %err, "readiness check failed");
                Readiness::NotReady(err)
            }
        }
    }
}

impl<P: DatabaseProbe> HealthUseCases for HealthService<P> {
    fn readiness(&self) -> Pin<Box<dyn Future<Output = Readiness> + Send + '_>> {
        Box::pin(self.check())
    }

    fn pool_stats(&self) -> PoolStats {
        self.probe.pool_stats()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nexus_ports::health::MockDatabaseProbe;

    use super::*;

    #[tokio::test]
    async fn ready_when_the_database_answers() {
        let mut probe = MockDatabaseProbe::new();
        probe
            .expect_ping()
            .times(1)
            .returning(|| Box::pin(async { Ok(()) }));
        let service = HealthService::new(probe);
        assert!(matches!(service.readiness().await, Readiness::Ready));
    }

    #[tokio::test]
    async fn not_ready_carries_the_reason() {
        let mut probe = MockDatabaseProbe::new();
        probe.expect_ping().returning(|| {
            Box::pin(async { Err(StoreError::PoolExhausted(Duration::from_millis(5))) })
        });
        let service = HealthService::new(probe);
        assert!(matches!(
            service.readiness().await,
            Readiness::NotReady(StoreError::PoolExhausted(_))
        ));
    }

    #[test]
    fn pool_stats_come_from_the_probe() {
        let mut probe = MockDatabaseProbe::new();
        let stats = PoolStats {
            max_size: 4,
            size: 2,
            available: 1,
            waiting: 0,
        };
        probe.expect_pool_stats().return_const(stats);
        assert_eq!(HealthService::new(probe).pool_stats(), stats);
    }
}
