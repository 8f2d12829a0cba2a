//! Plain HTTP in front of the shared router: converts hyper requests to
//! `ApiRequest` and back. No endpoint logic lives here.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use skyhook::api::{self, ApiRequest, ApiResponse};
use skyhook::domain::limits::MAX_REQUEST_BYTES;
use skyhook::service::{ServiceError, Skyhook};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A body must arrive within this long once its headers have.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A request head must arrive within this long (slow clients hold no task forever).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);

async fn to_api_request(request: Request<Incoming>) -> Result<ApiRequest, ServiceError> {
    let too_large = || ServiceError::TooLarge { field: "body".into(), limit: MAX_REQUEST_BYTES };
    // Refuse an announced oversize body at once instead of reading up to the limit.
    let announced = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|len| len > MAX_REQUEST_BYTES as u64) {
        return Err(too_large());
    }
    let (parts, body) = request.into_parts();
    let collected = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, MAX_REQUEST_BYTES).collect())
        .await
        .map_err(|_| ServiceError::field("body", "was not received in time"))?;
    let body = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return Err(too_large()),
        Err(_) => return Err(ServiceError::field("body", "is malformed or was cut short")),
    };
    Ok(ApiRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: detached_headers(parts.headers),
        body: Bytes::copy_from_slice(&body),
    })
}

/// hyper's header values and body are slices of the connection's read
/// buffer; kept for the whole request (a publish waits for its fsync), they
/// make the connection allocate a second buffer for its keep-alive read.
/// Copies of a request's few hundred bytes free that buffer at once.
fn detached_headers(headers: http::HeaderMap) -> http::HeaderMap {
    let mut copy = http::HeaderMap::with_capacity(headers.len());
    let mut current = None;
    for (name, value) in headers {
        if let Some(name) = name {
            current = Some(name);
        }
        let Some(name) = current.clone() else { continue };
        let sensitive = value.is_sensitive();
        let mut detached = http::HeaderValue::from_bytes(value.as_bytes()).unwrap_or(value);
        detached.set_sensitive(sensitive);
        copy.append(name, detached);
    }
    copy
}

fn to_hyper(response: ApiResponse) -> Response<Full<Bytes>> {
    let mut out = Response::new(Full::new(response.body));
    *out.status_mut() = response.status;
    *out.headers_mut() = response.headers;
    out
}

async fn serve_one(service: Arc<Skyhook>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_string();
    let response = match to_api_request(request).await {
        Ok(api_request) => api::handle(&service, api_request).await,
        Err(err) => api::problem::response(&err, &path),
    };
    let mut response = to_hyper(response);
    if matches!(response.status(), StatusCode::PAYLOAD_TOO_LARGE | StatusCode::BAD_REQUEST) {
        // The rest of the body may not have been read: close rather than reuse.
        response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// Serves until `shutdown` flips, then lets in-flight requests finish.
pub async fn run(listener: TcpListener, service: Arc<Skyhook>, mut shutdown: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer): (_, SocketAddr) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = Arc::clone(&service);
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service_fn(move |req| serve_one(Arc::clone(&service), req)));
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {
            tracing::warn!("some connections did not close within 10 s");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_repeated_and_sensitive_headers_when_detached_then_every_value_and_flag_is_kept() {
        // GIVEN headers as hyper hands them over: a repeated one and a sensitive one
        let mut headers = http::HeaderMap::new();
        headers.append("x-tag", http::HeaderValue::from_static("a"));
        headers.append("x-tag", http::HeaderValue::from_static("b"));
        let mut auth = http::HeaderValue::from_static("Bearer sk_test");
        auth.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, auth);
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));

        // WHEN they are copied out of the read buffer
        let detached = detached_headers(headers.clone());

        // THEN the copy has the same values in the same order, and the key stays sensitive
        assert_eq!(detached, headers);
        let tags: Vec<_> = detached.get_all("x-tag").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(tags, ["a", "b"]);
        assert!(detached.get(http::header::AUTHORIZATION).unwrap().is_sensitive());
    }
}
