//! A webhook receiver on 127.0.0.1 that records every request and answers as scripted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

#[derive(Debug, Clone)]
pub struct Hit {
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// What the receiver answered.
    pub status: u16,
}

impl Hit {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

#[derive(Clone)]
struct Script {
    hits: Arc<Mutex<Vec<Hit>>>,
    status: fn(usize) -> u16,
    /// The first request hangs (a worker dies while waiting for it).
    slow_first: bool,
}

pub struct Receiver {
    pub url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    handle: actix_web::dev::ServerHandle,
}

async fn receive(req: HttpRequest, body: web::Bytes, script: web::Data<Script>) -> HttpResponse {
    let (n, status) = {
        let mut hits = script.hits.lock().unwrap();
        let n = hits.len();
        let status = (script.status)(n);
        hits.push(Hit {
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        v.to_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
            status,
        });
        (n, status)
    };
    if script.slow_first && n == 0 {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .body(format!("status {status}"))
}

impl Receiver {
    async fn spawn(status: fn(usize) -> u16, slow_first: bool) -> Self {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let script = Script {
            hits: hits.clone(),
            status,
            slow_first,
        };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(script.clone()))
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://127.0.0.1:{port}/hooks"),
            hits,
            handle,
        }
    }

    /// Answers the n-th request (from 0) with `status(n)`.
    pub async fn start(status: fn(usize) -> u16) -> Self {
        Self::spawn(status, false).await
    }

    /// Hangs on the first request, answers 200 to the others.
    pub async fn start_slow_first() -> Self {
        Self::spawn(|_| 200, true).await
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}
