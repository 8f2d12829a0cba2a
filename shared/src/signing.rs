//! Standard Webhooks 1.0 signatures: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
//! where the key is the base64-decoded part of the secret after `whsec_`, and the
//! asymmetric `v1a,<base64 Ed25519 signature>` over the same content, signed with a
//! `whsk_` key and verified with its `whpk_` public key.
//!
//! Key formats (the spec says only "base64 encoded, prefixed with `whsk_` for the
//! secret key, and `whpk_` for the public key"; the byte layout is Svix's, whose
//! server implements the scheme): `whsk_` + standard base64 (padded) of the 64-byte
//! key pair, the 32-byte seed followed by the 32-byte public key (libsodium's and
//! Go's private key layout); `whpk_` + standard base64 of the 32-byte public key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::crypto::{constant_time_eq, random_bytes};

pub const SECRET_PREFIX: &str = "whsec_";
/// Prefix of an Ed25519 signing (secret) key; only the sender holds it.
pub const SIGNING_KEY_PREFIX: &str = "whsk_";
/// Prefix of an Ed25519 public key, what receivers verify `v1a` signatures with.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";
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
    #[error("signing key must be whsk_ followed by base64 of a 64-byte Ed25519 key pair (seed, then public key)")]
    InvalidSigningKey,
    #[error("public key must be whpk_ followed by base64 of a 32-byte Ed25519 public key")]
    InvalidPublicKey,
    #[error("no valid v1a signature")]
    NoMatchingEd25519Signature,
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
    signature_header_with(keys, &[], msg_id, timestamp, body)
}

/// The `webhook-signature` header with both schemes: a `v1,` signature per
/// HMAC key, then a `v1a,` signature per Ed25519 key, space-separated.
pub fn signature_header_with(
    hmac_keys: &[Vec<u8>],
    ed25519_keys: &[SigningKey],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let v1 = hmac_keys.iter().map(|key| sign_payload(key, msg_id, timestamp, body));
    let v1a = ed25519_keys.iter().map(|key| sign_payload_ed25519(key, msg_id, timestamp, body));
    v1.chain(v1a).collect::<Vec<_>>().join(" ")
}

/// A fresh `whsk_` key: an Ed25519 key pair from 32 random bytes.
pub fn generate_ed25519_key() -> String {
    let key = SigningKey::from_bytes(&random_bytes::<32>());
    format!("{SIGNING_KEY_PREFIX}{}", STANDARD.encode(key.to_keypair_bytes()))
}

/// The Ed25519 signing key inside a `whsk_` key; the public half must match the seed.
pub fn decode_ed25519_key(secret: &str) -> Result<SigningKey, SigningError> {
    let encoded = secret.strip_prefix(SIGNING_KEY_PREFIX).ok_or(SigningError::InvalidSigningKey)?;
    let bytes = STANDARD.decode(encoded).map_err(|_| SigningError::InvalidSigningKey)?;
    let pair: &[u8; 64] = bytes.as_slice().try_into().map_err(|_| SigningError::InvalidSigningKey)?;
    SigningKey::from_keypair_bytes(pair).map_err(|_| SigningError::InvalidSigningKey)
}

