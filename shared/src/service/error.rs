use std::time::Duration;

use serde::Serialize;

use crate::ports::{QueueError, StoreError};

/// One invalid input, named by its JSON field or query parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

/// Every way a service call can fail; mapped to problem+json in `api::problem`.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("{field} is larger than {limit} bytes")]
    TooLarge { field: String, limit: usize },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The path exists; these methods are allowed on it.
    #[error("method not allowed; use {0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("rate limit exceeded")]
    RateLimited { retry_after: Duration },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(msg) => ServiceError::Conflict(msg),
            StoreError::Unavailable(msg) => {
                tracing::error!(error = %msg, "store unavailable");
                ServiceError::Unavailable("storage is temporarily unavailable; nothing was written, try again".into())
            }
            StoreError::Corrupt(msg) => ServiceError::Internal(msg),
        }
    }
}

impl From<QueueError> for ServiceError {
    fn from(err: QueueError) -> Self {
        tracing::error!(error = %err, "queue unavailable");
        ServiceError::Unavailable("the delivery queue is temporarily unavailable; try again".into())
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Collects field errors so a request reports all of them at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    pub fn new() -> Self {
        Violations(Vec::new())
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn check(&mut self, ok: bool, field: &str, message: impl Into<String>) {
        if !ok {
            self.add(field, message);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> ServiceResult<()> {
        if self.0.is_empty() { Ok(()) } else { Err(ServiceError::Validation(self.0)) }
    }
}
