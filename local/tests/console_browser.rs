//! The web console in a real headless Chromium: starts `skyhook serve` and a
//! local receiver that fails its first request, bootstraps an application,
//! an API key and an event type through the API, then runs
//! `scripts/console-test.py` (Python + Selenium) against it. The script signs
//! in, creates an endpoint, sends a test event, publishes events, reads the
//! delivery log and a delivery's attempts, retries the failed delivery,
//! opens the endpoint's chart and a portal link, and writes a screenshot of
//! every step to `docs/screenshots/`.
//!
//! Installs what it needs when missing: Debian's `chromium` and
//! `chromium-driver` (apt-get, as root) and `selenium` into `.venv` (the pin
//! in `scripts/requirements-test.txt`). Without a browser the test fails
//! with the reason; `SKYHOOK_SKIP_BROWSER=1` skips it on purpose.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
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

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ADMIN_TOKEN: &str = "console-test-admin-token-0123456789";
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("local/ is in the workspace").to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ------------------------------------------------------------------ installing the tools

fn run_quiet(program: &str, args: &[&str], dir: &Path) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        Err(format!("`{program} {}` failed ({}):\n{}", args.join(" "), output.status, tail.join("\n")))
    }
}

/// Debian's Chromium and its driver, installed with apt-get when missing.
fn ensure_chromium(root: &Path) -> Result<(), String> {
    let present = || Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if present() {
        return Ok(());
    }
    eprintln!("console_browser: installing chromium and chromium-driver with apt-get");
    run_quiet("apt-get", &["update", "-q"], root)?;
    run_quiet("apt-get", &["install", "-y", "-q", "chromium", "chromium-driver"], root)?;
    if present() { Ok(()) } else { Err(format!("apt-get finished but {CHROMIUM} or {CHROMEDRIVER} is still missing")) }
}

