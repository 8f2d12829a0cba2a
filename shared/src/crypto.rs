//! Secrets at rest: API keys are hashed (SHA-256), endpoint signing secrets
//! are encrypted with the data key (AES-256-GCM).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const SEALED_PREFIX: &str = "v1:";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("sealed secret is malformed")]
    Malformed,
    #[error("sealed secret does not open with this data key")]
    WrongKey,
}

/// Encrypts and decrypts endpoint signing secrets with the data key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox { .. }")
    }
}

impl SecretBox {
    pub fn new(data_key: &[u8; 32]) -> Self {
        SecretBox { cipher: Aes256Gcm::new_from_slice(data_key).expect("32-byte key") }
    }

    /// `v1:` + base64(nonce ‖ ciphertext ‖ tag); a fresh random nonce each time.
    pub fn seal(&self, plaintext: &str) -> String {
        let mut nonce_bytes = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce_bytes);
        let nonce = Nonce::from(nonce_bytes);
        let ciphertext = self.cipher.encrypt(&nonce, plaintext.as_bytes()).expect("AES-GCM encryption cannot fail");
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed))
    }

    pub fn open(&self, sealed: &str) -> Result<String, CryptoError> {
        let encoded = sealed.strip_prefix(SEALED_PREFIX).ok_or(CryptoError::Malformed)?;
        let raw = STANDARD.decode(encoded).map_err(|_| CryptoError::Malformed)?;
        if raw.len() < 12 + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce_bytes, ciphertext) = raw.split_at(12);
        let nonce_bytes: [u8; 12] = nonce_bytes.try_into().map_err(|_| CryptoError::Malformed)?;
        let plaintext =
            self.cipher.decrypt(&Nonce::from(nonce_bytes), ciphertext).map_err(|_| CryptoError::WrongKey)?;
        String::from_utf8(plaintext).map_err(|_| CryptoError::Malformed)
    }
}

/// Hex SHA-256, the only form in which API keys are stored.
pub fn sha256_hex(input: &[u8]) -> String {
    let digest = Sha256::digest(input);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `len` random bytes, URL-safe base64 without padding.
pub fn random_token(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// Compares two secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_sealed_secret_when_opened_with_the_same_key_then_it_round_trips() {
        let secret_box = SecretBox::new(&[7u8; 32]);
        let sealed = secret_box.seal("whsec_abc");
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(secret_box.open(&sealed).unwrap(), "whsec_abc");
        assert_ne!(sealed, secret_box.seal("whsec_abc"), "nonce must be fresh");
    }

    #[test]
    fn given_another_data_key_when_opening_then_it_fails() {
        let sealed = SecretBox::new(&[7u8; 32]).seal("whsec_abc");
        assert!(matches!(SecretBox::new(&[8u8; 32]).open(&sealed), Err(CryptoError::WrongKey)));
        assert!(matches!(SecretBox::new(&[7u8; 32]).open("v1:!!"), Err(CryptoError::Malformed)));
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
