//! Unauthenticated routes: health and the OAuth2 token endpoint.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderValue, StatusCode, header};

use super::{ApiRequest, ApiResponse};
use crate::service::{ServiceError, ServiceResult, Skyhook};

pub(crate) async fn health(service: &Skyhook) -> ServiceResult<ApiResponse> {
    let backend = service.health().await?;
    Ok(ApiResponse::json(
        StatusCode::OK,
        &serde_json::json!({ "status": "ok", "version": crate::VERSION, "backend": backend }),
    ))
}

/// RFC 6749 §4.4: `grant_type=client_credentials`, client authenticated by
/// HTTP Basic or by `client_id`/`client_secret` in a form or JSON body.
pub(crate) async fn oauth_token(service: &Skyhook, request: &ApiRequest) -> ServiceResult<ApiResponse> {
    let content_type = request.header_str("content-type").unwrap_or("").to_ascii_lowercase();
    let fields: Vec<(String, String)> = if content_type.starts_with("application/json") {
        let value: serde_json::Value = serde_json::from_slice(&request.body)
            .map_err(|e| ServiceError::field("body", format!("is not valid JSON: {e}")))?;
        value
            .as_object()
            .ok_or_else(|| ServiceError::field("body", "must be a JSON object"))?
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .collect()
    } else {
        url::form_urlencoded::parse(&request.body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    };
    let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    match get("grant_type").as_deref() {
        Some("client_credentials") => {}
        Some(_) => return Err(ServiceError::field("grant_type", "unsupported_grant_type: only client_credentials")),
        None => return Err(ServiceError::field("grant_type", "is required (client_credentials)")),
    }
    let basic = request
        .header_str("authorization")
        .and_then(|auth| auth.strip_prefix("Basic ").or_else(|| auth.strip_prefix("basic ")))
        .and_then(|encoded| STANDARD.decode(encoded.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(id, secret)| (id.to_string(), secret.to_string())));
    let (client_id, client_secret) = match (basic, get("client_id"), get("client_secret")) {
        (Some(pair), _, _) => pair,
        (None, Some(id), Some(secret)) => (id, secret),
        _ => return Err(ServiceError::Unauthorized("invalid_client: send client_id and client_secret".into())),
    };
    let token = service.issue_access_token(&client_id, &client_secret, get("scope").as_deref()).await?;
    let mut response = ApiResponse::json(StatusCode::OK, &token);
    response.headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
