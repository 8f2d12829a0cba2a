//! The web console: static assets embedded in the binary (`shared/console/`).
//!
//! `GET /` is `index.html`, rewritten once so every asset URL carries the
//! asset's content hash (`/console/app.3f2a9c1d0b7e.js`): hashed URLs are
//! cached for a year as immutable, the index and unhashed names are
//! revalidated (`no-cache` + `ETag`). Every answer carries a strict
//! Content-Security-Policy (`'self'` only, no inline script or style), and
//! the console cannot be framed; the customer portal (`/?portal=…`) can be,
//! by https pages (and local development origins), so a SaaS can embed it.

use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::{ApiRequest, ApiResponse, Params, Resource, RouteOp, openapi, problem, routes};
use crate::crypto::sha256_hex;
use crate::service::{ServiceError, ServiceResult};

const INDEX_HTML: &str = include_str!("../../console/index.html");

/// Name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../console/app.js")),
    ("chart.js", "text/javascript; charset=utf-8", include_bytes!("../../console/chart.js")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../../console/app.css")),
    ("favicon.svg", "image/svg+xml", include_bytes!("../../console/favicon.svg")),
];

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

const CSP_BASE: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'";
/// The portal is meant to be embedded in the SaaS's own dashboard.
const PORTAL_FRAME_ANCESTORS: &str = "frame-ancestors 'self' https: http://localhost:* http://127.0.0.1:*";
const CONSOLE_FRAME_ANCESTORS: &str = "frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    /// `app.<hash>.js`
    hashed_name: String,
    content_type: &'static str,
    body: Bytes,
    etag: String,
}

struct Bundle {
    assets: Vec<Asset>,
    index: Bytes,
    index_etag: String,
}

fn hashed_name(name: &str, hash: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{hash}.{ext}"),
        None => format!("{name}.{hash}"),
    }
}

fn bundle() -> &'static Bundle {
    static BUNDLE: OnceLock<Bundle> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let mut index = INDEX_HTML.to_string();
        let assets: Vec<Asset> = ASSETS
            .iter()
            .map(|(name, content_type, body)| {
                let hash = sha256_hex(body)[..12].to_string();
                let hashed = hashed_name(name, &hash);
                index = index.replace(&format!("\"/console/{name}\""), &format!("\"/console/{hashed}\""));
                Asset {
                    name,
                    hashed_name: hashed,
                    content_type,
                    body: Bytes::from_static(body),
                    etag: format!("\"{hash}\""),
                }
            })
            .collect();
        let index_etag = format!("\"{}\"", &sha256_hex(index.as_bytes())[..16]);
        Bundle { assets, index: Bytes::from(index), index_etag }
    })
}

/// The headers every console answer carries.
fn security_headers(headers: &mut HeaderMap, frameable: bool) {
    let csp = format!("{CSP_BASE}; {}", if frameable { PORTAL_FRAME_ANCESTORS } else { CONSOLE_FRAME_ANCESTORS });
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_str(&csp).expect("ascii policy"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
    );
    if !frameable {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    }
}

