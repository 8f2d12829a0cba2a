use async_trait::async_trait;

/// The one secret Skyhook needs, read once per cold start.
#[derive(Clone)]
pub struct SecretMaterial {
    /// Bearer token for the admin routes (applications, API keys).
    pub admin_token: String,
    /// AES-256-GCM key that encrypts endpoint signing secrets at rest.
    pub data_key: [u8; 32],
    /// HMAC key for OAuth access tokens (JWT HS256) and pagination cursors.
    pub jwt_key: Vec<u8>,
}

impl std::fmt::Debug for SecretMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretMaterial { .. }")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secret unavailable: {0}")]
    Unavailable(String),
    #[error("secret is malformed: {0}")]
    Malformed(String),
}

#[async_trait]
pub trait Secrets: Send + Sync {
    async fn load(&self) -> Result<SecretMaterial, SecretsError>;
}
