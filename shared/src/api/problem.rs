//! The one place where service errors become RFC 9457 problem+json.

use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;

use super::ApiResponse;
use crate::service::{FieldError, ServiceError};

#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// OAuth2 error code (RFC 6749 §5.2) on the token route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

fn kind(slug: &str) -> String {
    format!("urn:skyhook:problem:{slug}")
}

pub fn problem(err: &ServiceError, instance: &str) -> (Problem, HeaderMap) {
    let mut headers = HeaderMap::new();
    let (status, slug, title, detail, errors) = match err {
        ServiceError::Validation(errors) => {
            let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
            (StatusCode::BAD_REQUEST, "validation", "Invalid request", detail, errors.clone())
        }
        ServiceError::TooLarge { field, limit } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Request too large",
            err.to_string(),
            vec![FieldError::new(field.clone(), format!("must be at most {limit} bytes"))],
        ),
        ServiceError::Unauthorized(msg) => {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"skyhook\""));
            (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", msg.clone(), vec![])
        }
        ServiceError::Forbidden(msg) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden", msg.clone(), vec![]),
        ServiceError::NotFound(what) => {
            (StatusCode::NOT_FOUND, "not-found", "Not found", format!("no such {what}"), vec![])
        }
        ServiceError::MethodNotAllowed(allowed) => {
            if let Ok(value) = HeaderValue::from_str(allowed) {
                headers.insert(header::ALLOW, value);
            }
            (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed", err.to_string(), vec![])
        }
        ServiceError::Conflict(msg) => (StatusCode::CONFLICT, "conflict", "Conflict", msg.clone(), vec![]),
        ServiceError::UnsupportedMediaType(msg) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            msg.clone(),
            vec![FieldError::new("content-type", msg.clone())],
        ),
        ServiceError::RateLimited { retry_after } => {
            let secs = retry_after.as_secs().max(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            (StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests", format!("retry in {secs} s"), vec![])
        }
        ServiceError::Unavailable(msg) => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable", msg.clone(), vec![])
        }
        ServiceError::Internal(msg) => {
            // The detail stays in the logs; the caller gets no internals.
            tracing::error!(error = %msg, "internal error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "an internal error occurred".into(),
                vec![],
            )
        }
    };
    let error = match (err, instance) {
        (ServiceError::Unauthorized(_), "/v1/oauth/token") => Some("invalid_client"),
        (ServiceError::Validation(errors), "/v1/oauth/token") => {
            // RFC 6749 §5.2 codes; the service puts them first in the message.
            let first = errors.first().map(|e| e.message.as_str()).unwrap_or("");
            Some(
                ["invalid_scope", "unsupported_grant_type", "invalid_grant"]
                    .into_iter()
                    .find(|code| first.starts_with(code))
                    .unwrap_or("invalid_request"),
            )
        }
        _ => None,
    };
    let problem = Problem {
        kind: kind(slug),
        title,
        status: status.as_u16(),
        detail,
        instance: Some(instance.to_string()),
        errors,
        error,
    };
    (problem, headers)
}

pub fn response(err: &ServiceError, instance: &str) -> ApiResponse {
    let (problem, extra) = problem(err, instance);
    let mut response = ApiResponse::json(StatusCode::from_u16(problem.status).expect("valid status"), &problem);
    response.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response.headers.extend(extra);
    response
}
