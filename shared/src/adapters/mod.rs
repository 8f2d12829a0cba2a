//! Adapters behind the ports: the embedded backend (SQLite) and, with the
//! `aws` feature, DynamoDB, SQS and Secrets Manager.

pub mod local_secrets;
pub mod sqlite;
#[cfg(feature = "aws")]
pub mod aws;
