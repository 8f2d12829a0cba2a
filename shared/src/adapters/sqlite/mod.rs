//! The embedded backend: a SQLite store and a SQLite queue with SQS semantics.

mod queue;
mod store;

pub use queue::{SqliteQueue, SqliteQueueConfig};
pub use store::SqliteStore;
