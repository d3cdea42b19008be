//! The outbound side of webhook delivery: system DNS resolution, and an HTTP client that
//! connects only to the addresses the SSRF guard approved, follows no redirects and
//! ignores proxy settings from the environment.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use nexus_application::webhooks::delivery::MAX_KEPT_BODY;
use nexus_ports::webhooks::{HostResolver, OutboundRequest, OutboundResponse, WebhookSender};

/// Resolves with the operating system's resolver.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl HostResolver for SystemResolver {
    async fn resolve(&self, host: String, port: u16) -> Result<Vec<IpAddr>, String> {
        tokio::net::lookup_host((host.as_str(), port))
            .await
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .map_err(|e| e.to_string())
    }
}

/// Clients are kept per (host, approved addresses) so connections are reused; a client
/// is pinned to its addresses, so a cached one can never reach anything else.
const MAX_CLIENTS: usize = 256;

#[derive(Default)]
pub struct ReqwestSender {
    clients: Mutex<HashMap<(String, Vec<SocketAddr>), reqwest::Client>>,
}

impl ReqwestSender {
    fn client(&self, url: &reqwest::Url, addrs: &[SocketAddr]) -> Result<reqwest::Client, String> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let key = (host.clone(), addrs.to_vec());
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| "the client cache is poisoned".to_owned())?;
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(4);
        if url.domain().is_some() {
            builder = builder.resolve_to_addrs(&host, addrs);
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}

impl WebhookSender for ReqwestSender {
    async fn send(&self, request: OutboundRequest) -> Result<OutboundResponse, String> {
        let url = reqwest::Url::parse(&request.url).map_err(|e| e.to_string())?;
        // An address literal is connected to as written: it must be the one approved.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && !request.addrs.iter().any(|a| a.ip() == ip)
        {
            return Err("the URL's address is not the approved one".to_owned());
        }
        let client = self.client(&url, &request.addrs)?;
        let mut builder = client.post(url).timeout(request.timeout).body(request.body);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        let mut response = builder.send().await.map_err(describe)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while body.len() < MAX_KEPT_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        body.truncate(MAX_KEPT_BODY);
        Ok(OutboundResponse {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        format!("connection failed: {e}")
    } else {
        e.to_string()
    }
}