/// The `whpk_` public key of a `whsk_` key, to give to receivers.
pub fn ed25519_public_key(secret: &str) -> Result<String, SigningError> {
    let key = decode_ed25519_key(secret)?;
    Ok(format!("{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(key.verifying_key().as_bytes())))
}

/// The Ed25519 public key inside a `whpk_` key.
pub fn decode_ed25519_public_key(public_key: &str) -> Result<VerifyingKey, SigningError> {
    let encoded = public_key.strip_prefix(PUBLIC_KEY_PREFIX).ok_or(SigningError::InvalidPublicKey)?;
    let bytes = STANDARD.decode(encoded).map_err(|_| SigningError::InvalidPublicKey)?;
    let bytes: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| SigningError::InvalidPublicKey)?;
    VerifyingKey::from_bytes(bytes).map_err(|_| SigningError::InvalidPublicKey)
}

/// What both schemes sign: `{id}.{timestamp}.{body}`.
fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let timestamp = timestamp.to_string();
    let mut content = Vec::with_capacity(msg_id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// One `v1a,<base64>` Ed25519 signature of the message.
pub fn sign_payload_ed25519(key: &SigningKey, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let signature = key.sign(&signed_content(msg_id, timestamp, body));
    format!("v1a,{}", STANDARD.encode(signature.to_bytes()))
}

/// The signed timestamp is within `tolerance_secs` of `now`. Checked
/// arithmetic: the timestamp comes from a request header, so it may be
/// anything (an `i64::MIN` would overflow a plain subtraction).
fn check_timestamp(timestamp: i64, now: i64, tolerance_secs: i64) -> Result<(), SigningError> {
    if now.checked_sub(timestamp).and_then(i64::checked_abs).is_none_or(|skew| skew > tolerance_secs) {
        return Err(SigningError::TimestampOutOfTolerance);
    }
    Ok(())
}

/// Receiver-side check with the `whpk_` public key: any `v1a,` signature in
/// the header verifies (strictly: no malleable or small-order signatures) and
/// the timestamp is within `tolerance_secs` of `now`. `v1,` entries are ignored.
pub fn verify_signature_ed25519(
    public_key: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    signature_header: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SigningError> {
    check_timestamp(timestamp, now, tolerance_secs)?;
    let key = decode_ed25519_public_key(public_key)?;
    let content = signed_content(msg_id, timestamp, body);
    let matched = signature_header
        .split(' ')
        .filter_map(|candidate| candidate.strip_prefix("v1a,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .filter_map(|bytes| Signature::from_slice(&bytes).ok())
        .any(|signature| key.verify_strict(&content, &signature).is_ok());
    if matched { Ok(()) } else { Err(SigningError::NoMatchingEd25519Signature) }
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
    check_timestamp(timestamp, now, tolerance_secs)?;
    let key = decode_secret(secret)?;
    let expected = sign_payload(&key, msg_id, timestamp, body);
    let matched = signature_header
        .split(' ')
        .filter(|candidate| candidate.starts_with("v1,"))
        .any(|candidate| constant_time_eq(candidate.as_bytes(), expected.as_bytes()));
    if matched { Ok(()) } else { Err(SigningError::NoMatchingSignature) }
}

/// Receiver-side check with whichever key the receiver holds: a `whsec_`
/// secret checks the `v1` (HMAC) signatures, a `whpk_` public key the `v1a`
/// (Ed25519) ones.
pub fn verify_with_key(
    key: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    signature_header: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SigningError> {
    if key.starts_with(PUBLIC_KEY_PREFIX) {
        verify_signature_ed25519(key, msg_id, timestamp, body, signature_header, now, tolerance_secs)
    } else {
        verify_signature(key, msg_id, timestamp, body, signature_header, now, tolerance_secs)
    }
}

/// Checks that `key` is a usable `whsec_` secret or `whpk_` public key.
pub fn check_verification_key(key: &str) -> Result<(), SigningError> {
    if key.starts_with(PUBLIC_KEY_PREFIX) {
        decode_ed25519_public_key(key).map(|_| ())
    } else {
        decode_secret(key).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The published test vector of the Standard Webhooks specification
    // (its example secret, message and signature): public, not a credential.
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
        // A hostile header's timestamp does not overflow the check.
        assert_eq!(
            verify_signature(SPEC_SECRET, SPEC_ID, i64::MIN, SPEC_BODY.as_bytes(), &header, SPEC_TS, 300),
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

    // Known answer for v1a, computed independently with Python's `cryptography`
    // (50.0.2, the copy in /work/main/.venv; nothing else involved):
    //   seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")  # RFC 8032 7.1 TEST 1
    //   sk = Ed25519PrivateKey.from_private_bytes(seed)
    //   pk = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)   # d75a9801...f707511a, as in RFC 8032
    //   "whsk_" + b64encode(seed + pk); "whpk_" + b64encode(pk)
    //   "v1a," + b64encode(sk.sign(b"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330." + b'{"test": 2432232314}'))
    const KAT_SEED: [u8; 32] = [
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49,
        0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
    ];
    const KAT_SIGNING_KEY: &str =
        "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2DXWpgBgrEKt9VL/tPJZAc6DuFy89qmIyWvAhpo9wdRGg==";
    const KAT_PUBLIC_KEY: &str = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    const KAT_SIG: &str =
        "v1a,fldxM4gAKugP6nnt1hdz3sgGfZ6d99nzrMFnZOELIxbzEHoVmAb2ADpkJK7zgPePmPsle0zV9jSeGlHFG2NVAw==";

    #[test]
    fn given_a_fixed_seed_when_signed_with_v1a_then_key_strings_and_signature_match_python() {
        // GIVEN the RFC 8032 seed and the specification's message
        let key = SigningKey::from_bytes(&KAT_SEED);
        // WHEN it is serialised and signs the message
        let serialised = format!("{SIGNING_KEY_PREFIX}{}", STANDARD.encode(key.to_keypair_bytes()));
        let signature = sign_payload_ed25519(&key, SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes());
        // THEN keys and signature are the ones Python computed
        assert_eq!(serialised, KAT_SIGNING_KEY);
        assert_eq!(ed25519_public_key(KAT_SIGNING_KEY).unwrap(), KAT_PUBLIC_KEY);
        assert_eq!(decode_ed25519_key(KAT_SIGNING_KEY).unwrap().to_bytes(), KAT_SEED);
        assert_eq!(signature, KAT_SIG);
        assert!(
            verify_signature_ed25519(KAT_PUBLIC_KEY, SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes(), KAT_SIG, SPEC_TS, 300)
                .is_ok()
        );
    }

    #[test]
    fn given_a_generated_key_when_signed_and_verified_then_it_round_trips() {
        // GIVEN a fresh whsk_ key and its whpk_ public key
        let secret = generate_ed25519_key();
        assert!(secret.starts_with(SIGNING_KEY_PREFIX));
        let public = ed25519_public_key(&secret).unwrap();
        assert!(public.starts_with(PUBLIC_KEY_PREFIX));
        // WHEN a message is signed with it
        let header = sign_payload_ed25519(&decode_ed25519_key(&secret).unwrap(), "msg_1", 100, b"{}");
        // THEN the public key verifies it, and another key does not
        assert!(header.starts_with("v1a,"));
        assert_eq!(verify_signature_ed25519(&public, "msg_1", 100, b"{}", &header, 100, 300), Ok(()));
        let stranger = ed25519_public_key(&generate_ed25519_key()).unwrap();
        assert_eq!(
            verify_signature_ed25519(&stranger, "msg_1", 100, b"{}", &header, 100, 300),
            Err(SigningError::NoMatchingEd25519Signature)
        );
    }

    #[test]
    fn given_a_tampered_message_when_verified_with_v1a_then_it_fails() {
        // GIVEN a valid v1a signature
        let key = SigningKey::from_bytes(&KAT_SEED);
        let header = sign_payload_ed25519(&key, "msg_1", 100, br#"{"amount":100}"#);
        let verify =
            |id: &str, ts: i64, body: &[u8]| verify_signature_ed25519(KAT_PUBLIC_KEY, id, ts, body, &header, 100, 300);
        assert_eq!(verify("msg_1", 100, br#"{"amount":100}"#), Ok(()));
        // WHEN the body, id or timestamp is changed THEN verification fails
        assert_eq!(verify("msg_1", 100, br#"{"amount":900}"#), Err(SigningError::NoMatchingEd25519Signature));
        assert_eq!(verify("msg_2", 100, br#"{"amount":100}"#), Err(SigningError::NoMatchingEd25519Signature));
        assert_eq!(verify("msg_1", 101, br#"{"amount":100}"#), Err(SigningError::NoMatchingEd25519Signature));
        // AND a stale timestamp fails before any signature is looked at
        assert_eq!(
            verify_signature_ed25519(KAT_PUBLIC_KEY, "msg_1", 100, b"{}", &header, 401, 300),
            Err(SigningError::TimestampOutOfTolerance)
        );
        assert_eq!(
            verify_signature_ed25519(KAT_PUBLIC_KEY, "msg_1", i64::MIN, b"{}", &header, 100, 300),
            Err(SigningError::TimestampOutOfTolerance)
        );
    }

    #[test]
    fn given_a_v1_only_header_when_verified_with_v1a_then_it_fails() {
        // GIVEN a header with only HMAC signatures
        let header = signature_header(&[decode_secret(SPEC_SECRET).unwrap()], SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes());
        // WHEN it is checked with a public key THEN no v1a signature is found
        assert_eq!(
            verify_signature_ed25519(KAT_PUBLIC_KEY, SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes(), &header, SPEC_TS, 300),
            Err(SigningError::NoMatchingEd25519Signature)
        );
        // AND a v1a entry carrying garbage is skipped, not an error
        let garbage = format!("{header} v1a,%%% v1a,{}", STANDARD.encode([0u8; 64]));
        assert_eq!(
            verify_signature_ed25519(KAT_PUBLIC_KEY, SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes(), &garbage, SPEC_TS, 300),
            Err(SigningError::NoMatchingEd25519Signature)
        );
    }

    #[test]
    fn given_both_schemes_in_one_header_then_each_verifies_under_its_own_scheme() {
        // GIVEN two HMAC keys and two Ed25519 keys (both rotations in flight)
        let (old_secret, new_secret) = (generate_secret(), generate_secret());
        let (old_key, new_key) = (generate_ed25519_key(), generate_ed25519_key());
        let hmac = vec![decode_secret(&new_secret).unwrap(), decode_secret(&old_secret).unwrap()];
        let ed = vec![decode_ed25519_key(&new_key).unwrap(), decode_ed25519_key(&old_key).unwrap()];
        // WHEN the header is built
        let header = signature_header_with(&hmac, &ed, "msg_1", 100, b"{}");
        // THEN it carries v1 first, then v1a, one per key
        let schemes: Vec<&str> = header.split(' ').map(|s| s.split(',').next().unwrap()).collect();
        assert_eq!(schemes, ["v1", "v1", "v1a", "v1a"]);
        // AND every key verifies under its scheme
        for secret in [&old_secret, &new_secret] {
            assert_eq!(verify_signature(secret, "msg_1", 100, b"{}", &header, 100, 300), Ok(()));
        }
        for key in [&old_key, &new_key] {
            let public = ed25519_public_key(key).unwrap();
            assert_eq!(verify_signature_ed25519(&public, "msg_1", 100, b"{}", &header, 100, 300), Ok(()));
        }
        // AND signature_header is the HMAC-only case
        assert_eq!(
            signature_header(&hmac, "msg_1", 100, b"{}"),
            signature_header_with(&hmac, &[], "msg_1", 100, b"{}")
        );
    }

    #[test]
    fn given_malformed_ed25519_keys_then_they_are_rejected() {
        // GIVEN keys with a wrong prefix, bad base64, wrong length, or a public half that does not match the seed
        let mut mismatched = SigningKey::from_bytes(&KAT_SEED).to_keypair_bytes();
        mismatched[63] ^= 1;
        let mismatched = format!("{SIGNING_KEY_PREFIX}{}", STANDARD.encode(mismatched));
        let seed_only = format!("{SIGNING_KEY_PREFIX}{}", STANDARD.encode(KAT_SEED));
        // WHEN decoded THEN each is refused
        for bad in [SPEC_SECRET, "whsk_%%%", "whsk_c2hvcnQ=", &seed_only, &mismatched] {
            assert_eq!(decode_ed25519_key(bad).err(), Some(SigningError::InvalidSigningKey), "{bad}");
            assert_eq!(ed25519_public_key(bad), Err(SigningError::InvalidSigningKey), "{bad}");
        }
        for bad in [KAT_SIGNING_KEY, "whpk_%%%", "whpk_c2hvcnQ=", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="] {
            assert_eq!(decode_ed25519_public_key(bad).err(), Some(SigningError::InvalidPublicKey), "{bad}");
            assert_eq!(
                verify_signature_ed25519(bad, "msg_1", 100, b"{}", KAT_SIG, 100, 300),
                Err(SigningError::InvalidPublicKey)
            );
        }
    }
}