/// `.venv/bin/python` with Selenium (the version pinned in scripts/requirements-test.txt).
fn ensure_selenium(root: &Path) -> Result<PathBuf, String> {
    let python = root.join(".venv/bin/python");
    let usable = |python: &Path| {
        Command::new(python).args(["-c", "import sys"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    if !usable(&python) {
        eprintln!("console_browser: creating .venv");
        run_quiet("python3", &["-m", "venv", ".venv"], root)?;
    }
    let has_selenium = || {
        Command::new(&python).args(["-c", "import selenium"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    if !has_selenium() {
        let requirements = std::fs::read_to_string(root.join("scripts/requirements-test.txt")).unwrap_or_default();
        let pin = requirements
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with("selenium"))
            .unwrap_or("selenium")
            .to_string();
        eprintln!("console_browser: installing {pin} into .venv");
        let pip = root.join(".venv/bin/pip");
        run_quiet(pip.to_str().unwrap(), &["install", "--quiet", "--disable-pip-version-check", &pin], root)?;
        if !has_selenium() {
            return Err("pip finished but `import selenium` still fails".into());
        }
    }
    Ok(python)
}

// ------------------------------------------------------------------ skyhook serve

struct Server {
    child: Child,
    base: String,
    data_dir: PathBuf,
}

impl Server {
    fn start() -> Server {
        let port = free_port();
        let data_dir = std::env::temp_dir().join(format!("skyhook-console-test-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_skyhook"))
            .arg("serve")
            .env("SKYHOOK_LISTEN", format!("127.0.0.1:{port}"))
            .env("SKYHOOK_DATA_DIR", &data_dir)
            .env("SKYHOOK_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SKYHOOK_ALLOW_LOOPBACK", "1")
            .env("SKYHOOK_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the skyhook binary starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "skyhook serve did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, base: format!("http://127.0.0.1:{port}"), data_dir }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

async fn call(base: &str, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}")).bearer_auth(token);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let response = request.send().await.expect("API reachable");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn post(base: &str, token: &str, path: &str, body: Value) -> Value {
    let (status, value) = call(base, token, reqwest::Method::POST, path, Some(body)).await;
    assert!((200..300).contains(&status), "POST {path} → {status} {value}");
    value
}

// ------------------------------------------------------------------ the receiver

/// Answers from a script of statuses (then 200) with `{"ok":true}`, recording each status.
#[derive(Clone)]
struct Receiver {
    url: String,
    answered: Arc<Mutex<Vec<u16>>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let answered: Arc<Mutex<Vec<u16>>> = Arc::default();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<u16>>()));
        let record = Arc::clone(&answered);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let script = Arc::clone(&script);
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let script = Arc::clone(&script);
                        let record = Arc::clone(&record);
                        async move {
                            let _ = request.into_body().collect().await;
                            let status = script.lock().unwrap().pop_front().unwrap_or(200);
                            record.lock().unwrap().push(status);
                            let mut response = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
                            *response.status_mut() = StatusCode::from_u16(status).unwrap();
                            response.headers_mut().insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Receiver { url, answered }
    }
}

// ------------------------------------------------------------------ the test

const SCREENSHOTS: &[&str] = &[
    "sign-in",
    "sign-in-refused",
    "endpoints-empty",
    "endpoint-form",
    "endpoint-created",
    "delivery-log",
    "delivery-log-filtered",
    "delivery-attempts",
    "delivery-retried",
    "event-log",
    "event-detail",
    "endpoint-chart",
    "portal-link",
    "portal-endpoints",
    "portal-endpoint",
    "portal-edit",
    "portal-dark",
    "portal-left",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_fresh_server_then_the_console_works_in_a_real_browser() {
    if std::env::var("SKYHOOK_SKIP_BROWSER").is_ok_and(|v| v == "1") {
        eprintln!("console_browser: skipped (SKYHOOK_SKIP_BROWSER=1)");
        return;
    }
    let root = workspace_root();
    if let Err(reason) = ensure_chromium(&root) {
        panic!(
            "the console browser test needs Chromium and chromedriver ({CHROMIUM}, {CHROMEDRIVER}) and could not \
             install them: {reason}\nInstall them with `apt-get install -y chromium chromium-driver`, or set \
             SKYHOOK_SKIP_BROWSER=1 to skip this test on purpose."
        );
    }
    let python = ensure_selenium(&root).unwrap_or_else(|reason| {
        panic!("the console browser test needs Selenium in .venv and could not install it: {reason}")
    });

    let server = Server::start();
    let receiver = Receiver::start(&[500]).await;
    let app = post(&server.base, ADMIN_TOKEN, "/v1/applications", json!({ "name": "Acme" })).await;
    let app_id = app["id"].as_str().unwrap();
    let key =
        post(&server.base, ADMIN_TOKEN, &format!("/v1/applications/{app_id}/api-keys"), json!({ "name": "console" }))
            .await;
    let key = key["key"].as_str().unwrap().to_string();
    post(
        &server.base,
        &key,
        "/v1/event-types",
        json!({ "name": "order.created", "description": "An order was placed" }),
    )
    .await;

    let out = root.join("docs/screenshots");
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(&out).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".png") && name.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            let _ = std::fs::remove_file(entry.path());
        }
    }

    let script = root.join("scripts/console-test.py");
    let (base, receiver_url, out_dir) = (server.base.clone(), receiver.url.clone(), out.clone());
    let status = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["--base", &base, "--key", &key, "--receiver", &receiver_url, "--out"])
            .arg(&out_dir)
            .current_dir(workspace_root())
            .env("SE_OFFLINE", "true")
            .env("SE_AVOID_STATS", "true")
            .stdin(Stdio::null())
            .spawn()
            .expect("python runs");
        let deadline = Instant::now() + SCRIPT_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("scripts/console-test.py did not finish within {SCRIPT_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "scripts/console-test.py failed ({status}); see its output above and docs/screenshots/");

    // What the browser did reached the receiver: the failed test event, three published events, the retry.
    let answered = receiver.answered.lock().unwrap().clone();
    assert_eq!(answered.first(), Some(&500), "{answered:?}");
    assert_eq!(answered.iter().filter(|s| **s == 200).count(), 4, "{answered:?}");

    for (i, name) in SCREENSHOTS.iter().enumerate() {
        let path = out.join(format!("{:02}-{name}.png", i + 1));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000, "{} is not a real screenshot", path.display());
    }
    drop(server);
}
