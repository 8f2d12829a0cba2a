//! Receivers verify Skyhook's signatures with the official Standard Webhooks
//! libraries: requests signed by `skyhook::signing` (one key, and two keys
//! during a secret rotation) are checked by the PyPI `standardwebhooks`
//! package (in `.venv`, from scripts/requirements-test.txt) and by the npm
//! `standardwebhooks` package (installed into `.tmp/node` when missing).
//! Each must accept the valid signature, reject a tampered body, and accept
//! a rotation header with either secret.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde_json::{Value, json};
use skyhook::signing::{decode_secret, generate_secret, signature_header, verify_signature};

/// The npm package, pinned.
const NPM_PACKAGE: &str = "standardwebhooks@1.1.1";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

/// One signed request and what a verifier must say about it.
struct Case {
    name: &'static str,
    secret: String,
    id: String,
    timestamp: i64,
    body: String,
    signature: String,
    valid: bool,
}

/// Requests as Skyhook's dispatcher signs them: the Standard Webhooks
/// envelope, the event id as `webhook-id`, the current unix time.
fn cases() -> Vec<Case> {
    let old = generate_secret();
    let new = generate_secret();
    let stranger = generate_secret();
    let now = chrono::Utc::now().timestamp();
    let id = "evt_01JD3X5Q3V1R7N9GZ8W6Y2K4TB".to_string();
    let body = json!({
        "type": "invoice.paid",
        "timestamp": "2026-01-15T12:00:00Z",
        "data": { "invoiceId": "inv_1001", "amount": 4200, "currency": "EUR", "note": "café ☕ — «ok»" },
    })
    .to_string();
    let tampered = body.replace("4200", "4201");
    let one = signature_header(&[decode_secret(&old).unwrap()], &id, now, body.as_bytes());
    // Rotation: the new secret signs first, the old one keeps signing beside it.
    let two =
        signature_header(&[decode_secret(&new).unwrap(), decode_secret(&old).unwrap()], &id, now, body.as_bytes());
    assert_eq!(two.split(' ').count(), 2);
    let case = |name, secret: &str, body: &str, signature: &str, valid| Case {
        name,
        secret: secret.to_string(),
        id: id.clone(),
        timestamp: now,
        body: body.to_string(),
        signature: signature.to_string(),
        valid,
    };
    vec![
        case("one key: valid", &old, &body, &one, true),
        case("one key: tampered body", &old, &tampered, &one, false),
        case("one key: wrong secret", &stranger, &body, &one, false),
        case("rotation: old secret", &old, &body, &two, true),
        case("rotation: new secret", &new, &body, &two, true),
        case("rotation: tampered body, old secret", &old, &tampered, &two, false),
        case("rotation: tampered body, new secret", &new, &tampered, &two, false),
        case("rotation: unrelated secret", &stranger, &body, &two, false),
    ]
}

fn cases_json(cases: &[Case]) -> String {
    Value::Array(
        cases
            .iter()
            .map(|c| {
                json!({ "secret": c.secret, "id": c.id, "timestamp": c.timestamp.to_string(),
                        "body": c.body, "signature": c.signature })
            })
            .collect(),
    )
    .to_string()
}

/// Runs a verifier script that reads the cases on stdin and prints a JSON
/// array of `"valid"` / `"invalid: …"`, then checks every verdict.
fn check_verdicts(what: &str, mut command: Command, cases: &[Case]) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    child.stdin.take().unwrap().write_all(cases_json(cases).as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    let verdicts: Vec<String> = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{what} printed no verdicts ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(verdicts.len(), cases.len());
    for (case, verdict) in cases.iter().zip(&verdicts) {
        assert_eq!(verdict == "valid", case.valid, "{what}, {}: {verdict}", case.name);
    }
}

const PYTHON_VERIFIER: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

verdicts = []
for case in json.load(sys.stdin):
    headers = {
        "webhook-id": case["id"],
        "webhook-timestamp": case["timestamp"],
        "webhook-signature": case["signature"],
    }
    try:
        Webhook(case["secret"]).verify(case["body"].encode("utf-8"), headers)
        verdicts.append("valid")
    except WebhookVerificationError as err:
        verdicts.append("invalid: %s" % err)
print(json.dumps(verdicts))
"#;

#[test]
fn given_skyhook_signatures_then_the_python_standardwebhooks_library_verifies_them() {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh (or python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-test.txt)",
        python.display()
    );
    let installed = Command::new(&python).args(["-c", "import standardwebhooks"]).status().is_ok_and(|s| s.success());
    assert!(
        installed,
        "the PyPI package standardwebhooks is not in .venv: .venv/bin/pip install -r scripts/requirements-test.txt"
    );
    let mut command = Command::new(&python);
    command.args(["-c", PYTHON_VERIFIER]);
    check_verdicts("Python standardwebhooks", command, &cases());
}

const NODE_VERIFIER: &str = r#"
const { Webhook } = require("standardwebhooks");
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
const verdicts = cases.map((c) => {
  const headers = {
    "webhook-id": c.id,
    "webhook-timestamp": c.timestamp,
    "webhook-signature": c.signature,
  };
  try {
    new Webhook(c.secret).verify(c.body, headers);
    return "valid";
  } catch (err) {
    return "invalid: " + err.message;
  }
});
console.log(JSON.stringify(verdicts));
"#;

/// `.tmp/node/node_modules`, with the npm package installed on first use.
fn node_modules() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = repo_root().join(".tmp/node");
    let modules = prefix.join("node_modules");
    if !modules.join("standardwebhooks/package.json").exists() {
        std::fs::create_dir_all(&prefix).unwrap();
        let output = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(NPM_PACKAGE)
            .output()
            .expect("npm is installed (Node.js is needed for this test)");
        assert!(
            output.status.success(),
            "npm install {NPM_PACKAGE} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    modules
}

#[test]
fn given_skyhook_signatures_then_the_node_standardwebhooks_library_verifies_them() {
    let modules = node_modules();
    let mut command = Command::new("node");
    command.args(["-e", NODE_VERIFIER]).env("NODE_PATH", &modules);
    check_verdicts("Node standardwebhooks", command, &cases());
}

#[test]
fn given_the_same_requests_then_skyhooks_own_verifier_agrees() {
    for case in cases() {
        let result = verify_signature(
            &case.secret,
            &case.id,
            case.timestamp,
            case.body.as_bytes(),
            &case.signature,
            chrono::Utc::now().timestamp(),
            skyhook::signing::DEFAULT_TOLERANCE_SECS,
        );
        assert_eq!(result.is_ok(), case.valid, "{}: {result:?}", case.name);
    }
}
