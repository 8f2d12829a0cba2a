//! The API from the command line: `skyhook applications`, `keys`,
//! `event-types`, `endpoints`, `send`, `deliveries` and `verify`.
//!
//! Every command is one or a few HTTP calls to a running Skyhook
//! (`--url` / `SKYHOOK_URL`). Output is a compact table, or the API's JSON
//! with `--json`; an API error prints its problem detail and every field
//! error on stderr and exits non-zero.

mod client;
mod output;

use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};
use skyhook::adapters::local_secrets::FileSecrets;
use skyhook::ports::Secrets;

use client::{Client, Credential, Reply};
use output::{Column, col, fields, table, text};

const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Connection flags of the application commands (API key).
#[derive(Args, Clone, Debug)]
pub struct ApiArgs {
    /// Skyhook's base URL: `skyhook serve`, or the API Gateway URL in AWS.
    #[arg(long, env = "SKYHOOK_URL", default_value = DEFAULT_URL, global = true, value_name = "URL")]
    pub url: String,
    /// An application's API key (`sk_…`), from `skyhook keys create`.
    #[arg(long, env = "SKYHOOK_API_KEY", hide_env_values = true, global = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Connection flags of the admin commands (admin token).
#[derive(Args, Clone, Debug)]
pub struct AdminArgs {
    /// Skyhook's base URL: `skyhook serve`, or the API Gateway URL in AWS.
    #[arg(long, env = "SKYHOOK_URL", default_value = DEFAULT_URL, global = true, value_name = "URL")]
    pub url: String,
    /// The admin token. Default: the one `skyhook serve` keeps in --data-dir.
    #[arg(long, env = "SKYHOOK_ADMIN_TOKEN", hide_env_values = true, global = true, value_name = "TOKEN")]
    pub admin_token: Option<String>,
    /// `skyhook serve`'s data dir, to read the admin token from when none is given.
    #[arg(long, env = "SKYHOOK_DATA_DIR", default_value = "./.skyhook", global = true, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `--limit`, `--cursor`, `--all` of every list.
#[derive(Args, Clone, Debug)]
pub struct Paging {
    /// Page size, 1 to 250 (the API's default is 50).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Start after this cursor (`nextCursor` of the previous page).
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
    /// Follow `nextCursor` and print every page.
    #[arg(long, conflicts_with = "cursor")]
    pub all: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create, list, show and delete applications (tenants). Needs the admin token.
    #[command(after_help = "Examples:\n  skyhook applications create Acme\n  skyhook applications list\n  \
        skyhook applications delete app_01J…")]
    Applications(Applications),
    /// Create, list and revoke an application's API keys. Needs the admin token.
    #[command(after_help = "Examples:\n  skyhook keys create app_01J… ci\n  \
        skyhook keys create app_01J… reader --scope events:read --scope webhooks:read\n  \
        skyhook keys revoke app_01J… key_01J…")]
    Keys(Keys),
    /// Create, list, show and delete event types. Needs an API key.
    #[command(
        after_help = "Examples:\n  skyhook event-types create invoice.paid --description 'An invoice was paid'\n  \
        skyhook event-types create order.created --schema '{\"type\":\"object\",\"required\":[\"id\"]}'"
    )]
    EventTypes(EventTypes),
    /// Manage endpoints: create, list, show, update, delete, rotate-secret, test. Needs an API key.
    #[command(
        after_help = "Examples:\n  skyhook endpoints create https://example.com/hooks --event-type invoice.paid\n  \
        skyhook endpoints update ep_01J… --disable\n  skyhook endpoints test ep_01J…"
    )]
    Endpoints(Endpoints),
    /// Publish an event to every endpoint subscribed to its type. Needs an API key.
    #[command(
        after_help = "Examples:\n  skyhook send invoice.paid --data '{\"invoiceId\":\"inv_1\",\"amount\":4200}'\n  \
        skyhook send invoice.paid --data-file invoice.json --idempotency-key invoice-1-paid\n  \
        cat event.json | skyhook send order.created --data-file -"
    )]
    Send(Send),
    /// List and show deliveries with their attempts; retry one, or every failed one. Needs an API key.
    #[command(
        after_help = "Examples:\n  skyhook deliveries list --status failed\n  skyhook deliveries show dlv_01J…\n  \
        skyhook deliveries retry dlv_01J…\n  skyhook deliveries retry-failed --endpoint-id ep_01J…"
    )]
    Deliveries(Deliveries),
    /// Check a webhook's Standard Webhooks signature, as a receiver does. Exit 0 valid, 1 invalid.
    #[command(after_help = "Example:\n  skyhook verify --secret whsec_… --id msg_… --timestamp 1700000000 \\\n    \
        --signature 'v1,K5oZ…' --body-file body.json")]
    Verify(Verify),
}

