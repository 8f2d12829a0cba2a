//! The CLI, driven as a user would: the real `skyhook` binary against a real
//! `skyhook serve` (throwaway data dir, free port) and `skyhook listen` as the
//! receiving endpoint.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_skyhook");
/// The Standard Webhooks specification\'s published example secret (a public test vector).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skyhook-cli-{name}-{}-{}", std::process::id(), free_port()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start listening on {port}");
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `skyhook serve` with a generated admin token kept in its data dir.
struct Server {
    _process: Process,
    base: String,
    data_dir: PathBuf,
}

impl Server {
    fn start(name: &str) -> Server {
        let data_dir = temp_dir(name);
        let port = free_port();
        let child = Command::new(BIN)
            .arg("serve")
            .env("SKYHOOK_LISTEN", format!("127.0.0.1:{port}"))
            .env("SKYHOOK_DATA_DIR", &data_dir)
            .env_remove("SKYHOOK_ADMIN_TOKEN")
            .env("SKYHOOK_ALLOW_LOOPBACK", "1")
            .env("SKYHOOK_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("skyhook serve starts");
        let process = Process(child);
        wait_for_port(port, "skyhook serve");
        Server { _process: process, base: format!("http://127.0.0.1:{port}"), data_dir }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// `skyhook listen`: answers 204 to every webhook.
fn receiver() -> (Process, String) {
    let port = free_port();
    let child = Command::new(BIN)
        .args(["listen", "--listen", &format!("127.0.0.1:{port}"), "--secret", SECRET])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("skyhook listen starts");
    let process = Process(child);
    wait_for_port(port, "skyhook listen");
    (process, format!("http://127.0.0.1:{port}/hooks"))
}

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    /// The `--json` output, parsed.
    #[track_caller]
    fn json(self) -> Value {
        let run = self.ok();
        serde_json::from_str(run.stdout.trim())
            .unwrap_or_else(|e| panic!("--json output is not JSON ({e}): {}", run.stdout))
    }
}

/// Runs the CLI with only the environment given here (no SKYHOOK_* leaking in).
fn run(env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = Command::new(BIN);
    command.args(args).stdin(Stdio::null());
    for name in ["SKYHOOK_URL", "SKYHOOK_API_KEY", "SKYHOOK_ADMIN_TOKEN", "SKYHOOK_DATA_DIR", "SKYHOOK_ENDPOINT_SECRET"]
    {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("the CLI runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

struct Cli<'a> {
    server: &'a Server,
    api_key: Option<String>,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Run {
        let data_dir = self.server.data_dir.to_str().unwrap();
        let mut env = vec![("SKYHOOK_URL", self.server.base.as_str()), ("SKYHOOK_DATA_DIR", data_dir)];
        if let Some(key) = &self.api_key {
            env.push(("SKYHOOK_API_KEY", key.as_str()));
        }
        run(&env, args)
    }
}

fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_else(|| panic!("no string {field} in {value}"))
}

/// An application and an all-scopes key, made through the CLI; the admin
/// token comes from the server's data dir.
fn tenant(server: &Server) -> (String, String) {
    let admin = Cli { server, api_key: None };
    let app = admin.run(&["applications", "create", "Acme", "--json"]).json();
    let app_id = str_of(&app, "id").to_string();
    assert!(app_id.starts_with("app_"));
    let key = admin.run(&["keys", "create", &app_id, "cli-test", "--json"]).json();
    assert!(str_of(&key, "key").starts_with("sk_"));
    (app_id, str_of(&key, "key").to_string())
}

#[track_caller]
fn wait_for(what: &str, mut check: impl FnMut() -> Option<Value>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn given_a_running_skyhook_when_the_cli_drives_it_then_webhooks_are_delivered_listed_shown_and_retried() {
    let server = Server::start("story");
    let (_receiver, receiver_url) = receiver();
    let (app_id, key) = tenant(&server);
    let admin = Cli { server: &server, api_key: None };
    let cli = Cli { server: &server, api_key: Some(key) };

    // Applications and keys: human tables and --json.
    let apps = admin.run(&["applications", "list", "--json"]).json();
    assert!(apps["data"].as_array().unwrap().iter().any(|a| a["id"] == app_id.as_str()));
    let table = admin.run(&["applications", "list"]).ok().stdout;
    assert!(table.starts_with("ID") && table.contains(&app_id) && table.contains("Acme"), "{table}");
    let shown = admin.run(&["applications", "get", &app_id]).ok().stdout;
    assert!(shown.contains("retentionDays") && shown.contains("31"), "{shown}");
    let keys = admin.run(&["keys", "list", &app_id]).ok().stdout;
    assert!(keys.contains("cli-test") && keys.contains("events:write"), "{keys}");

    // Event type, endpoints (one reachable, one that always fails).
    let event_type =
        cli.run(&["event-types", "create", "invoice.paid", "--description", "An invoice was paid", "--json"]).json();
    assert_eq!(event_type["name"], "invoice.paid");
    let types = cli.run(&["event-types", "list"]).ok().stdout;
    assert!(types.contains("invoice.paid") && types.contains("An invoice was paid"), "{types}");
    assert_eq!(cli.run(&["event-types", "get", "invoice.paid", "--json"]).json()["description"], "An invoice was paid");

    let endpoint = cli
        .run(&[
            "endpoints",
            "create",
            &receiver_url,
            "--event-type",
            "invoice.paid",
            "--secret",
            SECRET,
            "--header",
            "X-Env=test",
            "--metadata",
            "team=billing",
            "--json",
        ])
        .json();
    let endpoint_id = str_of(&endpoint, "id").to_string();
    assert_eq!(endpoint["secret"], SECRET);
    assert_eq!(endpoint["headers"]["X-Env"], "test");
    let dead_url = format!("http://127.0.0.1:{}/gone", free_port());
    let dead = cli.run(&["endpoints", "create", &dead_url, "--max-attempts", "1", "--event-type", "invoice.paid"]).ok();
    assert!(dead.stdout.contains("secret") && dead.stderr.contains("not shown again"), "{dead:?}");
    let listed = cli.run(&["endpoints", "list", "--json"]).json();
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    let updated = cli.run(&["endpoints", "update", &endpoint_id, "--description", "billing hooks", "--json"]).json();
    assert_eq!(updated["description"], "billing hooks");
    assert_eq!(updated["eventTypes"], serde_json::json!(["invoice.paid"]));
    assert!(cli.run(&["endpoints", "get", &endpoint_id]).ok().stdout.contains("billing hooks"));

    // Publish, with an idempotency key: the repeat is the same event.
    let sent = cli
        .run(&[
            "send",
            "invoice.paid",
            "--data",
            r#"{"invoiceId":"inv_1","amount":4200}"#,
            "--idempotency-key",
            "inv-1",
            "--json",
        ])
        .json();
    let event_id = str_of(&sent, "id").to_string();
    assert!(event_id.starts_with("evt_"));
    let again = cli.run(&[
        "send",
        "invoice.paid",
        "--data",
        r#"{"invoiceId":"inv_1","amount":4200}"#,
        "--idempotency-key",
        "inv-1",
    ]);
    let again = again.ok().stdout;
    assert!(again.contains(&event_id) && again.contains("already published"), "{again}");
    let payload_file = server.data_dir.join("payload.json");
    std::fs::write(&payload_file, r#"{"invoiceId":"inv_2"}"#).unwrap();
    let human = cli.run(&["send", "invoice.paid", "--data-file", payload_file.to_str().unwrap()]).ok().stdout;
    assert!(human.starts_with("Accepted event evt_"), "{human}");

    // Deliveries: the reachable endpoint's succeeds, the dead one's fails.
    let delivered = wait_for("the deliveries of the first event to finish", || {
        let page = cli.run(&["deliveries", "list", "--event-id", &event_id, "--json"]).json();
        let rows = page["data"].as_array().unwrap().clone();
        (rows.len() == 2 && rows.iter().all(|d| d["status"] == "succeeded" || d["status"] == "failed"))
            .then_some(Value::Array(rows))
    });
    let ok = delivered.as_array().unwrap().iter().find(|d| d["endpointId"] == endpoint_id.as_str()).unwrap();
    assert_eq!(ok["status"], "succeeded", "{delivered}");
    let ok_id = str_of(ok, "id").to_string();
    let table = cli.run(&["deliveries", "list", "--event-id", &event_id]).ok().stdout;
    assert!(table.contains(&ok_id) && table.contains("succeeded") && table.contains("failed"), "{table}");
    let filtered =
        cli.run(&["deliveries", "list", "--status", "succeeded", "--endpoint-id", &endpoint_id, "--json"]).json();
    assert!(filtered["data"].as_array().unwrap().iter().all(|d| d["status"] == "succeeded"));

    let shown = cli.run(&["deliveries", "show", &ok_id, "--json"]).json();
    assert_eq!(shown["attempts"][0]["responseStatus"], 204);
    let shown = cli.run(&["deliveries", "show", &ok_id]).ok().stdout;
    assert!(shown.contains("Attempts (1)") && shown.contains("204"), "{shown}");

    let retried = cli.run(&["deliveries", "retry", &ok_id, "--json"]).json();
    assert_eq!(retried["retryOf"], ok_id.as_str());
    let twice = cli.run(&["deliveries", "retry", &ok_id]);
    assert_ne!(twice.code, 0, "{twice:?}");
    assert!(twice.stderr.contains("409") && twice.stderr.contains("already retried"), "{}", twice.stderr);

    // Bulk retry of everything failed, with its count first.
    wait_for("every delivery to the dead endpoint to fail", || {
        let page = cli.run(&["deliveries", "list", "--status", "failed", "--json"]).json();
        (page["data"].as_array().unwrap().len() >= 2).then_some(page)
    });
    let dry = cli.run(&["deliveries", "retry-failed", "--dry-run"]).ok().stdout;
    assert!(dry.contains("2 failed deliveries would be retried"), "{dry}");
    let bulk = cli.run(&["deliveries", "retry-failed", "--json"]).json();
    assert_eq!(bulk["retried"], 2, "{bulk}");
    assert_eq!(bulk["deliveryIds"].as_array().unwrap().len(), 2);

    // Endpoint extras.
    let test_event = cli.run(&["endpoints", "test", &endpoint_id, "--json"]).json();
    assert_eq!(test_event["eventType"], "webhook.test");
    let rotated = cli.run(&["endpoints", "rotate-secret", &endpoint_id]).ok().stdout;
    assert!(rotated.contains("whsec_"), "{rotated}");
    assert!(cli.run(&["endpoints", "stats", &endpoint_id]).ok().stdout.contains("deliveries"));

    // Deletes.
    assert!(cli.run(&["endpoints", "delete", &endpoint_id]).ok().stdout.contains("Deleted endpoint"));
    assert_eq!(cli.run(&["endpoints", "get", &endpoint_id]).code, 1);
    let key_id = str_of(&admin.run(&["keys", "list", &app_id, "--json"]).json()["data"][0], "id").to_string();
    admin.run(&["keys", "revoke", &app_id, &key_id]).ok();
    let revoked = cli.run(&["event-types", "list"]);
    assert_ne!(revoked.code, 0);
    assert!(revoked.stderr.contains("401"), "{}", revoked.stderr);
    admin.run(&["applications", "delete", &app_id]).ok();
    assert_ne!(admin.run(&["applications", "get", &app_id]).code, 0);
}

#[test]
fn given_bad_input_or_credentials_then_the_cli_exits_non_zero_and_names_the_problem() {
    let server = Server::start("errors");
    let (_app_id, key) = tenant(&server);
    let cli = Cli { server: &server, api_key: Some(key) };

    let bad = cli.run(&["endpoints", "create", "ftp://example.com/hooks"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.contains("400") && bad.stderr.contains("\n  url: "), "{}", bad.stderr);
    assert!(bad.stdout.is_empty());

    let bad = cli.run(&["event-types", "create", "no spaces allowed", "--json"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("  name: "), "{}", bad.stderr);

    let bad = cli.run(&["send", "never.created", "--data", "{}"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("eventType"), "{}", bad.stderr);

    let bad = cli.run(&["send", "x", "--data", "{not json"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("--data is not valid JSON"), "{}", bad.stderr);

    let usage = cli.run(&["send", "x"]);
    assert_eq!(usage.code, 2, "clap usage error: {usage:?}");

    let no_key = Cli { server: &server, api_key: None }.run(&["endpoints", "list"]);
    assert_eq!(no_key.code, 1);
    assert!(no_key.stderr.contains("no API key"), "{}", no_key.stderr);

    let wrong_token = Cli { server: &server, api_key: None }.run(&["applications", "list", "--admin-token", "nope"]);
    assert_eq!(wrong_token.code, 1);
    assert!(wrong_token.stderr.contains("401"), "{}", wrong_token.stderr);

    let nowhere = run(&[("SKYHOOK_API_KEY", "sk_x")], &["--help"]).ok();
    assert!(nowhere.stdout.contains("deliveries") && nowhere.stdout.contains("verify"));
    let unreachable = run(
        &[("SKYHOOK_API_KEY", "sk_x")],
        &["endpoints", "list", "--url", &format!("http://127.0.0.1:{}", free_port())],
    );
    assert_eq!(unreachable.code, 1);
    assert!(unreachable.stderr.contains("cannot reach Skyhook"), "{}", unreachable.stderr);
}

fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = skyhook::signing::decode_secret(secret).unwrap();
    skyhook::signing::signature_header(&[key], id, timestamp, body)
}

fn verify(body_file: &Path, id: &str, timestamp: i64, signature: &str) -> Run {
    run(
        &[("SKYHOOK_ENDPOINT_SECRET", SECRET)],
        &[
            "verify",
            "--id",
            id,
            "--timestamp",
            &timestamp.to_string(),
            "--signature",
            signature,
            "--body-file",
            body_file.to_str().unwrap(),
        ],
    )
}

#[test]
fn given_a_signed_webhook_then_verify_accepts_it_and_rejects_tampering() {
    let dir = temp_dir("verify");
    let body = br#"{"type":"invoice.paid","timestamp":"2026-01-15T12:00:00Z","data":{"amount":4200}}"#;
    let body_file = dir.join("body.json");
    std::fs::write(&body_file, body).unwrap();
    let now = chrono::Utc::now().timestamp();
    let signature = sign(SECRET, "evt_1", now, body);

    let valid = verify(&body_file, "evt_1", now, &signature);
    assert_eq!(valid.code, 0, "{valid:?}");
    assert!(valid.stdout.contains("signature valid"));

    let tampered_file = dir.join("tampered.json");
    std::fs::write(&tampered_file, String::from_utf8_lossy(body).replace("4200", "4201")).unwrap();
    let tampered = verify(&tampered_file, "evt_1", now, &signature);
    assert_eq!(tampered.code, 1, "{tampered:?}");
    assert!(tampered.stderr.contains("INVALID"), "{}", tampered.stderr);

    assert_eq!(verify(&body_file, "evt_2", now, &signature).code, 1, "another webhook-id");
    assert_eq!(verify(&body_file, "evt_1", now - 3600, &sign(SECRET, "evt_1", now - 3600, body)).code, 1, "stale");

    // During a rotation the header carries two signatures; the old secret still verifies.
    let other = skyhook::signing::generate_secret();
    let keys = [skyhook::signing::decode_secret(&other).unwrap(), skyhook::signing::decode_secret(SECRET).unwrap()];
    let rotated = skyhook::signing::signature_header(&keys, "evt_1", now, body);
    assert_eq!(verify(&body_file, "evt_1", now, &rotated).code, 0);

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn given_an_ed25519_signed_webhook_then_verify_with_the_public_key_checks_v1a() {
    // GIVEN a webhook signed with v1 and v1a, and the endpoint's whpk_ public key
    let dir = temp_dir("verify-v1a");
    let body = br#"{"type":"invoice.paid","timestamp":"2026-01-15T12:00:00Z","data":{"amount":4200}}"#;
    let body_file = dir.join("body.json");
    std::fs::write(&body_file, body).unwrap();
    let now = chrono::Utc::now().timestamp();
    let private = skyhook::signing::generate_ed25519_key();
    let public = skyhook::signing::ed25519_public_key(&private).unwrap();
    let ed = skyhook::signing::decode_ed25519_key(&private).unwrap();
    let hmac = skyhook::signing::decode_secret(SECRET).unwrap();
    let header = skyhook::signing::signature_header_with(&[hmac], &[ed], "evt_1", now, body);
    let with_key = |key: &str, header: &str, file: &Path| {
        let timestamp = now.to_string();
        let args = ["verify", "--id", "evt_1", "--timestamp", &timestamp, "--signature", header, "--body-file"];
        let mut args: Vec<&str> = args.to_vec();
        args.push(file.to_str().unwrap());
        run(&[("SKYHOOK_ENDPOINT_SECRET", key)], &args)
    };

    // WHEN verified with the public key THEN the v1a signature is valid
    let valid = with_key(&public, &header, &body_file);
    assert_eq!(valid.code, 0, "{valid:?}");
    assert!(valid.stdout.contains("signature valid"));
    // AND a header with only the v1 signature does not pass the public-key check
    let v1_only = header.split(' ').next().unwrap().to_string();
    assert_eq!(with_key(&public, &v1_only, &body_file).code, 1);
    // AND a tampered body fails
    let tampered = dir.join("tampered.json");
    std::fs::write(&tampered, String::from_utf8_lossy(body).replace("4200", "4201")).unwrap();
    assert_eq!(with_key(&public, &header, &tampered).code, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
