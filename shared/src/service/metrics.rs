//! Delivery metrics as CloudWatch Embedded Metric Format: one JSON log line
//! per dispatcher batch, turned into metrics by CloudWatch Logs at no API
//! cost (no PutMetricData call on the delivery path).

use std::sync::Mutex;

use serde_json::json;

/// Counters of the attempts made since the last [`DeliveryMetrics::take`].
#[derive(Debug, Default)]
pub struct DeliveryMetrics {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    pub attempts: u64,
    pub successes: u64,
    pub failures: u64,
    /// Attempt durations in milliseconds (EMF accepts up to 100 values a line).
    pub latencies_ms: Vec<f64>,
}

/// The CloudWatch namespace of Skyhook's metrics.
pub const NAMESPACE: &str = "Skyhook";

impl DeliveryMetrics {
    pub fn record(&self, succeeded: bool, duration_ms: u64) {
        let mut counts = self.inner.lock().expect("metrics lock");
        counts.attempts += 1;
        if succeeded {
            counts.successes += 1;
        } else {
            counts.failures += 1;
        }
        if counts.latencies_ms.len() < 100 {
            counts.latencies_ms.push(duration_ms as f64);
        }
    }

    pub fn take(&self) -> Counts {
        std::mem::take(&mut *self.inner.lock().expect("metrics lock"))
    }
}

impl Counts {
    /// The EMF document for these counts, or `None` when nothing happened.
    pub fn to_emf(&self, function: &str, timestamp_ms: i64) -> Option<serde_json::Value> {
        if self.attempts == 0 {
            return None;
        }
        Some(json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": [
                        {"Name": "DeliveryAttempts", "Unit": "Count"},
                        {"Name": "DeliverySuccesses", "Unit": "Count"},
                        {"Name": "DeliveryFailures", "Unit": "Count"},
                        {"Name": "DeliveryLatency", "Unit": "Milliseconds"}
                    ]
                }]
            },
            "Function": function,
            "DeliveryAttempts": self.attempts,
            "DeliverySuccesses": self.successes,
            "DeliveryFailures": self.failures,
            "DeliveryLatency": self.latencies_ms,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_attempts_when_taken_then_the_emf_line_carries_the_counts_and_resets() {
        let metrics = DeliveryMetrics::default();
        metrics.record(true, 12);
        metrics.record(false, 30);
        let counts = metrics.take();
        let emf = counts.to_emf("dispatcher", 1_700_000_000_000).unwrap();
        assert_eq!(emf["DeliveryAttempts"], 2);
        assert_eq!(emf["DeliverySuccesses"], 1);
        assert_eq!(emf["DeliveryFailures"], 1);
        assert_eq!(emf["DeliveryLatency"], json!([12.0, 30.0]));
        assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Skyhook");
        assert!(metrics.take().to_emf("dispatcher", 0).is_none(), "reset after take");
    }
}
