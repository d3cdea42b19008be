//! The delivery path with every port mocked: the SSRF guard must refuse before the
//! sender is ever asked to connect (the mock sender fails the test if it is).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use nexus_domain::webhook::{Allowlist, DeliveryNext, DisableReason};
use nexus_domain::{DeliveryId, EventType, OrgId, WebhookId};
use nexus_ports::clock::MockClock;
use nexus_ports::ids::MockIdGenerator;
use nexus_ports::webhooks::{
    ClaimedDelivery, MockHostResolver, MockWebhookSender, MockWebhookStore, OutboundRequest,
    OutboundResponse,
};

use super::*;

type Finished = Arc<
    Mutex<
        Vec<(
            AttemptReport,
            nexus_domain::webhook::AttemptDecision,
            Option<DomainEvent>,
        )>,
    >,
>;

fn claimed(url: &str) -> ClaimedDelivery {
    ClaimedDelivery {
        org: OrgId::from_uuid(uuid::Uuid::now_v7()),
        id: DeliveryId::from_uuid(uuid::Uuid::now_v7()),
        webhook_id: WebhookId::from_uuid(uuid::Uuid::now_v7()),
        message_id: uuid::Uuid::now_v7(),
        body: r#"{"type":"contact.created"}"#.to_owned(),
        url: url.to_owned(),
        secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()],
        attempts: 0,
        failing_since: None,
        lease_token: uuid::Uuid::now_v7(),
    }
}

fn store_with(claim: ClaimedDelivery, finished: &Finished) -> MockWebhookStore {
    let mut store = MockWebhookStore::new();
    let mut once = Some(claim);
    store.expect_claim().returning(move |_, _| {
        let c = once.take();
        Box::pin(async move { Ok(c) })
    });
    let sink = finished.clone();
    store
        .expect_finish()
        .returning(move |_, report, decision, event| {
            sink.lock().unwrap().push((report, decision, event));
            Box::pin(async { Ok(true) })
        });
    store
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn resolver(map: &'static [(&'static str, &'static str)]) -> MockHostResolver {
    let mut r = MockHostResolver::new();
    r.expect_resolve().returning(move |host, _| {
        let ips: Vec<IpAddr> = map
            .iter()
            .filter(|(h, _)| *h == host)
            .map(|(_, ip)| ip.parse().unwrap())
            .collect();
        Box::pin(async move { Ok(ips) })
    });
    r
}

fn worker(
    store: MockWebhookStore,
    resolver: MockHostResolver,
    sender: MockWebhookSender,
    allowlist: &str,
) -> DeliveryWorker<MockWebhookStore, MockHostResolver, MockWebhookSender, MockClock, MockIdGenerator>
{
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    let mut ids = MockIdGenerator::new();
    ids.expect_new_id().returning(uuid::Uuid::now_v7);
    let settings = WebhookSettings {
        allowlist: Allowlist::parse(allowlist).unwrap(),
        ..WebhookSettings::default()
    };
    DeliveryWorker::new(store, resolver, sender, clock, ids, settings)
}

/// A sender that must never be called: a broken guard fails here, before any packet.
fn no_sender() -> MockWebhookSender {
    let mut s = MockWebhookSender::new();
    s.expect_send().times(0);
    s
}

const DNS: &[(&str, &str)] = &[
    ("internal.example", "10.0.0.1"),
    ("loopback.example", "127.0.0.1"),
    ("metadata.example", "169.254.169.254"),
    ("mixed.example", "93.184.216.34"),
    ("mixed.example", "192.168.0.10"),
    ("public.example", "93.184.216.34"),
];

#[tokio::test]
async fn ssrf_targets_are_refused_without_connecting_and_recorded_as_failed() {
    for url in [
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[::1]/hook",
        "https://2130706433/hook",
        "https://0177.0.0.1/hook",
        "https://0x7f000001/hook",
        "https://internal.example/hook",
        "https://loopback.example/hook",
        "https://metadata.example/hook",
        "https://mixed.example/hook",
        "https://public.example:8443/hook",
        "https://nowhere.example/hook",
    ] {
        let finished = Finished::default();
        let w = worker(
            store_with(claimed(url), &finished),
            resolver(DNS),
            no_sender(),
            "",
        );
        assert!(w.run_once().await.unwrap(), "{url}");
        let done = finished.lock().unwrap();
        let (report, decision, event) = &done[0];
        let error = report.error.as_deref().unwrap_or_default();
        assert!(error.starts_with("refused: "), "{url}: {error}");
        assert_eq!(decision.delivery, DeliveryNext::Failed, "{url}");
        assert_eq!(report.status_code, None);
        assert!(event.is_none());
    }
}

#[tokio::test]
async fn an_allowed_destination_is_pinned_signed_and_succeeds_on_2xx() {
    let finished = Finished::default();
    let seen: Arc<Mutex<Vec<OutboundRequest>>> = Arc::default();
    let mut sender = MockWebhookSender::new();
    let sink = seen.clone();
    sender.expect_send().times(1).returning(move |req| {
        sink.lock().unwrap().push(req);
        Box::pin(async {
            Ok(OutboundResponse {
                status: 204,
                body: "x".repeat(10_000),
            })
        })
    });
    let c = claimed("https://public.example/hook");
    let message_id = c.message_id.to_string();
    let w = worker(store_with(c, &finished), resolver(DNS), sender, "");
    assert!(w.run_once().await.unwrap());

    let req = seen.lock().unwrap().remove(0);
    assert_eq!(req.addrs, vec!["93.184.216.34:443".parse().unwrap()]);
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(header("webhook-id"), message_id);
    assert_eq!(header("webhook-timestamp"), now().timestamp().to_string());
    assert_eq!(
        header("webhook-signature"),
        super::super::signature::sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            &message_id,
            now().timestamp(),
            &req.body
        )
    );
    assert!(!req.headers.iter().any(|(_, v)| v.contains("MfKQ9r8G")));

    let done = finished.lock().unwrap();
    let (report, decision, _) = &done[0];
    assert_eq!(decision.delivery, DeliveryNext::Succeeded);
    assert_eq!(report.status_code, Some(204));
    assert_eq!(
        report.response_body.as_ref().map(String::len),
        Some(MAX_KEPT_BODY)
    );
}

