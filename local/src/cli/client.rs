//! The CLI's HTTP client: one request to the Skyhook API, and problem+json
//! errors turned into a readable message.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

/// How a request authenticates.
#[derive(Clone)]
pub enum Credential {
    /// `Authorization: Bearer <admin token>`.
    Admin(String),
    /// `x-api-key: <key>`.
    ApiKey(String),
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    credential: Credential,
    /// Print the problem document as well as the summary on errors.
    pub json: bool,
}

/// A successful answer.
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    /// The body as received (empty for 204).
    pub text: String,
    /// The body as JSON (`Null` when empty).
    pub body: Value,
}

impl Client {
    pub fn new(base: &str, credential: Credential, json: bool) -> Result<Client, String> {
        let base = base.trim_end_matches('/').to_string();
        Url::parse(&base).map_err(|e| format!("--url {base:?} is not a URL: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("skyhook-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client { http, base, credential, json })
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Reply, String> {
        self.call(Method::GET, path, query, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Reply, String> {
        self.call(Method::POST, path, &[], Some(body), &[]).await
    }

    pub async fn delete(&self, path: &str) -> Result<Reply, String> {
        self.call(Method::DELETE, path, &[], None, &[]).await
    }

    /// One request; any status outside 2xx is an error naming the problem's
    /// detail and every field error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> Result<Reply, String> {
        let mut url = Url::parse(&format!("{}{}", self.base, path)).map_err(|e| format!("bad URL {path}: {e}"))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut request = self.http.request(method.clone(), url);
        request = match &self.credential {
            Credential::Admin(token) => request.bearer_auth(token),
            Credential::ApiKey(key) => request.header("x-api-key", key),
        };
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.map_err(|e| {
            let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
            format!(
                "cannot reach Skyhook at {} ({e}{cause}); is `skyhook serve` running? (--url / SKYHOOK_URL)",
                self.base
            )
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| format!("reading the response of {method} {path}: {e}"))?;
        let body =
            if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) };
        if status.is_success() {
            Ok(Reply { status, headers, text, body })
        } else {
            Err(problem_message(status, &method, path, &text, &body, self.json))
        }
    }
}

/// `Invalid request (400): url: is required` and one line per field error.
pub fn problem_message(
    status: StatusCode,
    method: &Method,
    path: &str,
    text: &str,
    body: &Value,
    json: bool,
) -> String {
    let title = body["title"].as_str().unwrap_or_else(|| status.canonical_reason().unwrap_or("error"));
    let detail = body["detail"].as_str().filter(|d| !d.is_empty());
    let mut message = format!("{title} ({}) on {method} {path}", status.as_u16());
    let errors = body["errors"].as_array().filter(|errors| !errors.is_empty());
    match (errors, detail) {
        // The detail of a validation problem repeats its field errors.
        (Some(_), _) => message.push(':'),
        (None, Some(detail)) => message.push_str(&format!(": {detail}")),
        (None, None) if !text.trim().is_empty() && body.is_null() => message.push_str(&format!(": {}", text.trim())),
        (None, None) => {}
    }
    if let Some(errors) = errors {
        for error in errors {
            let field = error["field"].as_str().unwrap_or("?");
            let reason = error["message"].as_str().unwrap_or("");
            message.push_str(&format!("\n  {field}: {reason}"));
        }
    }
    if json && !body.is_null() {
        message.push_str(&format!("\n{body}"));
    }
    message
}
