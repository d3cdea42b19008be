//! One delivery attempt: claim the head of a subscription's queue, guard the destination
//! (SSRF), sign, send, and record the outcome. No database connection is held during the
//! HTTP call: the claim is a lease, committed before sending.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use nexus_domain::webhook::{
    AttemptOutcome, DisableReason, Refusal, check_address, check_port, decide,
};
use nexus_domain::{DomainEvent, EventActor, EventId, EventType};
use nexus_ports::StoreError;
use nexus_ports::webhooks::{
    AttemptReport, ClaimedDelivery, HostResolver, OutboundRequest, WebhookSender, WebhookStore,
};
use nexus_ports::{Clock, IdGenerator};
use url::Host;

use super::WebhookSettings;
use super::signature::signature_header;

/// Response bodies are kept up to this many bytes.
pub const MAX_KEPT_BODY: usize = 4096;

pub struct DeliveryWorker<S, H, T, C, G> {
    store: S,
    resolver: H,
    sender: T,
    clock: C,
    ids: G,
    settings: WebhookSettings,
}

/// Where an attempt may connect, or why it may not.
enum Target {
    Go(Vec<SocketAddr>),
    Stop(AttemptOutcome, String),
}

/// A stable spread in [0, 1) per delivery and attempt, so retries of many deliveries
/// do not line up, without a random source to inject.
fn jitter(id: uuid::Uuid, attempt: u32) -> f64 {
    let (hi, lo) = id.as_u64_pair();
    let mixed = (hi ^ lo ^ u64::from(attempt)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    #[allow(clippy::cast_precision_loss)]
    let fraction = (mixed >> 11) as f64 / (1u64 << 53) as f64;
    fraction
}

/// Cuts `body` to at most [`MAX_KEPT_BODY`] bytes on a character boundary.
#[must_use]
pub fn truncate_body(mut body: String) -> String {
    if body.len() > MAX_KEPT_BODY {
        let mut end = MAX_KEPT_BODY;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body.truncate(end);
    }
    body
}

impl<S, H, T, C, G> DeliveryWorker<S, H, T, C, G>
where
    S: WebhookStore,
    H: HostResolver,
    T: WebhookSender,
    C: Clock,
    G: IdGenerator,
{
    pub const fn new(
        store: S,
        resolver: H,
        sender: T,
        clock: C,
        ids: G,
        settings: WebhookSettings,
    ) -> Self {
        Self {
            store,
            resolver,
            sender,
            clock,
            ids,
            settings,
        }
    }

    /// Makes one attempt if a delivery is due; answers whether one was.
    ///
    /// # Errors
    /// Storage failures (the lease then expires and another attempt follows).
    pub async fn run_once(&self) -> Result<bool, StoreError> {
        let token = self.ids.new_id();
        let Some(claimed) = self.store.claim(self.settings.lease, token).await? else {
            return Ok(false);
        };
        let attempted_at = self.clock.now();
        let started = Instant::now();
        let (outcome, status_code, error, response_body) = match self.target(&claimed).await {
            Target::Stop(outcome, reason) => (outcome, None, Some(reason), None),
            Target::Go(addrs) => match self.sender.send(self.request(&claimed, addrs)).await {
                Ok(resp) => (
                    AttemptOutcome::from_status(resp.status),
                    Some(resp.status),
                    None,
                    Some(truncate_body(resp.body)),
                ),
                Err(e) => (AttemptOutcome::Failed, None, Some(e), None),
            },
        };
        let report = AttemptReport {
            attempted_at,
            status_code,
            error,
            response_body,
            duration_ms: i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX),
        };
        let attempts = u32::try_from(claimed.attempts).unwrap_or(0) + 1;
        let decision = decide(
            &outcome,
            attempts,
            claimed.failing_since,
            self.clock.now(),
            &self.settings.schedule,
            jitter(claimed.id.as_uuid(), attempts),
        );
        let disabled = decision
            .disable
            .map(|reason| self.disabled_event(&claimed, reason));
        let webhook = claimed.webhook_id;
        if !self
            .store
            .finish(claimed, report, decision, disabled)
            .await?
        {
            tracing::warn!(%webhook, "a delivery's lease expired before its outcome was recorded; it will be sent again");
        }
        Ok(true)
    }

    /// Deletes deliveries older than the retention.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn purge(&self, retention: std::time::Duration) -> Result<u64, StoreError> {
        let cutoff = self.clock.now()
            - chrono::TimeDelta::from_std(retention).unwrap_or(chrono::TimeDelta::days(30));
        self.store.purge_deliveries(cutoff).await
    }

    fn disabled_event(&self, claimed: &ClaimedDelivery, reason: DisableReason) -> DomainEvent {
        DomainEvent {
            id: EventId::from_uuid(self.ids.new_id()),
            organization_id: claimed.org,
            event_type: EventType::WebhookDisabled,
            occurred_at: self.clock.now(),
            actor: EventActor::System,
            payload: serde_json::json!({
                "id": claimed.webhook_id,
                "url": claimed.url,
                "reason": reason.message(),
            }),
        }
    }

    /// The SSRF guard: the host is resolved now, and every address it resolves to must
    /// be allowed; the sender then connects only to those addresses (no second lookup
    /// that a rebinding DNS server could answer differently).
    async fn target(&self, claimed: &ClaimedDelivery) -> Target {
        let refused = |r: Refusal| Target::Stop(AttemptOutcome::Refused, format!("refused: {r}"));
        let Ok(url) = url::Url::parse(&claimed.url) else {
            return Target::Stop(AttemptOutcome::Refused, "refused: invalid URL".to_owned());
        };
        let Some(host) = url.host() else {
            return Target::Stop(AttemptOutcome::Refused, "refused: no host".to_owned());
        };
        let port = url.port_or_known_default().unwrap_or(443);
        let allowlisted = self.settings.allowlist.permits_host(&host);
        if let Err(r) = check_port(port, allowlisted) {
            return refused(r);
        }
        let ips: Vec<IpAddr> = match host {
            Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
            Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
            Host::Domain(name) => match self.resolver.resolve(name.to_owned(), port).await {
                Ok(ips) if ips.is_empty() => return refused(Refusal::Unresolved),
                Ok(ips) => ips,
                Err(e) => return Target::Stop(AttemptOutcome::Failed, format!("DNS: {e}")),
            },
        };
        if !allowlisted {
            for ip in &ips {
                if let Err(r) = check_address(*ip, &self.settings.allowlist) {
                    return refused(r);
                }
            }
        }
        Target::Go(
            ips.into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
        )
    }

    fn request(&self, claimed: &ClaimedDelivery, addrs: Vec<SocketAddr>) -> OutboundRequest {
        let id = claimed.message_id.to_string();
        let timestamp = self.clock.now().timestamp();
        let signature = signature_header(&claimed.secrets, &id, timestamp, &claimed.body);
        OutboundRequest {
            url: claimed.url.clone(),
            addrs,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("user-agent".into(), "NEXUS-Webhooks/1".into()),
                ("webhook-id".into(), id),
                ("webhook-timestamp".into(), timestamp.to_string()),
                ("webhook-signature".into(), signature),
            ],
            body: claimed.body.clone(),
            timeout: self.settings.timeout,
        }
    }
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;
