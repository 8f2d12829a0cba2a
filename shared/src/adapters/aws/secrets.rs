//! [`Secrets`] on AWS Secrets Manager: one JSON secret
//! (`{"adminToken","dataKey","jwtKey"}`, see [`SecretDocument`]) read with one
//! GetSecretValue per cold start and cached for the life of the process.

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use tokio::sync::OnceCell;

use crate::adapters::local_secrets::SecretDocument;
use crate::ports::{SecretMaterial, Secrets, SecretsError};

pub struct SecretsManagerSecrets {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    /// Filled by the first successful load; a failed load is not cached, so
    /// a later call tries again.
    cache: OnceCell<SecretMaterial>,
}

impl std::fmt::Debug for SecretsManagerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsManagerSecrets")
            .field("secret_id", &self.secret_id)
            .field("loaded", &self.cache.initialized())
            .finish()
    }
}

impl SecretsManagerSecrets {
    /// `secret_id` is the secret's name or ARN.
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        SecretsManagerSecrets { client, secret_id: secret_id.into(), cache: OnceCell::new() }
    }

    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    async fn fetch(&self) -> Result<SecretMaterial, SecretsError> {
        let id = &self.secret_id;
        let output = self.client.get_secret_value().secret_id(id).send().await.map_err(|err| {
            let reason = match &err {
                SdkError::ServiceError(e) => match e.err() {
                    GetSecretValueError::ResourceNotFoundException(_) => "it does not exist (check SECRET_ID)",
                    GetSecretValueError::DecryptionFailure(_) => "it cannot be decrypted with its KMS key",
                    GetSecretValueError::InvalidRequestException(_) => {
                        "it cannot be read in its current state (scheduled for deletion?)"
                    }
                    _ => "the request failed",
                },
                _ => "Secrets Manager could not be reached",
            };
            SecretsError::Unavailable(format!("cannot read secret {id}: {reason}: {}", DisplayErrorContext(&err)))
        })?;
        let json = output.secret_string().ok_or_else(|| {
            SecretsError::Malformed(format!("secret {id} has no SecretString; store the JSON document as text"))
        })?;
        SecretDocument::parse(json).map_err(|err| match err {
            SecretsError::Malformed(reason) => SecretsError::Malformed(format!("secret {id}: {reason}")),
            other => other,
        })
    }
}

#[async_trait]
impl Secrets for SecretsManagerSecrets {
    async fn load(&self) -> Result<SecretMaterial, SecretsError> {
        self.cache.get_or_try_init(|| self.fetch()).await.cloned()
    }
}
