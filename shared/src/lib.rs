//! Skyhook's library crate: the domain, the service layer, the ports and their
//! adapters, Standard Webhooks signing and the HTTP routing shared verbatim by the
//! Lambda functions and by `skyhook serve`.
//!
//! The domain and service layer (`domain`, `service`, `ports`) know nothing of
//! Lambda, AWS or SQLite; everything outside them plugs in behind a port.

pub mod adapters;
pub mod api;
pub mod crypto;
pub mod domain;
pub mod filter;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod ports;
pub mod retry;
pub mod sender;
pub mod service;
pub mod signing;
pub mod ssrf;

/// Version reported in `user-agent` and `/v1/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
