//! The dispatcher's outbound HTTP client: [`HttpSender`] implements
//! [`WebhookSender`] on one pooled `reqwest::Client`.
//!
//! SSRF (SPEC §4): the client resolves host names itself through a
//! [`HostResolver`] and checks every resolved address against the
//! [`AddressPolicy`]. **If any resolved address is blocked the call is refused**
//! (`ErrorCode::Blocked`), even when others are public: filtering would still
//! never connect to a blocked address, but a name that mixes public and internal
//! records is either misconfigured or a rebinding attempt, and refusing makes the
//! outcome independent of which address the connector happens to try. IP-literal
//! hosts never reach the resolver (reqwest connects to them directly), so they are
//! checked before the request is built. There is no proxy and redirects are never
//! followed: a 3xx is returned as the endpoint's answer.
//!
//! Responses: the status, the first [`MAX_RESPONSE_CAPTURE_BYTES`] of the body
//! (read chunk by chunk; the rest is never read, the connection is dropped) and
//! `Retry-After`. Once the status line and headers have arrived, the endpoint has
//! answered: if the connection then breaks mid-body, the answer is returned with
//! the part of the body captured so far (not an `Io` failure). The per-request
//! timeout covers connect, TLS, sending, the response head and the capped body
//! read; running out of it at any point is `ErrorCode::Timeout`.
//!
//! Failure messages are short and never contain request headers or bodies (they
//! carry signatures) nor the URL's path or query; nothing here logs them either.

use std::error::Error as StdError;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use url::Url;

use crate::domain::limits::MAX_RESPONSE_CAPTURE_BYTES;
use crate::domain::{ErrorCode, Timestamp};
use crate::ports::sender::{EndpointResponse, OutgoingWebhook, SendFailure, WebhookSender};
use crate::ssrf::{AddressPolicy, BlockedReason, HostResolver, SystemResolver, check_host};

/// How long an idle pooled connection is kept for the next delivery.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle keep-alive connections kept per host. A burst can open one
/// connection per delivery in flight, and each idle one holds ~25 KiB of
/// buffers and channel state; beyond this many, a returned connection is
/// closed instead of kept.
const POOL_MAX_IDLE_PER_HOST: usize = 64;
/// Longest failure message (characters).
const MAX_MESSAGE_CHARS: usize = 300;

/// The outbound webhook client. Cheap to share (`Arc`); build it once per process
/// so connections are pooled across deliveries.
pub struct HttpSender {
    client: std::sync::OnceLock<reqwest::Client>,
    /// How to build the client when it is built on first use ([`HttpSender::lazy`]).
    deferred: Option<(Arc<dyn HostResolver>, String)>,
    policy: AddressPolicy,
}

impl std::fmt::Debug for HttpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSender").field("policy", &self.policy).finish_non_exhaustive()
    }
}

/// The HTTP client could not be built (TLS roots or configuration).
#[derive(Debug, thiserror::Error)]
#[error("could not build the HTTP client: {0}")]
pub struct SenderBuildError(String);

impl HttpSender {
    /// Builds the client. Panics if the TLS stack cannot be initialised; use
    /// [`HttpSender::try_new`] to handle that.
    pub fn new(policy: AddressPolicy, resolver: Arc<dyn HostResolver>, user_agent: &str) -> Self {
        Self::try_new(policy, resolver, user_agent).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Resolves with the operating system's resolver.
    pub fn system(policy: AddressPolicy, user_agent: &str) -> Self {
        Self::new(policy, Arc::new(SystemResolver), user_agent)
    }

    pub fn try_new(
        policy: AddressPolicy,
        resolver: Arc<dyn HostResolver>,
        user_agent: &str,
    ) -> Result<Self, SenderBuildError> {
        let client = build_client(policy, resolver, user_agent)?;
        Ok(Self { client: std::sync::OnceLock::from(client), deferred: None, policy })
    }

    /// Builds the client on the first delivery instead of now: the TLS set-up
    /// (loading the trust roots) leaves the Lambda cold start. A client that
    /// cannot be built fails each delivery (retried) with the reason.
    pub fn lazy(policy: AddressPolicy, resolver: Arc<dyn HostResolver>, user_agent: &str) -> Self {
        Self { client: std::sync::OnceLock::new(), deferred: Some((resolver, user_agent.to_string())), policy }
    }

    fn client(&self) -> Result<&reqwest::Client, SendFailure> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let (resolver, user_agent) = self.deferred.as_ref().expect("an eager sender has its client");
        let client = build_client(self.policy, Arc::clone(resolver), user_agent)
            .map_err(|e| failure(ErrorCode::Io, e.to_string()))?;
        Ok(self.client.get_or_init(|| client))
    }
}

