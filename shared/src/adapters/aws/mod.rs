//! AWS adapters (feature `aws`): DynamoDB store, SQS queue, Secrets Manager.

pub mod dynamodb;
pub mod secrets;
pub mod sqs;