fn not_modified(request: &ApiRequest, etag: &str) -> bool {
    request
        .headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

fn respond(
    request: &ApiRequest,
    content_type: &'static str,
    body: &Bytes,
    etag: &str,
    cache: &'static str,
    frameable: bool,
) -> ApiResponse {
    let mut headers = HeaderMap::new();
    security_headers(&mut headers, frameable);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::ETAG, HeaderValue::from_str(etag).expect("hex etag"));
    if not_modified(request, etag) {
        return ApiResponse { status: StatusCode::NOT_MODIFIED, headers, body: Bytes::new() };
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    ApiResponse { status: StatusCode::OK, headers, body: body.clone() }
}

fn is_portal(request: &ApiRequest) -> bool {
    url::form_urlencoded::parse(request.query.as_bytes()).any(|(key, _)| key == "portal")
}

pub(crate) fn handle(op: RouteOp, params: &Params, request: &ApiRequest) -> ServiceResult<ApiResponse> {
    let bundle = bundle();
    match op {
        RouteOp::ConsoleIndex => Ok(respond(
            request,
            "text/html; charset=utf-8",
            &bundle.index,
            &bundle.index_etag,
            REVALIDATE,
            is_portal(request),
        )),
        RouteOp::ConsoleAsset => {
            let wanted = params.get(0);
            let (asset, cache) = bundle
                .assets
                .iter()
                .find_map(|a| {
                    if a.hashed_name == wanted {
                        Some((a, IMMUTABLE))
                    } else if a.name == wanted {
                        Some((a, REVALIDATE))
                    } else {
                        None
                    }
                })
                .ok_or(ServiceError::NotFound("console asset"))?;
            // Assets load inside the portal's frame too.
            Ok(respond(request, asset.content_type, &asset.body, &asset.etag, cache, true))
        }
        _ => Err(ServiceError::NotFound("route")),
    }
}

/// Serves the console, the API reference and the OpenAPI document without a
/// service (no store, no secret): the Lambda `console` function. `None` when
/// the request is for none of those routes.
pub fn handle_static(request: &ApiRequest) -> Option<ApiResponse> {
    let result = match routes::find(&request.method, &request.path, Some(Resource::Console)) {
        Ok((route, params)) => match route.op {
            RouteOp::OpenApi | RouteOp::ApiReference => openapi::handle(route.op, request),
            _ => handle(route.op, &params, request),
        },
        Err(ServiceError::NotFound(_)) => return None,
        Err(err) => Err(err),
    };
    Some(result.unwrap_or_else(|err| problem::response(&err, &request.path)))
}

/// The URL path of an embedded asset as `index.html` references it.
#[cfg(test)]
fn console_asset_path(name: &str) -> Option<String> {
    bundle().assets.iter().find(|a| a.name == name).map(|a| format!("/console/{}", a.hashed_name))
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;

    fn get(path: &str) -> ApiResponse {
        handle_static(&ApiRequest::new(Method::GET, path)).expect("a console route")
    }

    fn header<'a>(response: &'a ApiResponse, name: &str) -> &'a str {
        response.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[test]
    fn given_the_index_then_it_references_hashed_assets_with_strict_headers() {
        let response = get("/");
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(header(&response, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&response, "cache-control"), "no-cache");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        assert_eq!(header(&response, "referrer-policy"), "no-referrer");
        assert_eq!(header(&response, "x-frame-options"), "DENY");
        let csp = header(&response, "content-security-policy");
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let html = std::str::from_utf8(&response.body).unwrap();
        let js = console_asset_path("app.js").unwrap();
        assert!(html.contains(&format!("\"{js}\"")), "{html}");
        assert!(!html.contains("\"/console/app.js\""));
    }

    #[test]
    fn given_a_portal_link_then_the_index_may_be_framed() {
        let response = get("/?portal=eyJ.x.y");
        assert!(header(&response, "content-security-policy").contains("frame-ancestors 'self' https:"));
        assert!(response.headers.get("x-frame-options").is_none());
    }

    #[test]
    fn given_a_hashed_asset_then_it_is_immutable_and_unhashed_names_revalidate() {
        for (name, content_type) in [
            ("app.js", "text/javascript; charset=utf-8"),
            ("app.css", "text/css; charset=utf-8"),
            ("favicon.svg", "image/svg+xml"),
        ] {
            let hashed = get(&console_asset_path(name).unwrap());
            assert_eq!(hashed.status, StatusCode::OK);
            assert_eq!(header(&hashed, "content-type"), content_type);
            assert_eq!(header(&hashed, "cache-control"), IMMUTABLE);
            let plain = get(&format!("/console/{name}"));
            assert_eq!(header(&plain, "cache-control"), "no-cache");
            assert_eq!(plain.body, hashed.body);
        }
    }

    #[test]
    fn given_an_unknown_or_stale_asset_then_it_is_a_404_problem() {
        for path in ["/console/nope.js", "/console/app.000000000000.js", "/console/..%2Fsecrets.json"] {
            let response = get(path);
            assert_eq!(response.status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(header(&response, "content-type"), "application/problem+json");
        }
    }

    #[test]
    fn given_a_matching_etag_then_it_is_304() {
        let first = get("/");
        let etag = header(&first, "etag").to_string();
        let again = handle_static(&ApiRequest::new(Method::GET, "/").header("if-none-match", &etag)).unwrap();
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
        assert!(again.body.is_empty());
    }

    #[test]
    fn given_an_api_route_then_handle_static_leaves_it_alone() {
        assert!(handle_static(&ApiRequest::new(Method::GET, "/v1/endpoints")).is_none());
        assert!(handle_static(&ApiRequest::new(Method::GET, "/v1/health")).is_none());
        let response = handle_static(&ApiRequest::new(Method::POST, "/")).unwrap();
        assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    }
}