fn build_client(
    policy: AddressPolicy,
    resolver: Arc<dyn HostResolver>,
    user_agent: &str,
) -> Result<reqwest::Client, SenderBuildError> {
    reqwest::Client::builder()
        .user_agent(user_agent)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .referer(false)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .tcp_nodelay(true)
        .dns_resolver(Arc::new(PolicyResolver { resolver, policy }))
        .build()
        .map_err(|e| SenderBuildError(root_message(&e).unwrap_or_else(|| "unknown error".into())))
}

impl HttpSender {
    pub fn policy(&self) -> AddressPolicy {
        self.policy
    }

    /// Everything that can be refused without touching the network.
    fn prepare(&self, request: OutgoingWebhook) -> Result<reqwest::Request, SendFailure> {
        let url = Url::parse(&request.url)
            .map_err(|e| failure(ErrorCode::Blocked, format!("endpoint URL is not valid: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(failure(ErrorCode::Blocked, "endpoint URL must use http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(failure(ErrorCode::Blocked, "endpoint URL must not contain credentials"));
        }
        let host = url.host().ok_or_else(|| failure(ErrorCode::Blocked, "endpoint URL has no host"))?;
        // reqwest connects to IP literals without calling the resolver.
        check_host(&host, &self.policy).map_err(|reason| blocked(&host.to_string(), reason))?;

        let mut headers = HeaderMap::with_capacity(request.headers.len() + 1);
        for (name, value) in &request.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| failure(ErrorCode::Io, "a request header name is not valid"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| failure(ErrorCode::Io, format!("the value of request header {header} is not valid")))?;
            headers.append(header, value);
        }
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        self.client()?
            .post(url)
            .headers(headers)
            .body(request.body)
            .build()
            .map_err(|e| failure(ErrorCode::Io, format!("could not build the request: {}", describe(&e))))
    }

    async fn exchange(&self, request: reqwest::Request) -> Result<EndpointResponse, SendFailure> {
        let mut response = self.client()?.execute(request).await.map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let body = read_capped(&mut response).await;
        // Dropping an unfinished response closes its connection instead of
        // draining it back into the pool.
        drop(response);
        Ok(EndpointResponse { status, body, retry_after })
    }
}

#[async_trait::async_trait]
impl WebhookSender for HttpSender {
    async fn send(&self, request: OutgoingWebhook) -> Result<EndpointResponse, SendFailure> {
        let timeout = request.timeout;
        let result = match self.prepare(request) {
            Ok(prepared) => match tokio::time::timeout(timeout, self.exchange(prepared)).await {
                Ok(result) => result,
                Err(_) => {
                    Err(failure(ErrorCode::Timeout, format!("no complete response within {}", human_duration(timeout))))
                }
            },
            Err(refused) => Err(refused),
        };
        if let Err(f) = &result {
            tracing::debug!(code = %f.code, message = %f.message, "webhook send failed");
        }
        result
    }
}

/// Reads at most [`MAX_RESPONSE_CAPTURE_BYTES`] of the body, chunk by chunk. A
/// body error after some bytes keeps what was read (the status already arrived).
async fn read_capped(response: &mut reqwest::Response) -> Option<String> {
    let mut captured: Vec<u8> = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_CAPTURE_BYTES - captured.len();
                captured.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if captured.len() >= MAX_RESPONSE_CAPTURE_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %describe(&e), captured = captured.len(), "response body ended early");
                break;
            }
        }
    }
    capture_text(captured)
}