#[derive(Args, Debug)]
pub struct Applications {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    action: ApplicationsAction,
}

#[derive(Subcommand, Debug)]
enum ApplicationsAction {
    /// Create an application.
    Create {
        /// Its name (up to 256 characters).
        name: String,
        /// Days events, deliveries and attempts are kept (1–90; default 31).
        #[arg(long, value_name = "DAYS")]
        retention_days: Option<u32>,
        /// Publishes per second allowed (default: unlimited).
        #[arg(long, value_name = "PER_SECOND")]
        rate_limit: Option<u32>,
    },
    /// List applications.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show an application.
    Get {
        /// Application id (`app_…`).
        app_id: String,
    },
    /// Delete an application with its keys, event types, endpoints and history.
    Delete {
        /// Application id (`app_…`).
        app_id: String,
    },
}

#[derive(Args, Debug)]
pub struct Keys {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    action: KeysAction,
}

#[derive(Subcommand, Debug)]
enum KeysAction {
    /// Create an API key; the key is printed once, store it now.
    Create {
        /// Application id (`app_…`).
        app_id: String,
        /// A name to recognise the key by.
        name: String,
        /// A scope to grant (repeat for several; default all four).
        #[arg(long = "scope", value_name = "SCOPE", value_parser = ["webhooks:write", "webhooks:read", "events:write", "events:read"])]
        scopes: Vec<String>,
    },
    /// List an application's keys (by prefix and last 4 characters).
    List {
        /// Application id (`app_…`).
        app_id: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Revoke a key, and every access token issued for it, at once.
    Revoke {
        /// Application id (`app_…`).
        app_id: String,
        /// Key id (`key_…`).
        key_id: String,
    },
}

#[derive(Args, Debug)]
pub struct EventTypes {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    action: EventTypesAction,
}

#[derive(Subcommand, Debug)]
enum EventTypesAction {
    /// Create an event type.
    #[command(group(ArgGroup::new("schema_source").args(["schema", "schema_file"])))]
    Create {
        /// Its name: letters, digits and `. _ - :` (e.g. `invoice.paid`).
        name: String,
        /// What the event means.
        #[arg(long)]
        description: Option<String>,
        /// A JSON Schema every payload must satisfy, as JSON text.
        #[arg(long, value_name = "JSON")]
        schema: Option<String>,
        /// The JSON Schema from a file (`-` for stdin).
        #[arg(long, value_name = "FILE")]
        schema_file: Option<PathBuf>,
    },
    /// List event types.
    List {
        /// Include archived event types.
        #[arg(long)]
        include_archived: bool,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show an event type with its schema.
    Get {
        /// Event type name.
        name: String,
    },
    /// Delete an event type.
    Delete {
        /// Event type name.
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct Endpoints {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    action: EndpointsAction,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PayloadFormat {
    /// The Standard Webhooks envelope `{"type","timestamp","data"}`.
    Standard,
    /// The published payload as is.
    Raw,
}

impl PayloadFormat {
    fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Standard => "standard",
            PayloadFormat::Raw => "raw",
        }
    }
}

/// The endpoint fields `create` and `update` share.
#[derive(Args, Debug)]
struct EndpointFields {
    /// What the endpoint is for.
    #[arg(long)]
    description: Option<String>,
    /// Deliver only this event type (repeat for several; default all).
    #[arg(long = "event-type", value_name = "TYPE")]
    event_types: Vec<String>,
    /// A custom request header, `Name=value` or `Name: value` (repeat for several).
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_pair)]
    headers: Vec<(String, String)>,
    /// Attempts before a delivery fails (1–20; default 8).
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
    /// Seconds the endpoint has to answer (1–30; default 15).
    #[arg(long, value_name = "SECONDS")]
    timeout_secs: Option<u32>,
    /// What the endpoint receives as the body.
    #[arg(long, value_name = "FORMAT")]
    payload_format: Option<PayloadFormat>,
    /// A metadata label, `key=value` (repeat for several).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_pair)]
    metadata: Vec<(String, String)>,
}

impl EndpointFields {
    fn write(self, body: &mut Map<String, Value>) {
        if let Some(description) = self.description {
            body.insert("description".into(), json!(description));
        }
        if !self.event_types.is_empty() {
            body.insert("eventTypes".into(), json!(self.event_types));
        }
        if !self.headers.is_empty() {
            body.insert("headers".into(), pairs(self.headers));
        }
        if let Some(n) = self.max_attempts {
            body.insert("maxAttempts".into(), json!(n));
        }
        if let Some(n) = self.timeout_secs {
            body.insert("timeoutSecs".into(), json!(n));
        }
        if let Some(format) = self.payload_format {
            body.insert("payloadFormat".into(), json!(format.as_str()));
        }
        if !self.metadata.is_empty() {
            body.insert("metadata".into(), pairs(self.metadata));
        }
    }
}

#[derive(Subcommand, Debug)]
enum EndpointsAction {
    /// Create an endpoint; its signing secret is printed once, store it now.
    Create {
        /// Where deliveries are POSTed.
        #[arg(value_name = "URL")]
        endpoint_url: String,
        #[command(flatten)]
        fields: EndpointFields,
        /// Create it inactive (it receives nothing until enabled).
        #[arg(long)]
        disabled: bool,
        /// Use this `whsec_` signing secret instead of a generated one.
        #[arg(long, value_name = "WHSEC")]
        secret: Option<String>,
    },
    /// List endpoints.
    List {
        /// Only active (`true`) or inactive (`false`) endpoints.
        #[arg(long, value_name = "BOOL")]
        active: Option<bool>,
        /// Only endpoints that receive this event type.
        #[arg(long, value_name = "TYPE")]
        event_type: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show an endpoint.
    Get {
        /// Endpoint id (`ep_…`).
        id: String,
    },
    /// Change some fields of an endpoint (the others are kept).
    #[command(group(ArgGroup::new("activity").args(["enable", "disable"])))]
    Update {
        /// Endpoint id (`ep_…`).
        id: String,
        /// A new URL for the endpoint (`--url` is Skyhook's own).
        #[arg(long, value_name = "URL")]
        new_url: Option<String>,
        #[command(flatten)]
        fields: EndpointFields,
        /// Remove the description.
        #[arg(long, conflicts_with = "description")]
        clear_description: bool,
        /// Deliver every event type again (clears the --event-type filter).
        #[arg(long, conflicts_with = "event_types")]
        all_event_types: bool,
        /// Make the endpoint active.
        #[arg(long)]
        enable: bool,
        /// Make the endpoint inactive.
        #[arg(long)]
        disable: bool,
    },
    /// Delete an endpoint.
    Delete {
        /// Endpoint id (`ep_…`).
        id: String,
    },
    /// New signing secret (printed once); the old one keeps signing for 24 hours.
    RotateSecret {
        /// Endpoint id (`ep_…`).
        id: String,
        /// Use this `whsec_` secret instead of a generated one.
        #[arg(long, value_name = "WHSEC")]
        secret: Option<String>,
    },
    /// Send a test event to this endpoint only.
    Test {
        /// Endpoint id (`ep_…`).
        id: String,
        /// Event type of the test event (default `webhook.test`).
        #[arg(long, value_name = "TYPE")]
        event_type: Option<String>,
        /// The payload, as JSON text (default a short test message).
        #[arg(long, value_name = "JSON")]
        data: Option<String>,
    },
    /// Delivery statistics of an endpoint.
    Stats {
        /// Endpoint id (`ep_…`).
        id: String,
        /// Start of the window, RFC 3339 (default 24 hours ago).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("payload").args(["data", "data_file"]).required(true)))]
pub struct Send {
    #[command(flatten)]
    api: ApiArgs,
    /// The event type (it must exist: `skyhook event-types create`).
    event_type: String,
    /// The payload, as JSON text.
    #[arg(long, value_name = "JSON")]
    data: Option<String>,
    /// The payload from a JSON file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    data_file: Option<PathBuf>,
    /// Publish at most once per key (24 hours): a repeat returns the first event.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
}

#[derive(Args, Debug)]
pub struct Deliveries {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    action: DeliveriesAction,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DeliveryStatus {
    Pending,
    Retrying,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// Filters of `deliveries list` and `retry-failed`.
#[derive(Args, Debug, Clone)]
struct DeliveryScope {
    /// Only deliveries to this endpoint (`ep_…`).
    #[arg(long, value_name = "ID")]
    endpoint_id: Option<String>,
    /// Only this event type.
    #[arg(long, value_name = "TYPE")]
    event_type: Option<String>,
    /// Created at or after this time (RFC 3339, e.g. 2026-01-31T12:00:00Z).
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Created at or before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
}

impl DeliveryScope {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        for (name, value) in
            [("endpointId", &self.endpoint_id), ("eventType", &self.event_type), ("from", &self.from), ("to", &self.to)]
        {
            if let Some(value) = value {
                query.push((name, value.clone()));
            }
        }
        query
    }
}

#[derive(Subcommand, Debug)]
enum DeliveriesAction {
    /// List deliveries, newest first.
    List {
        /// Only deliveries in this state.
        #[arg(long, value_name = "STATUS")]
        status: Option<DeliveryStatus>,
        /// Only deliveries of this event (`evt_…`).
        #[arg(long, value_name = "ID")]
        event_id: Option<String>,
        #[command(flatten)]
        scope: DeliveryScope,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a delivery and every attempt.
    Show {
        /// Delivery id (`dlv_…`).
        id: String,
    },
    /// Send a finished delivery again, as a new delivery.
    Retry {
        /// Delivery id (`dlv_…`).
        id: String,
    },
    /// Retry every failed (not yet retried) delivery that matches, with a progress bar.
    RetryFailed {
        #[command(flatten)]
        scope: DeliveryScope,
        /// Only count what would be retried.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args, Debug)]
pub struct Verify {
    /// The endpoint's signing secret (`whsec_…`, checks `v1`) or its Ed25519
    /// public key (`whpk_…`, checks `v1a`).
    #[arg(long, env = "SKYHOOK_ENDPOINT_SECRET", hide_env_values = true, value_name = "WHSEC|WHPK")]
    secret: String,
    /// The `webhook-id` header.
    #[arg(long, value_name = "ID")]
    id: String,
    /// The `webhook-timestamp` header (unix seconds).
    #[arg(long, value_name = "UNIX_SECONDS", allow_negative_numbers = true)]
    timestamp: i64,
    /// The `webhook-signature` header (`v1,<base64>`, several space-separated).
    #[arg(long, value_name = "HEADER", allow_hyphen_values = true)]
    signature: String,
    /// The raw request body, byte for byte (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    body_file: PathBuf,
    /// Largest accepted distance between the timestamp and now, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = skyhook::signing::DEFAULT_TOLERANCE_SECS)]
    tolerance: i64,
}

/// `Name=value` or `Name: value`, split at whichever comes first.
fn parse_pair(raw: &str) -> Result<(String, String), String> {
    let at = raw.find(['=', ':']).ok_or_else(|| format!("{raw:?} is not NAME=VALUE"))?;
    let (name, value) = (raw[..at].trim(), raw[at + 1..].trim());
    if name.is_empty() {
        return Err(format!("{raw:?} has no name before the ="));
    }
    Ok((name.to_string(), value.to_string()))
}

fn pairs(entries: Vec<(String, String)>) -> Value {
    Value::Object(entries.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

fn read_input(path: &PathBuf) -> Result<Vec<u8>, String> {
    if path.as_os_str() == "-" {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buffer).map_err(|e| format!("reading stdin: {e}"))?;
        Ok(buffer)
    } else {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
}

fn parse_json(flag: &str, raw: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(raw).map_err(|e| format!("{flag} is not valid JSON: {e}"))
}

/// A path segment, percent-encoded (event type names may hold `:`).
fn segment(raw: &str) -> String {
    let mut out = String::new();
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn admin_client(args: &AdminArgs) -> Result<Client, String> {
    let token = match &args.admin_token {
        Some(token) => token.clone(),
        None => {
            if !args.data_dir.join("secrets.json").exists() {
                return Err(format!(
                    "no admin token: pass --admin-token or set SKYHOOK_ADMIN_TOKEN (no {} to read it from; \
                     point --data-dir at `skyhook serve`'s data dir)",
                    args.data_dir.join("secrets.json").display()
                ));
            }
            FileSecrets::new(&args.data_dir, None).load().await.map_err(|e| e.to_string())?.admin_token
        }
    };
    Client::new(&args.url, Credential::Admin(token), args.json)
}

fn api_client(args: &ApiArgs) -> Result<Client, String> {
    let key = args.api_key.clone().filter(|k| !k.trim().is_empty()).ok_or(
        "no API key: pass --api-key or set SKYHOOK_API_KEY (create one with `skyhook keys create <APP_ID> <NAME>`)",
    )?;
    Client::new(&args.url, Credential::ApiKey(key), args.json)
}

/// Runs one CLI command.
pub async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Applications(cmd) => applications(cmd).await,
        Command::Keys(cmd) => keys(cmd).await,
        Command::EventTypes(cmd) => event_types(cmd).await,
        Command::Endpoints(cmd) => endpoints(cmd).await,
        Command::Send(cmd) => send(cmd).await,
        Command::Deliveries(cmd) => deliveries(cmd).await,
        Command::Verify(cmd) => verify(cmd),
    }
}

/// Prints the reply: its JSON with `--json`, else what `human` makes of it.
fn print(json: bool, reply: &Reply, human: impl FnOnce(&Value) -> String) {
    if json {
        if reply.text.trim().is_empty() {
            println!("{}", json!({ "status": reply.status.as_u16() }));
        } else {
            println!("{}", reply.text.trim_end());
        }
    } else {
        let out = human(&reply.body);
        if !out.is_empty() {
            println!("{out}");
        }
    }
}

/// One page, or every page with `--all`.
async fn list(
    client: &Client,
    path: &str,
    mut query: Vec<(&'static str, String)>,
    paging: &Paging,
    columns: &[Column],
) -> Result<(), String> {
    if let Some(limit) = paging.limit {
        query.push(("limit", limit.to_string()));
    }
    if let Some(cursor) = &paging.cursor {
        query.push(("cursor", cursor.clone()));
    }
    let mut rows: Vec<Value> = Vec::new();
    let mut last: Reply;
    loop {
        last = client.get(path, &query).await?;
        rows.extend(last.body["data"].as_array().cloned().unwrap_or_default());
        match last.body["nextCursor"].as_str() {
            Some(next) if paging.all => {
                query.retain(|(k, _)| *k != "cursor");
                query.push(("cursor", next.to_string()));
            }
            _ => break,
        }
    }
    if client.json {
        if paging.all {
            println!("{}", json!({ "data": rows, "nextCursor": null, "hasMore": false }));
        } else {
            println!("{}", last.text.trim_end());
        }
        return Ok(());
    }
    if rows.is_empty() {
        println!("(none)");
    } else {
        println!("{}", table(&rows, columns));
    }
    if let Some(next) = last.body["nextCursor"].as_str().filter(|_| !paging.all) {
        eprintln!("More results: add --cursor {next} (or --all)");
    }
    Ok(())
}

const APPLICATION_COLUMNS: &[Column] = &[
    col("ID", |r| text(&r["id"])),
    col("NAME", |r| text(&r["name"])),
    col("RETENTION", |r| format!("{}d", text(&r["retentionDays"]))),
    col("RATE LIMIT", |r| r["rateLimit"].as_u64().map(|n| format!("{n}/s")).unwrap_or_else(|| "-".into())),
    col("CREATED", |r| text(&r["createdAt"])),
];

async fn applications(cmd: Applications) -> Result<(), String> {
    let client = admin_client(&cmd.admin).await?;
    match cmd.action {
        ApplicationsAction::Create { name, retention_days, rate_limit } => {
            let mut body = json!({ "name": name });
            if let Some(days) = retention_days {
                body["retentionDays"] = json!(days);
            }
            if let Some(limit) = rate_limit {
                body["rateLimit"] = json!(limit);
            }
            let reply = client.post("/v1/applications", body).await?;
            print(client.json, &reply, |app| fields(app, &[]));
        }
        ApplicationsAction::List { paging } => {
            list(&client, "/v1/applications", vec![], &paging, APPLICATION_COLUMNS).await?
        }
        ApplicationsAction::Get { app_id } => {
            let reply = client.get(&format!("/v1/applications/{}", segment(&app_id)), &[]).await?;
            print(client.json, &reply, |app| fields(app, &[]));
        }
        ApplicationsAction::Delete { app_id } => {
            let reply = client.delete(&format!("/v1/applications/{}", segment(&app_id))).await?;
            print(client.json, &reply, |_| format!("Deleted application {app_id}"));
        }
    }
    Ok(())
}

const KEY_COLUMNS: &[Column] = &[
    col("ID", |r| text(&r["id"])),
    col("NAME", |r| text(&r["name"])),
    col("KEY", |r| format!("{}…{}", r["prefix"].as_str().unwrap_or(""), r["last4"].as_str().unwrap_or(""))),
    col("SCOPES", |r| text(&r["scopes"])),
    col("CREATED", |r| text(&r["createdAt"])),
    col("LAST USED", |r| text(&r["lastUsedAt"])),
    col("REVOKED", |r| text(&r["revokedAt"])),
];

async fn keys(cmd: Keys) -> Result<(), String> {
    let client = admin_client(&cmd.admin).await?;
    match cmd.action {
        KeysAction::Create { app_id, name, scopes } => {
            let mut body = json!({ "name": name });
            if !scopes.is_empty() {
                body["scopes"] = json!(scopes);
            }
            let reply = client.post(&format!("/v1/applications/{}/api-keys", segment(&app_id)), body).await?;
            print(client.json, &reply, |key| fields(key, &[]));
            if !client.json {
                eprintln!("Store the key now: it is not shown again.");
            }
        }
        KeysAction::List { app_id, paging } => {
            list(&client, &format!("/v1/applications/{}/api-keys", segment(&app_id)), vec![], &paging, KEY_COLUMNS)
                .await?
        }
        KeysAction::Revoke { app_id, key_id } => {
            let path = format!("/v1/applications/{}/api-keys/{}", segment(&app_id), segment(&key_id));
            let reply = client.delete(&path).await?;
            print(client.json, &reply, |_| format!("Revoked key {key_id}"));
        }
    }
    Ok(())
}

const EVENT_TYPE_COLUMNS: &[Column] = &[
    col("NAME", |r| text(&r["name"])),
    col("DESCRIPTION", |r| text(&r["description"])),
    col("SCHEMA", |r| if r["schema"].is_null() { "-".into() } else { "yes".into() }),
    col("ARCHIVED", |r| text(&r["archived"])),
    col("CREATED", |r| text(&r["createdAt"])),
];

async fn event_types(cmd: EventTypes) -> Result<(), String> {
    let client = api_client(&cmd.api)?;
    match cmd.action {
        EventTypesAction::Create { name, description, schema, schema_file } => {
            let mut body = json!({ "name": name });
            if let Some(description) = description {
                body["description"] = json!(description);
            }
            if let Some(schema) = schema {
                body["schema"] = parse_json("--schema", schema.as_bytes())?;
            }
            if let Some(file) = schema_file {
                body["schema"] = parse_json("--schema-file", &read_input(&file)?)?;
            }
            let reply = client.post("/v1/event-types", body).await?;
            print(client.json, &reply, |t| fields(t, &[]));
        }
        EventTypesAction::List { include_archived, paging } => {
            let query = if include_archived { vec![("includeArchived", "true".to_string())] } else { vec![] };
            list(&client, "/v1/event-types", query, &paging, EVENT_TYPE_COLUMNS).await?
        }
        EventTypesAction::Get { name } => {
            let reply = client.get(&format!("/v1/event-types/{}", segment(&name)), &[]).await?;
            print(client.json, &reply, |t| fields(t, &[]));
        }
        EventTypesAction::Delete { name } => {
            let reply = client.delete(&format!("/v1/event-types/{}", segment(&name))).await?;
            print(client.json, &reply, |_| format!("Deleted event type {name}"));
        }
    }
    Ok(())
}

const ENDPOINT_COLUMNS: &[Column] = &[
    col("ID", |r| text(&r["id"])),
    col("URL", |r| text(&r["url"])),
    col("EVENT TYPES", |r| {
        if r["eventTypes"].as_array().is_some_and(|a| a.is_empty()) { "all".into() } else { text(&r["eventTypes"]) }
    }),
    col("ACTIVE", |r| text(&r["isActive"])),
    col("ATTEMPTS", |r| text(&r["maxAttempts"])),
    col("SECRET", |r| format!("…{}", r["secretLast4"].as_str().unwrap_or(""))),
];

async fn endpoints(cmd: Endpoints) -> Result<(), String> {
    let client = api_client(&cmd.api)?;
    match cmd.action {
        EndpointsAction::Create { endpoint_url, fields: endpoint_fields, disabled, secret } => {
            let mut body = Map::new();
            body.insert("url".into(), json!(endpoint_url));
            endpoint_fields.write(&mut body);
            if disabled {
                body.insert("isActive".into(), json!(false));
            }
            if let Some(secret) = secret {
                body.insert("secret".into(), json!(secret));
            }
            let reply = client.post("/v1/endpoints", Value::Object(body)).await?;
            print(client.json, &reply, |endpoint| fields(endpoint, &[]));
            if !client.json {
                eprintln!("Store the signing secret now: it is not shown again.");
            }
        }
        EndpointsAction::List { active, event_type, paging } => {
            let mut query = Vec::new();
            if let Some(active) = active {
                query.push(("isActive", active.to_string()));
            }
            if let Some(event_type) = event_type {
                query.push(("eventType", event_type));
            }
            list(&client, "/v1/endpoints", query, &paging, ENDPOINT_COLUMNS).await?
        }
        EndpointsAction::Get { id } => {
            let reply = client.get(&format!("/v1/endpoints/{}", segment(&id)), &[]).await?;
            print(client.json, &reply, |endpoint| fields(endpoint, &[]));
        }
        EndpointsAction::Update {
            id,
            new_url,
            fields: endpoint_fields,
            clear_description,
            all_event_types,
            enable,
            disable,
        } => {
            let mut body = Map::new();
            if let Some(url) = new_url {
                body.insert("url".into(), json!(url));
            }
            endpoint_fields.write(&mut body);
            if clear_description {
                body.insert("description".into(), Value::Null);
            }
            if all_event_types {
                body.insert("eventTypes".into(), json!([]));
            }
            if enable || disable {
                body.insert("isActive".into(), json!(enable));
            }
            if body.is_empty() {
                return Err("nothing to update: give at least one field (see --help)".into());
            }
            let path = format!("/v1/endpoints/{}", segment(&id));
            let reply = client.call(reqwest::Method::PATCH, &path, &[], Some(Value::Object(body)), &[]).await?;
            print(client.json, &reply, |endpoint| fields(endpoint, &[]));
        }
        EndpointsAction::Delete { id } => {
            let reply = client.delete(&format!("/v1/endpoints/{}", segment(&id))).await?;
            print(client.json, &reply, |_| format!("Deleted endpoint {id}"));
        }
        EndpointsAction::RotateSecret { id, secret } => {
            let body = match secret {
                Some(secret) => json!({ "secret": secret }),
                None => json!({}),
            };
            let reply = client.post(&format!("/v1/endpoints/{}/rotate-secret", segment(&id)), body).await?;
            print(client.json, &reply, |endpoint| {
                format!(
                    "New signing secret of {id}: {}\nThe previous secret keeps signing, next to this one, for 24 hours.",
                    text(&endpoint["secret"])
                )
            });
        }
        EndpointsAction::Test { id, event_type, data } => {
            let mut body = json!({});
            if let Some(event_type) = event_type {
                body["eventType"] = json!(event_type);
            }
            if let Some(data) = data {
                body["payload"] = parse_json("--data", data.as_bytes())?;
            }
            let reply = client.post(&format!("/v1/endpoints/{}/test", segment(&id)), body).await?;
            print(client.json, &reply, |event| {
                format!("Sent test event {} ({}) to {id}", text(&event["id"]), text(&event["eventType"]))
            });
        }
        EndpointsAction::Stats { id, since } => {
            let query: Vec<(&str, String)> = since.map(|s| vec![("since", s)]).unwrap_or_default();
            let reply = client.get(&format!("/v1/endpoints/{}/stats", segment(&id)), &query).await?;
            print(client.json, &reply, |stats| fields(stats, &["hourly"]));
        }
    }
    Ok(())
}

async fn send(cmd: Send) -> Result<(), String> {
    let client = api_client(&cmd.api)?;
    let payload = match (&cmd.data, &cmd.data_file) {
        (Some(data), _) => parse_json("--data", data.as_bytes())?,
        (None, Some(file)) => parse_json("--data-file", &read_input(file)?)?,
        (None, None) => unreachable!("clap requires --data or --data-file"),
    };
    let headers: Vec<(&str, String)> = cmd.idempotency_key.iter().map(|k| ("idempotency-key", k.clone())).collect();
    let body = json!({ "eventType": cmd.event_type, "payload": payload });
    let reply = client.call(reqwest::Method::POST, "/v1/events", &[], Some(body), &headers).await?;
    let replayed = reply.headers.get("idempotent-replayed").is_some_and(|v| v == "true");
    print(client.json, &reply, |event| {
        let mut line = format!("Accepted event {} ({})", text(&event["id"]), text(&event["eventType"]));
        if replayed {
            line.push_str(" — already published with this idempotency key; nothing new was sent");
        }
        line
    });
    Ok(())
}

const DELIVERY_COLUMNS: &[Column] = &[
    col("ID", |r| text(&r["id"])),
    col("EVENT TYPE", |r| text(&r["eventType"])),
    col("ENDPOINT", |r| text(&r["endpointId"])),
    col("STATUS", |r| text(&r["status"])),
    col("ATTEMPTS", |r| format!("{}/{}", text(&r["attemptCount"]), text(&r["maxAttempts"]))),
    col("RESPONSE", |r| text(&r["responseStatus"])),
    col("CREATED", |r| text(&r["createdAt"])),
];

const ATTEMPT_COLUMNS: &[Column] = &[
    col("#", |r| text(&r["number"])),
    col("STARTED", |r| text(&r["startedAt"])),
    col("DURATION", |r| format!("{} ms", text(&r["durationMs"]))),
    col("RESPONSE", |r| text(&r["responseStatus"])),
    col("ERROR", |r| text(&r["error"])),
    col("BODY", |r| text(&r["response"])),
];

async fn deliveries(cmd: Deliveries) -> Result<(), String> {
    let client = api_client(&cmd.api)?;
    match cmd.action {
        DeliveriesAction::List { status, event_id, scope, paging } => {
            let mut query = scope.query();
            if let Some(status) = status {
                query.push(("status", status.as_str().to_string()));
            }
            if let Some(event_id) = event_id {
                query.push(("eventId", event_id));
            }
            list(&client, "/v1/deliveries", query, &paging, DELIVERY_COLUMNS).await?
        }
        DeliveriesAction::Show { id } => {
            let reply = client.get(&format!("/v1/deliveries/{}", segment(&id)), &[]).await?;
            print(client.json, &reply, |delivery| {
                let attempts = delivery["attempts"].as_array().cloned().unwrap_or_default();
                let mut out = fields(delivery, &["attempts"]);
                out.push_str(&format!("\n\nAttempts ({}):\n", attempts.len()));
                out.push_str(&if attempts.is_empty() {
                    "(none yet)".to_string()
                } else {
                    table(&attempts, ATTEMPT_COLUMNS)
                });
                out
            });
        }
        DeliveriesAction::Retry { id } => {
            let reply = client.post(&format!("/v1/deliveries/{}/retry", segment(&id)), json!({})).await?;
            print(client.json, &reply, |delivery| format!("Retrying {id} as {}", text(&delivery["id"])));
        }
        DeliveriesAction::RetryFailed { scope, dry_run } => retry_failed(&client, &scope, dry_run).await?,
    }
    Ok(())
}

/// Counts the failed, not yet retried deliveries of the scope (a spinner),
/// then bulk-retries them call after call (a progress bar) until the API
/// says nothing is left.
async fn retry_failed(client: &Client, scope: &DeliveryScope, dry_run: bool) -> Result<(), String> {
    let show = !client.json;
    let spinner = if show { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
    spinner.set_message("Counting failed deliveries…");
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    let mut query = scope.query();
    query.push(("status", "failed".into()));
    query.push(("limit", "250".into()));
    let mut total: u64 = 0;
    loop {
        let page = client.get("/v1/deliveries", &query).await.inspect_err(|_| spinner.finish_and_clear())?;
        let rows = page.body["data"].as_array().cloned().unwrap_or_default();
        total += rows.iter().filter(|d| d["retriedBy"].is_null()).count() as u64;
        spinner.set_message(format!("Counting failed deliveries… {total}"));
        match page.body["nextCursor"].as_str() {
            Some(next) => {
                query.retain(|(k, _)| *k != "cursor");
                query.push(("cursor", next.to_string()));
            }
            None => break,
        }
    }
    spinner.finish_and_clear();
    if dry_run || total == 0 {
        if client.json {
            println!("{}", json!({ "failed": total, "retried": 0, "deliveryIds": [] }));
        } else if total == 0 {
            println!("No failed deliveries to retry.");
        } else {
            println!("{} would be retried.", deliveries_count(total));
        }
        return Ok(());
    }

    let bar = if show { ProgressBar::new(total) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} Retrying [{bar:32}] {pos}/{len} failed deliveries ({elapsed})")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    let mut body = Map::new();
    for (name, value) in
        [("endpointId", &scope.endpoint_id), ("eventType", &scope.event_type), ("from", &scope.from), ("to", &scope.to)]
    {
        if let Some(value) = value {
            body.insert(name.into(), json!(value));
        }
    }
    let mut retried: u64 = 0;
    let mut ids: Vec<Value> = Vec::new();
    loop {
        let reply =
            client.post("/v1/deliveries/retry", Value::Object(body.clone())).await.inspect_err(|_| bar.abandon())?;
        let count = reply.body["retried"].as_u64().unwrap_or(0);
        ids.extend(reply.body["deliveryIds"].as_array().cloned().unwrap_or_default());
        retried += count;
        if retried > bar.length().unwrap_or(0) {
            bar.set_length(retried);
        }
        bar.set_position(retried);
        if !reply.body["truncated"].as_bool().unwrap_or(false) || count == 0 {
            break;
        }
    }
    bar.finish_and_clear();
    if client.json {
        println!("{}", json!({ "failed": total, "retried": retried, "deliveryIds": ids }));
    } else {
        println!("Retried {} (each as a new delivery; see `skyhook deliveries list`).", deliveries_count(retried));
    }
    Ok(())
}

/// `1 failed delivery`, `2 failed deliveries`.
fn deliveries_count(n: u64) -> String {
    if n == 1 { "1 failed delivery".into() } else { format!("{n} failed deliveries") }
}

fn verify(cmd: Verify) -> Result<(), String> {
    let body = read_input(&cmd.body_file)?;
    let now = chrono::Utc::now().timestamp();
    match skyhook::signing::verify_with_key(
        &cmd.secret,
        &cmd.id,
        cmd.timestamp,
        &body,
        &cmd.signature,
        now,
        cmd.tolerance,
    ) {
        Ok(()) => {
            println!("signature valid");
            Ok(())
        }
        Err(err) => Err(format!("signature INVALID: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_command_definitions_then_clap_accepts_them() {
        use clap::Subcommand;
        Command::augment_subcommands(clap::Command::new("skyhook")).debug_assert();
    }

    #[test]
    fn given_pairs_then_they_split_at_the_first_separator() {
        assert_eq!(parse_pair("X-Env=prod").unwrap(), ("X-Env".into(), "prod".into()));
        assert_eq!(parse_pair("Authorization: Bearer a=b").unwrap(), ("Authorization".into(), "Bearer a=b".into()));
        assert_eq!(parse_pair("k=a:b").unwrap(), ("k".into(), "a:b".into()));
        assert!(parse_pair("novalue").is_err());
        assert!(parse_pair("=x").is_err());
    }

    #[test]
    fn given_a_name_with_reserved_characters_then_the_segment_is_encoded() {
        assert_eq!(segment("invoice.paid"), "invoice.paid");
        assert_eq!(segment("a:b/c"), "a%3Ab%2Fc");
    }
}
