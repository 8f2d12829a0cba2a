//! The bench's HTTP pieces, all on 127.0.0.1: a keep-alive client (one
//! connection per worker, hyper's HTTP/1.1 connection API, no pool) and a
//! keep-alive webhook receiver that answers 204 at once and notes when each
//! `webhook-id` arrived at which endpoint path.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One keep-alive HTTP/1.1 connection; reconnects when the server closes it.
pub struct Client {
    address: SocketAddr,
    host: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub fn new(address: SocketAddr) -> Client {
        Client { address, host: address.to_string(), sender: None }
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, BoxError> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.address).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("connected"))
    }

    /// Sends one request and reads the whole answer.
    pub async fn request(
        &mut self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(u16, Bytes), BoxError> {
        let host = self.host.clone();
        let sender = self.connect().await?;
        sender.ready().await?;
        let mut builder = Request::builder().method(method).uri(path).header(http::header::HOST, host);
        if !body.is_empty() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = match sender.send_request(builder.body(Full::new(body))?).await {
            Ok(response) => response,
            Err(err) => {
                self.sender = None;
                return Err(err.into());
            }
        };
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    pub async fn post_json(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value), BoxError> {
        let (status, body) = self.request(http::Method::POST, path, headers, Bytes::from(body.to_string())).await?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)))
    }
}

/// What the receiver saw.
#[derive(Default)]
pub struct Seen {
    /// First arrival per (webhook-id, endpoint path index).
    pub first: HashMap<(String, u16), Instant>,
    /// Arrivals beyond the first for the same pair (at-least-once repeats).
    pub repeats: u64,
    /// The last first arrival.
    pub last: Option<Instant>,
}

/// A webhook receiver on 127.0.0.1: `POST /e/<n>` answers 204 and records
/// the `webhook-id`; `POST /raw` answers 204 and only counts (the loopback
/// ceiling). Keep-alive on every connection.
#[derive(Clone)]
pub struct Receiver {
    pub address: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
    pub raw_count: Arc<AtomicU64>,
    pub first_count: Arc<AtomicU64>,
}

impl Receiver {
    pub async fn start() -> Result<Receiver, BoxError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let receiver = Receiver {
            address: listener.local_addr()?,
            seen: Arc::default(),
            raw_count: Arc::default(),
            first_count: Arc::default(),
        };
        let shared = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.handle(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(receiver)
    }

    async fn handle(&self, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let _ = body.collect().await;
        let now = Instant::now();
        let path = parts.uri.path();
        if path == "/raw" {
            self.raw_count.fetch_add(1, Ordering::Relaxed);
        } else if let Some(index) = path.strip_prefix("/e/").and_then(|n| n.parse::<u16>().ok()) {
            let id = parts.headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let mut seen = self.seen.lock().unwrap();
            match seen.first.entry((id, index)) {
                std::collections::hash_map::Entry::Occupied(_) => seen.repeats += 1,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(now);
                    seen.last = Some(now);
                    self.first_count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        response
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

/// Nearest-rank percentiles of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub fn percentiles(samples: &mut [f64]) -> Percentiles {
    if samples.is_empty() {
        return Percentiles::default();
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = |q: f64| {
        let index = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index]
    };
    let round = |v: f64| (v * 100.0).round() / 100.0;
    Percentiles {
        count: samples.len(),
        p50_ms: round(rank(0.50)),
        p99_ms: round(rank(0.99)),
        max_ms: round(*samples.last().unwrap()),
    }
}

pub fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = samples.len();
    if n % 2 == 1 { samples[n / 2] } else { (samples[n / 2 - 1] + samples[n / 2]) / 2.0 }
}

/// `VmHWM` (peak resident set) of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
