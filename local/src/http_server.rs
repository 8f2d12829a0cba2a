//! Plain HTTP in front of the shared router: converts hyper requests to
//! `ApiRequest` and back. No endpoint logic lives here.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use skyhook::api::{self, ApiRequest, ApiResponse};
use skyhook::domain::limits::MAX_REQUEST_BYTES;
use skyhook::service::{ServiceError, Skyhook};
use tokio::net::TcpListener;
use tokio::sync::watch;

async fn to_api_request(request: Request<Incoming>) -> Result<ApiRequest, ServiceError> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|_| ServiceError::TooLarge { field: "body".into(), limit: MAX_REQUEST_BYTES })?
        .to_bytes();
    Ok(ApiRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        body,
    })
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
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of an oversized body was not read: close rather than reuse.
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
