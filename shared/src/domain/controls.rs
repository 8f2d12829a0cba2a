//! Per-endpoint delivery controls: ordering, throttling, circuit breaking,
//! payload filters and the signature schemes an endpoint receives.

use serde::{Deserialize, Serialize};

use crate::filter::PayloadFilter;

/// Which Standard Webhooks signatures an endpoint's requests carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum SignatureScheme {
    /// `v1,<base64 HMAC-SHA256>` with the endpoint's `whsec_` secret.
    #[serde(rename = "v1")]
    HmacSha256,
    /// `v1a,<base64 Ed25519>` with the endpoint's `whsk_` key; receivers
    /// verify with the public `whpk_` key and hold no secret.
    #[serde(rename = "v1a")]
    Ed25519,
}

impl SignatureScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureScheme::HmacSha256 => "v1",
            SignatureScheme::Ed25519 => "v1a",
        }
    }
}

/// The circuit breaker's settings. The breaker opens when, within one
/// window, at least `min_requests` attempts were made and at least
/// `failure_ratio` of them failed; while open, deliveries wait (no attempt is
/// spent); after `open_secs` one probe is let through (half-open); its success
/// closes the breaker, its failure opens it again for twice as long (up to 32×).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreakerSettings {
    pub enabled: bool,
    /// 0.01 – 1.0.
    pub failure_ratio: f64,
    /// 1 – 10,000 attempts in the window before the ratio counts.
    pub min_requests: u32,
    /// 1 – 3,600.
    pub window_secs: u32,
    /// 1 – 3,600: how long the breaker stays open before a probe.
    pub open_secs: u32,
}

impl Default for CircuitBreakerSettings {
    fn default() -> Self {
        CircuitBreakerSettings { enabled: true, failure_ratio: 0.5, min_requests: 20, window_secs: 60, open_secs: 30 }
    }
}

/// The delivery controls an endpoint carries, as the API shows them. Every
/// field has a default, so endpoints created before they existed read back
/// as unordered, unthrottled, unfiltered, HMAC-signed, breaker on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryControls {
    /// Deliver in publish order, one at a time; a failing delivery holds the
    /// later ones back (head-of-line blocking).
    #[serde(default)]
    pub ordered: bool,
    /// At most this many deliveries per second; the rest wait, none fails for it.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerSettings,
    /// Only events whose payload matches are delivered here (docs/FILTERS.md).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<PayloadFilter>,
    /// Signatures each request carries; at least one.
    #[serde(default = "default_schemes")]
    pub signature_schemes: Vec<SignatureScheme>,
    /// The `whpk_` Ed25519 public key receivers verify `v1a` signatures with.
    #[serde(default)]
    pub public_key: Option<String>,
}

fn default_schemes() -> Vec<SignatureScheme> {
    vec![SignatureScheme::HmacSha256]
}

impl Default for DeliveryControls {
    fn default() -> Self {
        DeliveryControls {
            ordered: false,
            rate_limit: None,
            circuit_breaker: CircuitBreakerSettings::default(),
            filter: None,
            signature_schemes: default_schemes(),
            public_key: None,
        }
    }
}

impl DeliveryControls {
    pub fn signs_with(&self, scheme: SignatureScheme) -> bool {
        self.signature_schemes.contains(&scheme)
    }
}

/// An endpoint's Ed25519 signing keys, encrypted with the data key like its
/// HMAC secret. Never shown by the API (only the public key is).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeys {
    /// `whsk_` key, encrypted (`crypto::SecretBox`).
    #[serde(default)]
    pub ed25519_encrypted: Option<String>,
    /// The rotated-out `whsk_` key, signing beside the new one until the
    /// endpoint's `previous_secret_expires_at`.
    #[serde(default)]
    pub previous_ed25519_encrypted: Option<String>,
}

/// What an adapter stores for the controls: one JSON document, so adding a
/// control never needs a new column or attribute.
#[derive(Serialize, Deserialize)]
struct StoredControls {
    #[serde(flatten)]
    controls: DeliveryControls,
    #[serde(default)]
    keys: SigningKeys,
}

/// The stored form of an endpoint's controls and keys (a JSON document).
pub fn controls_to_stored(controls: &DeliveryControls, keys: &SigningKeys) -> String {
    serde_json::to_string(&StoredControls { controls: controls.clone(), keys: keys.clone() }).expect("serialisable")
}

/// Reads [`controls_to_stored`]'s document; `None`/empty means all defaults.
pub fn controls_from_stored(stored: Option<&str>) -> Result<(DeliveryControls, SigningKeys), String> {
    match stored {
        None | Some("") => Ok((DeliveryControls::default(), SigningKeys::default())),
        Some(text) => {
            let stored: StoredControls = serde_json::from_str(text).map_err(|e| format!("endpoint controls: {e}"))?;
            Ok((stored.controls, stored.keys))
        }
    }
}
