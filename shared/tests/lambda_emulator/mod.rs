//! A small Lambda Runtime API emulator: runs a real function binary (built
//! `bootstrap`-style, reading `AWS_LAMBDA_RUNTIME_API`) and hands it events,
//! the way the Lambda service does. No Docker needed.
//!
//! Implements `GET /2018-06-01/runtime/invocation/next`,
//! `POST …/invocation/{id}/response`, `POST …/invocation/{id}/error` and
//! `POST …/runtime/init/error`.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response(serde_json::Value),
    Error(serde_json::Value),
}

#[derive(Default)]
struct State {
    pending: VecDeque<(String, Bytes)>,
    waiting: HashMap<String, oneshot::Sender<Outcome>>,
    init_error: Option<serde_json::Value>,
    first_poll: Option<Instant>,
    polls: u64,
}

#[derive(Clone)]
pub struct Emulator {
    pub address: SocketAddr,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
}

fn respond(status: StatusCode, body: Bytes, headers: &[(&'static str, String)]) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    for (name, value) in headers {
        response.headers_mut().insert(*name, value.parse().unwrap());
    }
    response
}

impl Emulator {
    pub async fn start() -> Emulator {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let emulator =
            Emulator { address: listener.local_addr().unwrap(), state: Arc::default(), wake: Arc::new(Notify::new()) };
        let shared = emulator.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.route(request).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        emulator
    }

    async fn route(&self, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_string();
        let method = request.method().clone();
        let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let json = || serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        let segments: Vec<&str> = path.trim_start_matches("/2018-06-01/runtime/").split('/').collect();
        match (method, segments.as_slice()) {
            (Method::GET, ["invocation", "next"]) => {
                {
                    let mut state = self.state.lock().unwrap();
                    state.polls += 1;
                    state.first_poll.get_or_insert_with(Instant::now);
                }
                loop {
                    let notified = self.wake.notified();
                    if let Some((id, event)) = self.state.lock().unwrap().pending.pop_front() {
                        let deadline = (std::time::SystemTime::now() + Duration::from_secs(60))
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_millis();
                        return respond(
                            StatusCode::OK,
                            event,
                            &[
                                ("lambda-runtime-aws-request-id", id),
                                ("lambda-runtime-deadline-ms", deadline.to_string()),
                                (
                                    "lambda-runtime-invoked-function-arn",
                                    "arn:aws:lambda:us-east-1:123456789012:function:skyhook-test".into(),
                                ),
                                ("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000".into()),
                                ("content-type", "application/json".into()),
                            ],
                        );
                    }
                    notified.await;
                }
            }
            (Method::POST, ["invocation", id, kind @ ("response" | "error")]) => {
                let outcome = if *kind == "response" { Outcome::Response(json()) } else { Outcome::Error(json()) };
                if let Some(sender) = self.state.lock().unwrap().waiting.remove(*id) {
                    let _ = sender.send(outcome);
                }
                respond(StatusCode::ACCEPTED, Bytes::from_static(b"{\"status\":\"OK\"}"), &[])
            }
            (Method::POST, ["init", "error"]) => {
                self.state.lock().unwrap().init_error = Some(json());
                respond(StatusCode::ACCEPTED, Bytes::from_static(b"{\"status\":\"OK\"}"), &[])
            }
            _ => respond(StatusCode::NOT_FOUND, Bytes::new(), &[]),
        }
    }

    /// Hands `event` to the function and waits for its answer.
    pub async fn invoke(&self, event: &serde_json::Value) -> Outcome {
        let id = format!("req-{}", ulid::Ulid::new());
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.state.lock().unwrap();
            state.waiting.insert(id.clone(), tx);
            state.pending.push_back((id, Bytes::from(event.to_string())));
        }
        self.wake.notify_waiters();
        tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("function answered within 60 s")
            .expect("emulator kept the call")
    }

    pub fn first_poll(&self) -> Option<Instant> {
        self.state.lock().unwrap().first_poll
    }

    pub fn init_error(&self) -> Option<serde_json::Value> {
        self.state.lock().unwrap().init_error.clone()
    }
}

/// The path of a workspace binary built by `cargo build` (the test command
/// builds the whole workspace before testing).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap().to_path_buf();
    let path = profile_dir.join(name);
    assert!(path.exists(), "{} not built; run `cargo build --workspace --all-features` first", path.display());
    path
}

/// A function process attached to its own emulator.
pub struct Function {
    pub emulator: Emulator,
    pub child: Child,
    pub started: Instant,
}

impl Function {
    /// Starts a workspace binary of this build's profile, its stderr shown.
    pub async fn start<K: AsRef<OsStr>, V: AsRef<OsStr>>(binary_name: &str, env: &[(K, V)]) -> Function {
        Self::spawn(binary(binary_name), binary_name, env, Stdio::inherit()).await
    }

    /// Like `start`, with stderr captured (read it with `wait_output`).
    pub async fn start_capturing<K: AsRef<OsStr>, V: AsRef<OsStr>>(binary_name: &str, env: &[(K, V)]) -> Function {
        Self::spawn(binary(binary_name), binary_name, env, Stdio::piped()).await
    }

    /// Starts `bin_dir/binary_name` (the benchmarks' release build), its
    /// stderr dropped.
    pub async fn start_from<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        bin_dir: &Path,
        binary_name: &str,
        env: &[(K, V)],
    ) -> Function {
        Self::spawn(bin_dir.join(binary_name), binary_name, env, Stdio::null()).await
    }

    /// Waits for the process to exit; its status and captured stderr.
    pub fn wait_output(mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return (status, stderr);
            }
            assert!(Instant::now() < deadline, "function did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn spawn<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        path: PathBuf,
        binary_name: &str,
        env: &[(K, V)],
        stderr: Stdio,
    ) -> Function {
        let emulator = Emulator::start().await;
        let mut command = Command::new(path);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", emulator.address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", binary_name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr);
        for (key, value) in env {
            command.env(key, value);
        }
        let started = Instant::now();
        let child = command.spawn().expect("function binary starts");
        Function { emulator, child, started }
    }

    /// Time from process start to its first `next` poll (the init phase).
    pub async fn init_duration(&self) -> Duration {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(at) = self.emulator.first_poll() {
                return at - self.started;
            }
            assert!(Instant::now() < deadline, "function never polled for an invocation");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub async fn invoke(&self, event: &serde_json::Value) -> Outcome {
        self.emulator.invoke(event).await
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
