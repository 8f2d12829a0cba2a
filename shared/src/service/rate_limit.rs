//! Per-application publish rate limit: a token bucket per process. Behind API
//! Gateway each Lambda instance enforces it on its own share of the traffic.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::{Id, Timestamp};

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<Id, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Timestamp,
}

impl RateLimiter {
    /// Takes one token; `Err(wait)` when the bucket is empty.
    pub fn acquire(&self, app_id: &Id, per_second: u32, now: Timestamp) -> Result<(), Duration> {
        let rate = f64::from(per_second.max(1));
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        let bucket = buckets.entry(app_id.clone()).or_insert(Bucket { tokens: rate, updated: now });
        let elapsed = (now - bucket.updated).num_milliseconds().max(0) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate).max(Duration::from_secs(1)))
        }
    }
}
