//! Every log line of a request carries its request id (own process: it installs the
//! global subscriber).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use nexus_app::testing::TestApp;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn log_lines_of_a_request_carry_its_id() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_env_filter("info")
        .with_writer(move || writer.clone())
        .init();

    let app = TestApp::spawn().await;
    let res = reqwest::Client::new()
        .get(app.url("/health/ready"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains("request handled") && l.contains("/health/ready"))
        .unwrap_or_else(|| panic!("no request log line in:\n{logs}"));
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(json["span"]["request_id"], "trace-me-42", "{line}");
    assert_eq!(json["fields"]["status"], 200);
    assert_eq!(json["fields"]["route"], "/health/ready");
}
