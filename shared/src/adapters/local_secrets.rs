//! Secrets for the embedded backend: a `secrets.json` file in the data dir
//! (created with mode 0600 on first start), in the same JSON shape as the AWS
//! Secrets Manager secret.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::crypto::{random_bytes, random_token};
use crate::ports::{SecretMaterial, Secrets, SecretsError};

/// The secret's JSON document: `{"adminToken","dataKey","jwtKey"}`, keys base64.
///
/// `dataKey` and `jwtKey` may be left out: they are then derived from the
/// admin token (HMAC-SHA256 with distinct labels). That lets CloudFormation's
/// `GenerateSecretString`, which generates one field, create a working secret.
/// Pin both explicitly before ever rotating the admin token, or the endpoint
/// secrets sealed under the derived data key can no longer be opened.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretDocument {
    pub admin_token: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jwt_key: String,
}

fn derive_key(admin_token: &str, label: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(admin_token.as_bytes()).expect("any key length");
    mac.update(label.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

impl SecretDocument {
    pub fn generate() -> Self {
        SecretDocument {
            admin_token: format!("skyadm_{}", random_token(32)),
            data_key: STANDARD.encode(random_bytes::<32>()),
            jwt_key: STANDARD.encode(random_bytes::<32>()),
        }
    }

    pub fn parse(json: &str) -> Result<SecretMaterial, SecretsError> {
        let doc: SecretDocument =
            serde_json::from_str(json).map_err(|e| SecretsError::Malformed(format!("not the expected JSON: {e}")))?;
        doc.into_material()
    }

    pub fn into_material(mut self) -> Result<SecretMaterial, SecretsError> {
        if self.admin_token.len() < 16 {
            return Err(SecretsError::Malformed("adminToken must be at least 16 characters".into()));
        }
        if self.data_key.is_empty() {
            self.data_key = derive_key(&self.admin_token, "skyhook data key v1");
        }
        if self.jwt_key.is_empty() {
            self.jwt_key = derive_key(&self.admin_token, "skyhook jwt key v1");
        }
        let data_key: [u8; 32] = STANDARD
            .decode(&self.data_key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| SecretsError::Malformed("dataKey must be base64 of 32 bytes".into()))?;
        let jwt_key = STANDARD
            .decode(&self.jwt_key)
            .ok()
            .filter(|k| k.len() >= 32)
            .ok_or_else(|| SecretsError::Malformed("jwtKey must be base64 of at least 32 bytes".into()))?;
        Ok(SecretMaterial { admin_token: self.admin_token, data_key, jwt_key })
    }
}

/// Reads (or on first use creates) `secrets.json` in the data dir.
pub struct FileSecrets {
    path: PathBuf,
    admin_token_override: Option<String>,
}

impl FileSecrets {
    pub fn new(data_dir: &Path, admin_token_override: Option<String>) -> Self {
        FileSecrets { path: data_dir.join("secrets.json"), admin_token_override }
    }

    /// Creates the file when missing; `true` when it was created now.
    pub fn ensure(&self) -> Result<bool, SecretsError> {
        if self.path.exists() {
            return Ok(false);
        }
        let doc = SecretDocument::generate();
        let json = serde_json::to_string_pretty(&doc).expect("serialisable");
        write_private(&self.path, json.as_bytes())
            .map_err(|e| SecretsError::Unavailable(format!("cannot write {}: {e}", self.path.display())))?;
        Ok(true)
    }

    fn read(&self) -> Result<SecretMaterial, SecretsError> {
        let json = std::fs::read_to_string(&self.path)
            .map_err(|e| SecretsError::Unavailable(format!("cannot read {}: {e}", self.path.display())))?;
        let mut material = SecretDocument::parse(&json)?;
        if let Some(token) = &self.admin_token_override {
            material.admin_token = token.clone();
        }
        Ok(material)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[async_trait]
impl Secrets for FileSecrets {
    async fn load(&self) -> Result<SecretMaterial, SecretsError> {
        self.ensure()?;
        self.read()
    }
}

/// Fixed secrets, for tests.
pub struct StaticSecrets(pub SecretMaterial);

impl StaticSecrets {
    pub fn random() -> Self {
        StaticSecrets(SecretDocument::generate().into_material().expect("generated secrets are valid"))
    }
}

#[async_trait]
impl Secrets for StaticSecrets {
    async fn load(&self) -> Result<SecretMaterial, SecretsError> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_full_document_then_it_parses() {
        let json = serde_json::to_string(&SecretDocument::generate()).unwrap();
        assert!(SecretDocument::parse(&json).is_ok());
    }

    #[test]
    fn given_only_an_admin_token_then_distinct_keys_are_derived_deterministically() {
        let a = SecretDocument::parse(r#"{"adminToken":"0123456789abcdef0123456789abcdef"}"#).unwrap();
        let b = SecretDocument::parse(r#"{"adminToken":"0123456789abcdef0123456789abcdef"}"#).unwrap();
        assert_eq!(a.data_key, b.data_key);
        assert_ne!(a.data_key.to_vec(), a.jwt_key);
        let other = SecretDocument::parse(r#"{"adminToken":"fedcba9876543210fedcba9876543210"}"#).unwrap();
        assert_ne!(a.data_key, other.data_key);
    }

    #[test]
    fn given_bad_documents_then_the_error_names_the_field() {
        let short = SecretDocument::parse(r#"{"adminToken":"short"}"#).unwrap_err();
        assert!(short.to_string().contains("adminToken"));
        let bad_key = SecretDocument::parse(r#"{"adminToken":"0123456789abcdef0123","dataKey":"AAAA"}"#).unwrap_err();
        assert!(bad_key.to_string().contains("dataKey"));
        assert!(SecretDocument::parse("not json").is_err());
    }
}
