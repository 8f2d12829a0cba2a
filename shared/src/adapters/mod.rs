//! Adapters behind the ports: the embedded backend (SQLite) and, with the
//! `aws` feature, DynamoDB, SQS and Secrets Manager.

#[cfg(feature = "aws")]
pub mod aws;
pub mod local_secrets;
pub mod sqlite;