#[tokio::test]
async fn allowlisted_loopback_may_use_http_and_any_port() {
    let finished = Finished::default();
    let mut sender = MockWebhookSender::new();
    sender.expect_send().times(1).returning(|req| {
        assert_eq!(req.addrs, vec!["127.0.0.1:8080".parse().unwrap()]);
        Box::pin(async {
            Ok(OutboundResponse {
                status: 200,
                body: String::new(),
            })
        })
    });
    let w = worker(
        store_with(claimed("http://127.0.0.1:8080/in"), &finished),
        resolver(DNS),
        sender,
        "127.0.0.0/8",
    );
    assert!(w.run_once().await.unwrap());
    assert_eq!(
        finished.lock().unwrap()[0].1.delivery,
        DeliveryNext::Succeeded
    );
}

#[tokio::test]
async fn failures_retry_gone_disables_and_records_the_event() {
    for (status, expect_disable) in [(500u16, None), (410, Some(DisableReason::Gone))] {
        let finished = Finished::default();
        let mut sender = MockWebhookSender::new();
        sender.expect_send().returning(move |_| {
            Box::pin(async move {
                Ok(OutboundResponse {
                    status,
                    body: "nope".into(),
                })
            })
        });
        let w = worker(
            store_with(claimed("https://public.example/hook"), &finished),
            resolver(DNS),
            sender,
            "",
        );
        w.run_once().await.unwrap();
        let done = finished.lock().unwrap();
        let (report, decision, event) = &done[0];
        assert_eq!(report.status_code, Some(status));
        assert_eq!(decision.disable, expect_disable);
        match expect_disable {
            None => assert!(matches!(decision.delivery, DeliveryNext::RetryAt(_))),
            Some(_) => {
                assert_eq!(decision.delivery, DeliveryNext::Failed);
                let e = event.as_ref().unwrap();
                assert_eq!(e.event_type, EventType::WebhookDisabled);
                assert_eq!(e.payload["reason"], "the endpoint answered 410 Gone");
            }
        }
    }
}

#[tokio::test]
async fn a_connection_error_is_a_retryable_failure() {
    let finished = Finished::default();
    let mut sender = MockWebhookSender::new();
    sender
        .expect_send()
        .returning(|_| Box::pin(async { Err("connection refused".to_owned()) }));
    let w = worker(
        store_with(claimed("https://public.example/hook"), &finished),
        resolver(DNS),
        sender,
        "",
    );
    w.run_once().await.unwrap();
    let done = finished.lock().unwrap();
    assert_eq!(done[0].0.error.as_deref(), Some("connection refused"));
    assert!(matches!(done[0].1.delivery, DeliveryNext::RetryAt(_)));
}

#[test]
fn truncation_keeps_whole_characters() {
    let body = "é".repeat(3000);
    let cut = truncate_body(body);
    assert!(cut.len() <= MAX_KEPT_BODY);
    assert!(cut.len() >= MAX_KEPT_BODY - 1);
    assert!(jitter(uuid::Uuid::now_v7(), 1) < 1.0);
}
