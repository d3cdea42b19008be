//! A minimal Server-Sent Events reader over reqwest, for the tests and the benchmark.
#![allow(clippy::expect_used)]

use std::time::Duration;

/// One parsed SSE block: a message, or a comment (heartbeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseFrame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
    pub comments: Vec<String>,
}

impl SseFrame {
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.data.as_deref().unwrap_or("null")).unwrap_or_default()
    }
}

pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

/// How long a test waits for the next block before it fails instead of hanging.
const STALL: Duration = Duration::from_secs(20);

impl SseClient {
    /// # Panics
    /// When the response is not a 200 event stream.
    #[must_use]
    pub fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status().as_u16(), 200, "stream status");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next block, comments included.
    ///
    /// # Panics
    /// When the stream ends or stalls.
    pub async fn next_frame(&mut self) -> SseFrame {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut frame = SseFrame::default();
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        frame.comments.push(c.trim().to_owned());
                    } else if let Some((k, v)) = line.split_once(':') {
                        let v = v.strip_prefix(' ').unwrap_or(v).to_owned();
                        match k {
                            "id" => frame.id = Some(v),
                            "event" => frame.event = Some(v),
                            "data" => frame.data = Some(v),
                            _ => {}
                        }
                    }
                }
                return frame;
            }
            let chunk = tokio::time::timeout(STALL, self.response.chunk())
                .await
                .expect("the stream stalled")
                .expect("reading the stream")
                .expect("the stream ended");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Whether the server ends the stream: reads (skipping comments) until it does.
    ///
    /// # Panics
    /// When a message arrives instead, or the stream stalls.
    pub async fn ended(&mut self) -> bool {
        loop {
            let chunk = tokio::time::timeout(STALL, self.response.chunk())
                .await
                .expect("the stream stalled");
            match chunk {
                Ok(None) | Err(_) => return true,
                Ok(Some(bytes)) => {
                    let text = String::from_utf8_lossy(&bytes);
                    assert!(
                        !text.contains("data:"),
                        "a message instead of the end: {text}"
                    );
                }
            }
        }
    }

    /// The next message, skipping comments.
    ///
    /// # Panics
    /// As [`SseClient::next_frame`].
    pub async fn next_event(&mut self) -> SseFrame {
        loop {
            let frame = self.next_frame().await;
            if frame.data.is_some() {
                return frame;
            }
        }
    }
}