/// Lossy UTF-8 of the captured bytes, `None` when empty. A multi-byte character
/// cut by the cap is dropped rather than shown as U+FFFD, and the text never
/// exceeds the cap in bytes (replacement characters are longer than what they
/// replace).
fn capture_text(mut bytes: Vec<u8>) -> Option<String> {
    if bytes.len() >= MAX_RESPONSE_CAPTURE_BYTES {
        bytes.truncate(complete_utf8_prefix(&bytes));
    }
    if bytes.is_empty() {
        return None;
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if text.len() > MAX_RESPONSE_CAPTURE_BYTES {
        let mut end = MAX_RESPONSE_CAPTURE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    Some(text)
}

/// Length of `bytes` without a trailing, incomplete UTF-8 sequence.
fn complete_utf8_prefix(bytes: &[u8]) -> usize {
    let n = bytes.len();
    for back in 1..=n.min(4) {
        let byte = bytes[n - back];
        if byte & 0xc0 == 0x80 {
            continue; // continuation byte: keep looking for the lead
        }
        let needed = match byte {
            0xf0.. => 4,
            0xe0.. => 3,
            0xc0.. => 2,
            _ => 1,
        };
        return if needed > back { n - back } else { n };
    }
    n
}

/// `Retry-After` as a delay: delta-seconds (`120`) or an HTTP-date (IMF-fixdate,
/// obsolete RFC 850 or asctime form) relative to `now`; a date in the past is a
/// zero delay. `None` when the value is neither.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX)));
    }
    const HTTP_DATE_FORMATS: [&str; 3] = [
        "%a, %d %b %Y %H:%M:%S GMT", // IMF-fixdate
        "%A, %d-%b-%y %H:%M:%S GMT", // RFC 850
        "%a %b %e %H:%M:%S %Y",      // asctime
    ];
    let at = HTTP_DATE_FORMATS
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(value, format).ok())?
        .and_utc();
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// Resolves through the [`HostResolver`], then refuses the name if any address is
/// blocked by the policy.
struct PolicyResolver {
    resolver: Arc<dyn HostResolver>,
    policy: AddressPolicy,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = Arc::clone(&self.resolver);
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest substitutes the URL's (or the scheme's) port.
            let addrs = resolver
                .resolve(&host, 0)
                .await
                .map_err(|source| ResolveError::Failed { host: host.clone(), source })?;
            if addrs.is_empty() {
                return Err(ResolveError::NoAddresses { host }.into());
            }
            if let Some((ip, reason)) =
                addrs.iter().find_map(|a| policy.check_ip(a.ip()).err().map(|reason| (a.ip(), reason)))
            {
                return Err(ResolveError::Blocked { host, ip, reason }.into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Marker errors from [`PolicyResolver`], found again in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
enum ResolveError {
    #[error("could not resolve {host}: {source}")]
    Failed { host: String, source: io::Error },
    #[error("{host} has no addresses")]
    NoAddresses { host: String },
    #[error("{host} resolves to {ip}, which is in a blocked address range: {reason}")]
    Blocked { host: String, ip: IpAddr, reason: BlockedReason },
}

fn failure(code: ErrorCode, message: impl Into<String>) -> SendFailure {
    let mut message: String = message.into();
    if message.chars().count() > MAX_MESSAGE_CHARS {
        message = message.chars().take(MAX_MESSAGE_CHARS - 1).collect::<String>() + "…";
    }
    SendFailure { code, message }
}

fn blocked(host: &str, reason: BlockedReason) -> SendFailure {
    failure(ErrorCode::Blocked, format!("{host} is in a blocked address range: {reason}"))
}

fn chain<'a>(err: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn StdError + 'static)| (*e).source())
}

/// The innermost cause's message. The outer `reqwest::Error` is skipped: its
/// `Display` contains the full URL (path and query may hold tokens).
fn root_message(err: &reqwest::Error) -> Option<String> {
    chain(err).skip(1).last().map(|e| e.to_string())
}

fn describe(err: &reqwest::Error) -> String {
    root_message(err).unwrap_or_else(|| {
        if err.is_body() || err.is_decode() { "error reading the response body".into() } else { "request error".into() }
    })
}

/// Maps a reqwest error from sending (before a response head arrived) to a code.
fn classify(err: &reqwest::Error) -> SendFailure {
    for cause in chain(err) {
        if let Some(resolve) = cause.downcast_ref::<ResolveError>() {
            let code = match resolve {
                ResolveError::Blocked { .. } => ErrorCode::Blocked,
                ResolveError::Failed { .. } | ResolveError::NoAddresses { .. } => ErrorCode::Dns,
            };
            return failure(code, resolve.to_string());
        }
    }
    if err.is_timeout() || io_kinds(err).any(|k| k == io::ErrorKind::TimedOut) {
        return failure(ErrorCode::Timeout, format!("timed out: {}", describe(err)));
    }
    if err.is_connect() {
        return classify_connect(err);
    }
    failure(ErrorCode::Io, format!("connection lost before a response arrived: {}", describe(err)))
}

