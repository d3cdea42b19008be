//! Prometheus metrics: requests by route template and status, latency histogram, pool.

use std::time::Duration;

use nexus_ports::PoolStats;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool_max: IntGauge,
    pool_size: IntGauge,
    pool_in_use: IntGauge,
    pool_waiting: IntGauge,
}

impl Metrics {
    /// # Errors
    /// Only on a programming error (duplicate or invalid metric names).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("nexus".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by method, route template and status.",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route template and status.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "route", "status"],
        )?;
        let gauge = |name: &str, help: &str| IntGauge::new(name, help);
        let pool_max = gauge(
            "db_pool_max_connections",
            "Largest number of pooled database connections.",
        )?;
        let pool_size = gauge(
            "db_pool_connections",
            "Database connections currently open.",
        )?;
        let pool_in_use = gauge(
            "db_pool_connections_in_use",
            "Database connections handed out.",
        )?;
        let pool_waiting = gauge(
            "db_pool_waiting",
            "Callers waiting for a database connection.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        for g in [&pool_max, &pool_size, &pool_in_use, &pool_waiting] {
            registry.register(Box::new(g.clone()))?;
        }
        Ok(Self {
            registry,
            requests,
            latency,
            pool_max,
            pool_size,
            pool_in_use,
            pool_waiting,
        })
    }

    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition, with pool gauges read at scrape time.
    pub fn render(&self, pool: PoolStats) -> String {
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.pool_max.set(as_i64(pool.max_size));
        self.pool_size.set(as_i64(pool.size));
        self.pool_in_use
            .set(as_i64(pool.size.saturating_sub(pool.available)));
        self.pool_waiting.set(as_i64(pool.waiting));
        let mut buf = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %err, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
