//! A moto server for tests of the AWS adapters. The test command starts one
//! and exports `SKYHOOK_TEST_MOTO_URL`; run alone, a test binary starts its
//! own (`moto_server` from `.venv/bin` or PATH) on a free port.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Moto {
    pub endpoint: String,
    _child: Option<ChildGuard>,
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn healthy(endpoint: &str) -> bool {
    let address = endpoint.trim_start_matches("http://");
    let Ok(mut stream) = std::net::TcpStream::connect(address) else { return false };
    use std::io::{Read, Write};
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(format!("GET /moto-api/ HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200")
}

fn moto_binary() -> String {
    let workspace_venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/moto_server");
    if std::path::Path::new(workspace_venv).exists() { workspace_venv.to_string() } else { "moto_server".to_string() }
}

fn start() -> Moto {
    if let Ok(url) = std::env::var("SKYHOOK_TEST_MOTO_URL") {
        assert!(healthy(&url), "SKYHOOK_TEST_MOTO_URL={url} does not answer GET /moto-api/");
        return Moto { endpoint: url, _child: None };
    }
    spawn(Command::new(moto_binary()))
}

fn spawn(mut command: Command) -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = command
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server must be installed (pip install 'moto[server]'; the test command does this)");
    let guard = ChildGuard(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !healthy(&endpoint) {
        assert!(Instant::now() < deadline, "moto_server did not become healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto { endpoint, _child: Some(guard) }
}

/// One moto per test binary (or the shared one of the test command).
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(start)
}

/// A moto of this test binary's own whose DynamoDB requests are handled one
/// at a time (`scripts/moto_server.py`), so concurrent transactions are
/// isolated as on AWS. Plain moto is not: a failed `TransactWriteItems`
/// restores a copy of the table and wipes a transaction committed meanwhile.
/// For the tests whose subject is concurrent transactions; needs moto in
/// `.venv` (the test command installs it), else it is the shared server.
pub fn isolated() -> &'static Moto {
    static ISOLATED: OnceLock<Moto> = OnceLock::new();
    let venv_moto = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/moto_server");
    if !std::path::Path::new(venv_moto).exists() {
        return moto();
    }
    ISOLATED.get_or_init(|| {
        let mut command = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"));
        command.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/moto_server.py"));
        spawn(command)
    })
}

/// An SDK config pointed at moto with dummy credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    sdk_config_at(&moto().endpoint).await
}

/// An SDK config pointed at the moto at `endpoint`.
pub async fn sdk_config_at(endpoint: &str) -> aws_config::SdkConfig {
    use aws_config::BehaviorVersion;
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

/// A name no other test uses (tables, queues, secrets share one moto).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}
