//! Standard Webhooks 1.0 signatures: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
//! where the key is the base64-decoded part of the secret after `whsec_`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::crypto::{constant_time_eq, random_bytes};

pub const SECRET_PREFIX: &str = "whsec_";
/// Receivers should refuse timestamps further than this from their clock.
pub const DEFAULT_TOLERANCE_SECS: i64 = 5 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error("secret must be whsec_ followed by base64 of 24 to 64 bytes")]
    InvalidSecret,
    #[error("no valid v1 signature")]
    NoMatchingSignature,
    #[error("timestamp is outside the tolerance")]
    TimestampOutOfTolerance,
    #[error("missing or malformed webhook header: {0}")]
    MissingHeader(&'static str),
}

/// A fresh `whsec_` secret: 24 random bytes, as Svix and the Standard Webhooks libraries generate.
pub fn generate_secret() -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(random_bytes::<24>()))
}

/// The HMAC key inside a `whsec_` secret.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, SigningError> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or(SigningError::InvalidSecret)?;
    let key = STANDARD.decode(encoded).map_err(|_| SigningError::InvalidSecret)?;
    if !(24..=64).contains(&key.len()) {
        return Err(SigningError::InvalidSecret);
    }
    Ok(key)
}

/// One `v1,<base64>` signature of the message.
pub fn sign_payload(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header value: one signature per active key,
/// space-separated (two during a secret rotation).
pub fn signature_header(keys: &[Vec<u8>], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter().map(|key| sign_payload(key, msg_id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

/// Receiver-side check: any `v1,` signature in the header matches and the
/// timestamp is within `tolerance_secs` of `now`.
pub fn verify_signature(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    signature_header: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SigningError> {
    if (now - timestamp).abs() > tolerance_secs {
        return Err(SigningError::TimestampOutOfTolerance);
    }
    let key = decode_secret(secret)?;
    let expected = sign_payload(&key, msg_id, timestamp, body);
    let matched = signature_header
        .split(' ')
        .filter(|candidate| candidate.starts_with("v1,"))
        .any(|candidate| constant_time_eq(candidate.as_bytes(), expected.as_bytes()));
    if matched { Ok(()) } else { Err(SigningError::NoMatchingSignature) }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn given_the_specification_example_when_signed_then_the_signature_matches() {
        let key = decode_secret(SPEC_SECRET).unwrap();
        assert_eq!(sign_payload(&key, SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes()), SPEC_SIG);
    }

    #[test]
    fn given_two_keys_then_the_header_carries_both_and_either_verifies() {
        let old = generate_secret();
        let new = generate_secret();
        let keys = vec![decode_secret(&new).unwrap(), decode_secret(&old).unwrap()];
        let header = signature_header(&keys, "msg_1", 100, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify_signature(&old, "msg_1", 100, b"{}", &header, 100, 300).is_ok());
        assert!(verify_signature(&new, "msg_1", 100, b"{}", &header, 100, 300).is_ok());
        let stranger = generate_secret();
        assert_eq!(
            verify_signature(&stranger, "msg_1", 100, b"{}", &header, 100, 300),
            Err(SigningError::NoMatchingSignature)
        );
    }

    #[test]
    fn given_a_stale_timestamp_then_verification_fails() {
        let header = sign_payload(&decode_secret(SPEC_SECRET).unwrap(), SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes());
        assert_eq!(
            verify_signature(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes(), &header, SPEC_TS + 301, 300),
            Err(SigningError::TimestampOutOfTolerance)
        );
    }

    #[test]
    fn given_a_malformed_secret_then_it_is_rejected() {
        assert_eq!(decode_secret("whsec_%%%"), Err(SigningError::InvalidSecret));
        assert_eq!(decode_secret("abc"), Err(SigningError::InvalidSecret));
        assert_eq!(decode_secret("whsec_c2hvcnQ="), Err(SigningError::InvalidSecret));
        assert!(decode_secret(&generate_secret()).is_ok());
    }
}
