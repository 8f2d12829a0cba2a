//! `skyhook listen`: a local receiver that prints each webhook and checks its
//! Standard Webhooks signature — the receiving side, on a laptop.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use skyhook::signing::{DEFAULT_TOLERANCE_SECS, verify_with_key};
use tokio::net::TcpListener;

fn header<'a>(request: &'a http::request::Parts, name: &str) -> &'a str {
    request.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn receive(
    request: Request<Incoming>,
    secret: Option<String>,
    status: StatusCode,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, 1024 * 1024).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::PAYLOAD_TOO_LARGE)),
    };
    let id = header(&parts, "webhook-id");
    let timestamp = header(&parts, "webhook-timestamp");
    let signature = header(&parts, "webhook-signature");
    let verdict = match (&secret, timestamp.parse::<i64>()) {
        (None, _) => "signature not checked (no --secret)".to_string(),
        (Some(_), Err(_)) => "INVALID: missing webhook-timestamp".to_string(),
        (Some(secret), Ok(ts)) => {
            match verify_with_key(
                secret,
                id,
                ts,
                &body,
                signature,
                chrono::Utc::now().timestamp(),
                DEFAULT_TOLERANCE_SECS,
            ) {
                Ok(()) => "signature valid".to_string(),
                Err(err) => format!("INVALID signature: {err}"),
            }
        }
    };
    println!("{} {} webhook-id={} — {}", parts.method, parts.uri.path(), id, verdict);
    println!("{}", String::from_utf8_lossy(&body));
    let invalid = verdict.starts_with("INVALID");
    Ok(reply(if invalid { StatusCode::UNAUTHORIZED } else { status }))
}

fn reply(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

pub async fn run(address: SocketAddr, secret: Option<String>, status: u16) -> Result<(), String> {
    let status = StatusCode::from_u16(status).map_err(|_| format!("{status} is not an HTTP status"))?;
    if let Some(secret) = &secret {
        skyhook::signing::check_verification_key(secret).map_err(|e| format!("--secret: {e}"))?;
    }
    let listener = TcpListener::bind(address).await.map_err(|e| format!("cannot listen on {address}: {e}"))?;
    println!(
        "Listening for webhooks on http://{} (answering {})",
        listener.local_addr().map_err(|e| e.to_string())?,
        status.as_u16()
    );
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let secret = secret.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| receive(req, secret.clone(), status));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
