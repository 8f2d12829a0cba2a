//! Ports: the small traits the service layer needs from the outside world.
//! Each has an embedded adapter (SQLite) and an AWS adapter behind it.

pub mod clock;
pub mod control_state;
pub mod queue;
pub mod secrets;
pub mod sender;
pub mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use control_state::{ControlStateStore, StateRecord};
pub use queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage};
pub use secrets::{SecretMaterial, Secrets, SecretsError};
pub use sender::{EndpointResponse, OutgoingWebhook, SendFailure, WebhookSender};
pub use store::*;
