//! The Lambda side (feature `lambda`): configuration from the environment,
//! building the service once per cold start (feature `aws`), and the handlers
//! the thin binaries in `functions/` hand to the runtime:
//!
//! | function                  | trigger            | handler                 |
//! |---------------------------|--------------------|-------------------------|
//! | applications … deliveries | HTTP API (v2)      | [`handle_http`]         |
//! | dispatcher                | deliveries queue   | [`handle_deliveries`]   |
//! | ingest                    | ingest queue       | [`handle_ingest`]       |
//! | fanout                    | table's stream     | [`handle_stream`]       |
//!
//! Everything here converts Lambda event shapes to the service layer's types
//! and back; behaviour lives in `service`.

mod config;
mod http;
#[cfg(feature = "aws")]
mod init;
mod sqs;
#[cfg(feature = "aws")]
mod stream;

pub use aws_lambda_events;
pub use lambda_http;
pub use lambda_runtime;
pub use lambda_runtime::{Error, LambdaEvent};

pub use config::{ConfigError, LambdaConfig};
pub use http::{from_api_response, handle_http, to_api_request};
#[cfg(feature = "aws")]
pub use init::{InitError, build_dispatcher, build_ingest_queue, build_service, build_service_with, sdk_config};
pub use sqs::{
    IngestMessage, IngestOutcome, handle_deliveries, handle_ingest, ingest_one, to_received_message,
    to_received_messages,
};
#[cfg(feature = "aws")]
pub use stream::{StreamRecordAction, classify_stream_record, handle_stream};

/// JSON logs for CloudWatch: one object per line, fields flattened, the
/// current span's ids attached; no ANSI colours and no timestamp (Lambda adds
/// its own). `RUST_LOG` filters (default `info`). Safe to call twice.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hyper=warn,reqwest=warn,aws_smithy_runtime=warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .try_init();
}
