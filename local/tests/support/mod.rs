//! Runs the real `skyhook serve` binary on a free port with a throwaway data
//! dir, and a local receiver whose answers the test scripts.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The Standard Webhooks specification\'s published example secret (a public test vector).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skyhook-e2e-{name}-{}-{}", std::process::id(), free_port()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub port: u16,
    pub env: Vec<(String, String)>,
}

impl Server {
    pub fn start(data_dir: PathBuf, port: u16, env: &[(&str, &str)]) -> Server {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let child = Self::spawn(&data_dir, port, &env);
        let server = Server { child, base: format!("http://127.0.0.1:{port}"), data_dir, port, env };
        server.wait_healthy();
        server
    }

    fn spawn(data_dir: &PathBuf, port: u16, env: &[(String, String)]) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_skyhook"));
        command
            .arg("serve")
            .env("SKYHOOK_LISTEN", format!("127.0.0.1:{port}"))
            .env("SKYHOOK_DATA_DIR", data_dir)
            .env("SKYHOOK_ADMIN_TOKEN", "test-admin-token-0123456789")
            .env("SKYHOOK_ALLOW_LOOPBACK", "1")
            .env("SKYHOOK_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        command.spawn().expect("skyhook binary starts")
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("skyhook serve did not start listening");
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "serve did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self) {
        self.child = Self::spawn(&self.data_dir, self.port, &self.env);
        self.wait_healthy();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client for the API with the tenant's credentials.
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub fn admin(base: &str) -> Api {
        Api { http: reqwest::Client::new(), base: base.to_string(), token: "test-admin-token-0123456789".into() }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{}", self.base, path)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.expect("API reachable");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, value) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!((200..300).contains(&status), "POST {path} → {status} {value}");
        value
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, value) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path} → {value}");
        value
    }

    /// An application, an all-scopes key, an event type and one endpoint.
    pub async fn tenant(base: &str, endpoint_url: &str) -> (Api, String) {
        let admin = Api::admin(base);
        let app = admin.post("/v1/applications", json!({"name": "e2e"})).await;
        let app_id = app["id"].as_str().unwrap();
        let key = admin.post(&format!("/v1/applications/{app_id}/api-keys"), json!({"name": "e2e"})).await;
        let api =
            Api { http: reqwest::Client::new(), base: base.to_string(), token: key["key"].as_str().unwrap().into() };
        api.post("/v1/event-types", json!({"name": "order.created"})).await;
        let endpoint =
            api.post("/v1/endpoints", json!({"url": endpoint_url, "secret": SECRET, "timeoutSecs": 5})).await;
        (api, endpoint["id"].as_str().unwrap().to_string())
    }
}

#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub answered: u16,
}

/// A receiver on 127.0.0.1 answering from a script (then 200), recording every request.
#[derive(Clone)]
pub struct Receiver {
    pub address: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
    delay: Arc<Mutex<Duration>>,
}

impl Receiver {
    pub async fn start(script: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            address: listener.local_addr().unwrap(),
            received: Arc::default(),
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            delay: Arc::new(Mutex::new(Duration::ZERO)),
        };
        let shared = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let delay = *shared.delay.lock().unwrap();
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let status = shared.script.lock().unwrap().pop_front().unwrap_or(200);
                            shared.received.lock().unwrap().push(Received {
                                at: Instant::now(),
                                headers: parts.headers,
                                body,
                                answered: status,
                            });
                            let mut response = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
                            *response.status_mut() = StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        receiver
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.address)
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    pub fn snapshot(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Event ids (webhook-id) answered with 2xx.
    pub fn delivered_ids(&self) -> Vec<String> {
        self.snapshot()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .filter_map(|r| r.headers.get("webhook-id").and_then(|v| v.to_str().ok()).map(str::to_string))
            .collect()
    }
}

pub async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}
