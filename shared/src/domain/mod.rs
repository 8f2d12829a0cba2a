//! Domain types: what Skyhook stores and the rules that keep them valid.

pub mod api_key;
pub mod application;
pub mod controls;
pub mod delivery;
pub mod endpoint;
pub mod event;
pub mod event_type;
pub mod ids;
pub mod limits;

pub use api_key::{ApiKey, Scope};
pub use application::Application;
pub use controls::{CircuitBreakerSettings, DeliveryControls, SignatureScheme, SigningKeys};
pub use delivery::{AttemptError, Delivery, DeliveryAttempt, DeliveryStatus, ErrorCode, ResponseStatus};
pub use endpoint::{Endpoint, PayloadFormat};
pub use event::{Event, EventStatus};
pub use event_type::EventType;
pub use ids::{Id, IdKind};

/// All timestamps are UTC; serialised as RFC 3339.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