fn io_kinds<'a>(err: &'a reqwest::Error) -> impl Iterator<Item = io::ErrorKind> + 'a {
    chain(err).filter_map(|e| e.downcast_ref::<io::Error>()).map(|e| e.kind())
}

/// Connector errors: TCP connect failures → `Connect`, handshake failures → `Tls`.
fn classify_connect(err: &reqwest::Error) -> SendFailure {
    use io::ErrorKind::*;
    let tcp_level = io_kinds(err).any(|k| {
        matches!(
            k,
            ConnectionRefused
                | ConnectionReset
                | ConnectionAborted
                | NotConnected
                | AddrInUse
                | AddrNotAvailable
                | NetworkUnreachable
                | HostUnreachable
                | NetworkDown
        )
    });
    if tcp_level {
        return failure(ErrorCode::Connect, format!("could not connect: {}", describe(err)));
    }
    // The TLS stack reports handshake and certificate failures as InvalidData (or
    // UnexpectedEof when the peer hangs up mid-handshake); a TCP connect never
    // produces either.
    let tls_kind = io_kinds(err).any(|k| matches!(k, InvalidData | UnexpectedEof));
    let tls_words = chain(err).skip(1).any(|e| {
        let text = e.to_string().to_ascii_lowercase();
        ["tls", "certificate", "handshake", "alert", "corrupt message"].iter().any(|w| text.contains(w))
    });
    if tls_kind || tls_words {
        return failure(ErrorCode::Tls, format!("TLS handshake failed: {}", describe(err)));
    }
    failure(ErrorCode::Connect, format!("could not connect: {}", describe(err)))
}

fn human_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2015, 10, 21, 7, 28, 0).unwrap()
    }

    #[test]
    fn given_delta_seconds_when_parsing_retry_after_then_that_many_seconds() {
        assert_eq!(parse_retry_after("7", now()), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 120 ", now()), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("0", now()), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999999999999999999999", now()), Some(Duration::from_secs(u64::MAX)));
    }

    #[test]
    fn given_http_dates_when_parsing_retry_after_then_the_delay_until_then() {
        let minute = Some(Duration::from_secs(60));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now()), minute);
        assert_eq!(parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now()), minute);
        assert_eq!(parse_retry_after("Wed Oct 21 07:29:00 2015", now()), minute);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now()), Some(Duration::ZERO));
    }

    #[test]
    fn given_garbage_when_parsing_retry_after_then_none() {
        for value in ["", "soon", "-5", "1.5", "7s", "Wed, 21 Oct 2015 07:29:00"] {
            assert_eq!(parse_retry_after(value, now()), None, "{value:?}");
        }
    }

    #[test]
    fn given_captured_bytes_when_converted_then_lossy_capped_and_none_when_empty() {
        assert_eq!(capture_text(Vec::new()), None);
        assert_eq!(capture_text(b"ok".to_vec()).as_deref(), Some("ok"));
        assert_eq!(capture_text(vec![b'a', 0xff, b'b']).as_deref(), Some("a\u{fffd}b"));
        // A 3-byte character cut by the cap is dropped, not replaced.
        let mut cut = vec![b'x'; MAX_RESPONSE_CAPTURE_BYTES - 2];
        cut.extend_from_slice(&"€".as_bytes()[..2]);
        assert_eq!(capture_text(cut).map(|s| s.len()), Some(MAX_RESPONSE_CAPTURE_BYTES - 2));
        // Invalid bytes never make the text longer than the cap.
        let invalid = vec![0xff; MAX_RESPONSE_CAPTURE_BYTES];
        assert!(capture_text(invalid).unwrap().len() <= MAX_RESPONSE_CAPTURE_BYTES);
    }

    #[test]
    fn given_long_messages_when_building_a_failure_then_they_are_truncated() {
        let f = failure(ErrorCode::Io, "x".repeat(1000));
        assert_eq!(f.message.chars().count(), MAX_MESSAGE_CHARS);
    }
}
