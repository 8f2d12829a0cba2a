//! The delivery controls the dispatcher applies before and after each send:
//! the per-endpoint rate limit and the circuit breaker. Their state lives in
//! the store (`ControlStateStore`), so every dispatcher — each Lambda
//! instance, each `skyhook serve` worker — sees the same limit and the same
//! breaker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{ServiceResult, Skyhook};
use crate::domain::{CircuitBreakerSettings, Endpoint, Id, Timestamp};
use crate::ports::StoreError;

const CIRCUIT_KIND: &str = "circuit";
/// A reopened breaker stays open for `open_secs` × 2^n, n at most this.
const MAX_BACKOFF_DOUBLINGS: u32 = 5;
/// How long a half-open probe may take before another dispatcher may probe.
const PROBE_GRACE: chrono::Duration = chrono::Duration::seconds(5);
/// A breaker record outlives its last change by this much.
const CIRCUIT_RECORD_TTL: chrono::Duration = chrono::Duration::days(31);

/// How long this process trusts a closed breaker it read: another
/// dispatcher's opening reaches it within this long.
const CLOSED_CACHE_TTL: Duration = Duration::from_secs(1);
/// Successes are counted in the store in bunches of this many (or after
/// [`SUCCESS_FLUSH_AGE`]); failures at once, with the successes before them.
const SUCCESS_FLUSH_COUNT: u64 = 16;
const SUCCESS_FLUSH_AGE: Duration = Duration::from_secs(1);
/// Bound on the unwritten-success entries (endpoints × windows) kept.
const MAX_PENDING_WINDOWS: usize = 4096;

/// What this process remembers of the breakers, so a healthy endpoint's
/// deliveries cost no breaker read and a sixteenth of a counter write each.
/// Failures are always counted at once, so the breaker trips on time; only
/// successes can be late (or, if the process stops, uncounted — which errs
/// towards opening, never towards sending more).
#[derive(Default)]
pub(crate) struct LocalBreakers {
    /// Last state read or written, per endpoint, with when.
    known: Mutex<HashMap<Id, (Instant, CircuitRecord, u64)>>,
    /// Successes not yet added to the store, per (endpoint, window).
    pending: Mutex<HashMap<(Id, i64), (u64, Instant)>>,
    /// One store read at a time per endpoint: the deliveries of a batch that
    /// find nothing trusted wait for the first one's read instead of each reading.
    reading: Mutex<HashMap<Id, Arc<tokio::sync::Mutex<()>>>>,
}

impl LocalBreakers {
    fn read_lock(&self, endpoint: &Id) -> Arc<tokio::sync::Mutex<()>> {
        let mut reading = self.reading.lock().unwrap_or_else(|p| p.into_inner());
        if reading.len() >= MAX_PENDING_WINDOWS {
            reading.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        Arc::clone(reading.entry(endpoint.clone()).or_default())
    }

    fn remember(&self, endpoint: &Id, record: &CircuitRecord, version: u64) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.insert(endpoint.clone(), (Instant::now(), record.clone(), version));
    }

    /// A state that still holds: closed (read under a second ago), open
    /// until a time not reached yet (only a probe after it can change that),
    /// or half-open with a probe still on its way.
    fn trusted(&self, endpoint: &Id, now: Timestamp) -> Option<CircuitRecord> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let (read_at, record, _) = known.get(endpoint)?;
        let holds = match record.state {
            CircuitState::Closed => read_at.elapsed() < CLOSED_CACHE_TTL,
            CircuitState::Open => record.open_until.is_some_and(|until| until > now),
            // Someone's probe is on its way until then.
            CircuitState::HalfOpen => record.probe_until.is_some_and(|until| until > now),
        };
        holds.then(|| record.clone())
    }

    /// Adds one success; returns the successes to write now, if it is time.
    fn add_success(&self, endpoint: &Id, window: i64) -> Option<u64> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let key = (endpoint.clone(), window);
        if !pending.contains_key(&key) {
            // A new window: the last one's unwritten successes no longer matter.
            pending.remove(&(endpoint.clone(), window - 1));
            if pending.len() >= MAX_PENDING_WINDOWS {
                pending.clear();
            }
        }
        let entry = pending.entry(key.clone()).or_insert((0, Instant::now()));
        entry.0 += 1;
        if entry.0 >= SUCCESS_FLUSH_COUNT || entry.1.elapsed() >= SUCCESS_FLUSH_AGE {
            pending.remove(&key).map(|(n, _)| n)
        } else {
            None
        }
    }

    /// Takes the successes not written yet (to go with a failure).
    fn take_successes(&self, endpoint: &Id, window: i64) -> u64 {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.remove(&(endpoint.clone(), window)).map_or(0, |(n, _)| n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum CircuitState {
    /// Deliveries flow.
    Closed,
    /// Too many failures: deliveries wait until `openUntil`, spending no attempt.
    Open,
    /// One probe delivery is on its way; its outcome closes or reopens the breaker.
    HalfOpen,
}

/// The stored breaker (absent = closed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CircuitRecord {
    state: CircuitState,
    opened_at: Option<Timestamp>,
    open_until: Option<Timestamp>,
    probe_until: Option<Timestamp>,
    /// Consecutive openings without a successful probe between them.
    reopen_count: u32,
    /// Attempts and failures of the window that opened it.
    tripped_attempts: u64,
    tripped_failures: u64,
}

impl CircuitRecord {
    fn closed() -> Self {
        CircuitRecord {
            state: CircuitState::Closed,
            opened_at: None,
            open_until: None,
            probe_until: None,
            reopen_count: 0,
            tripped_attempts: 0,
            tripped_failures: 0,
        }
    }
}

/// The breaker as `GET /v1/endpoints/{id}/stats` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitStatus {
    pub enabled: bool,
    pub state: CircuitState,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub opened_at: Option<Timestamp>,
    /// While open: when the next probe may go.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub open_until: Option<Timestamp>,
    /// Consecutive openings without a successful probe.
    pub reopen_count: u32,
    /// The current window's attempts and failures.
    pub window_attempts: u64,
    pub window_failures: u64,
    #[schema(value_type = String, format = DateTime)]
    pub window_start: Timestamp,
}

/// The dispatcher's answer before a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send; `probe` when this send is the half-open breaker's probe.
    Send { probe: bool },
    /// Do not send now; try again after this long. No attempt is spent.
    Wait(Duration),
}

fn to_std(d: chrono::Duration) -> Duration {
    d.to_std().unwrap_or_default()
}

/// Up to a second of spread, so deliveries held back together do not all
/// come back in the same instant.
fn jitter() -> Duration {
    Duration::from_millis(rand::random::<u64>() % 1000)
}

fn window_of(settings: &CircuitBreakerSettings, now: Timestamp) -> (i64, Timestamp) {
    let len = i64::from(settings.window_secs.max(1));
    let index = now.timestamp().div_euclid(len);
    let start = chrono::DateTime::from_timestamp(index * len, 0).unwrap_or(now);
    (index, start)
}

impl Skyhook {
    /// Whether a delivery to `endpoint` may be sent now: first the breaker,
    /// then the rate limit (so a throttled delivery never takes the probe).
    pub async fn admit_delivery(&self, endpoint: &Endpoint) -> ServiceResult<Admission> {
        let admission = self.admit_through_breaker(endpoint).await?;
        if let Admission::Send { probe: false } = admission
            && let Some(per_second) = endpoint.controls.rate_limit
            && let Some(wait) = self.take_rate_slot(endpoint, per_second).await?
        {
            return Ok(Admission::Wait(wait));
        }
        Ok(admission)
    }

    /// Counts the attempt's outcome and moves the breaker if it must.
    /// Breaker bookkeeping never fails a delivery: errors are logged.
    pub async fn record_delivery_outcome(&self, endpoint: &Endpoint, probe: bool, succeeded: bool) {
        let settings = endpoint.controls.circuit_breaker;
        if !settings.enabled {
            return;
        }
        if let Err(err) = self.count_outcome(endpoint, &settings, probe, succeeded).await {
            tracing::warn!(error = %err, endpoint_id = %endpoint.id, "could not update the circuit breaker");
        }
    }

    /// The endpoint's breaker for the stats view.
    pub(crate) async fn circuit_status(&self, endpoint: &Endpoint) -> ServiceResult<CircuitStatus> {
        let settings = endpoint.controls.circuit_breaker;
        let now = self.clock.now();
        let (index, window_start) = window_of(&settings, now);
        let (record, _) = self.read_circuit(endpoint).await?;
        let counts = self.store.get_counters(&endpoint.application_id, &window_key(endpoint, index)).await?;
        Ok(CircuitStatus {
            enabled: settings.enabled,
            state: record.state,
            opened_at: record.opened_at,
            open_until: record.open_until,
            reopen_count: record.reopen_count,
            window_attempts: counts[0],
            window_failures: counts[1],
            window_start,
        })
    }

    async fn read_circuit(&self, endpoint: &Endpoint) -> ServiceResult<(CircuitRecord, u64)> {
        let (record, version) =
            match self.store.get_record(&endpoint.application_id, CIRCUIT_KIND, endpoint.id.as_str()).await? {
                None => (CircuitRecord::closed(), 0),
                Some(stored) => {
                    let record = serde_json::from_str(&stored.body)
                        .map_err(|e| StoreError::Corrupt(format!("circuit breaker of {}: {e}", endpoint.id)))?;
                    (record, stored.version)
                }
            };
        self.breakers.remember(&endpoint.id, &record, version);
        Ok((record, version))
    }

    /// `true` when written; `false` when another dispatcher changed it first.
    async fn write_circuit(&self, endpoint: &Endpoint, record: &CircuitRecord, version: u64) -> ServiceResult<bool> {
        let body = serde_json::to_string(record).expect("serialisable");
        let expires = self.clock.now() + CIRCUIT_RECORD_TTL;
        let app = &endpoint.application_id;
        let written = self.store.put_record(app, CIRCUIT_KIND, endpoint.id.as_str(), &body, version, expires).await?;
        if written {
            self.breakers.remember(&endpoint.id, record, version + 1);
        }
        Ok(written)
    }

    fn trusted_admission(&self, endpoint: &Endpoint) -> Option<Admission> {
        let now = self.clock.now();
        let record = self.breakers.trusted(&endpoint.id, now)?;
        Some(match record.state {
            CircuitState::Closed => Admission::Send { probe: false },
            CircuitState::Open => Admission::Wait(to_std(record.open_until.unwrap_or(now) - now) + jitter()),
            CircuitState::HalfOpen => Admission::Wait(to_std(record.probe_until.unwrap_or(now) - now) + jitter()),
        })
    }

    async fn admit_through_breaker(&self, endpoint: &Endpoint) -> ServiceResult<Admission> {
        if !endpoint.controls.circuit_breaker.enabled {
            return Ok(Admission::Send { probe: false });
        }
        if let Some(admission) = self.trusted_admission(endpoint) {
            return Ok(admission);
        }
        let lock = self.breakers.read_lock(&endpoint.id);
        let _reading = lock.lock().await;
        // Another delivery may have read it while this one waited.
        if let Some(admission) = self.trusted_admission(endpoint) {
            return Ok(admission);
        }
        // Two rounds: a lost race to claim the probe re-reads once.
        for _ in 0..2 {
            let now = self.clock.now();
            let (record, version) = self.read_circuit(endpoint).await?;
            let probe_until = now + chrono::Duration::seconds(i64::from(endpoint.timeout_secs)) + PROBE_GRACE;
            match record.state {
                CircuitState::Closed => return Ok(Admission::Send { probe: false }),
                CircuitState::Open if record.open_until.is_some_and(|until| until > now) => {
                    let until = record.open_until.unwrap_or(now);
                    return Ok(Admission::Wait(to_std(until - now) + jitter()));
                }
                CircuitState::HalfOpen if record.probe_until.is_some_and(|until| until > now) => {
                    let until = record.probe_until.unwrap_or(now);
                    return Ok(Admission::Wait(to_std(until - now) + jitter()));
                }
                // Open long enough, or a probe that never reported back: this
                // delivery becomes the probe if it claims it first.
                CircuitState::Open | CircuitState::HalfOpen => {
                    let claimed =
                        CircuitRecord { state: CircuitState::HalfOpen, probe_until: Some(probe_until), ..record };
                    if self.write_circuit(endpoint, &claimed, version).await? {
                        tracing::info!(endpoint_id = %endpoint.id, "circuit half-open: sending a probe");
                        return Ok(Admission::Send { probe: true });
                    }
                }
            }
        }
        Ok(Admission::Wait(Duration::from_secs(1) + jitter()))
    }

    async fn count_outcome(
        &self,
        endpoint: &Endpoint,
        settings: &CircuitBreakerSettings,
        probe: bool,
        succeeded: bool,
    ) -> ServiceResult<()> {
        let now = self.clock.now();
        if probe {
            let (record, version) = self.read_circuit(endpoint).await?;
            let next = if succeeded {
                tracing::info!(endpoint_id = %endpoint.id, "circuit closed: the probe succeeded");
                CircuitRecord::closed()
            } else {
                let doublings = (record.reopen_count + 1).min(MAX_BACKOFF_DOUBLINGS);
                let open_for = chrono::Duration::seconds(i64::from(settings.open_secs) << doublings);
                tracing::warn!(endpoint_id = %endpoint.id, open_secs = open_for.num_seconds(), "circuit reopened: the probe failed");
                CircuitRecord {
                    state: CircuitState::Open,
                    opened_at: Some(now),
                    open_until: Some(now + open_for),
                    probe_until: None,
                    reopen_count: record.reopen_count + 1,
                    ..record
                }
            };
            // Lost to a newer change (a manual edit, or another probe after
            // this one's grace ran out): that one wins.
            self.write_circuit(endpoint, &next, version).await?;
            return Ok(());
        }
        let (index, window_start) = window_of(settings, now);
        let expires = window_start + chrono::Duration::seconds(2 * i64::from(settings.window_secs));
        let deltas = if succeeded {
            match self.breakers.add_success(&endpoint.id, index) {
                Some(successes) => [successes, 0],
                None => return Ok(()),
            }
        } else {
            [self.breakers.take_successes(&endpoint.id, index) + 1, 1]
        };
        let key = window_key(endpoint, index);
        let Some([attempts, failures]) =
            self.store.add_to_counters(&endpoint.application_id, &key, deltas, None, expires).await?
        else {
            return Ok(());
        };
        let tripped = !succeeded
            && attempts >= u64::from(settings.min_requests.max(1))
            && failures as f64 >= settings.failure_ratio * attempts as f64;
        if !tripped {
            return Ok(());
        }
        let (record, version) = self.read_circuit(endpoint).await?;
        if record.state != CircuitState::Closed {
            return Ok(()); // already open (another dispatcher tripped it)
        }
        let open_for = chrono::Duration::seconds(i64::from(settings.open_secs));
        let opened = CircuitRecord {
            state: CircuitState::Open,
            opened_at: Some(now),
            open_until: Some(now + open_for),
            probe_until: None,
            reopen_count: 0,
            tripped_attempts: attempts,
            tripped_failures: failures,
        };
        if self.write_circuit(endpoint, &opened, version).await? {
            tracing::warn!(endpoint_id = %endpoint.id, attempts, failures, "circuit opened: deliveries wait");
        }
        Ok(())
    }

    /// One of this second's `per_second` slots, or how long to wait for a
    /// later second's. Deliveries turned away in the same second count
    /// themselves, so each waits for its own later second instead of all
    /// coming back together.
    async fn take_rate_slot(&self, endpoint: &Endpoint, per_second: u32) -> ServiceResult<Option<Duration>> {
        let app = &endpoint.application_id;
        let limit = u64::from(per_second.max(1));
        // A slot is only good for the second it was counted in: when the
        // counter write returns after that second has ended (a slow store),
        // sending would add to the next second's full count, so the slot is
        // given up and the next second's taken instead.
        for _ in 0..MAX_SLOT_TRIES {
            let now = self.clock.now();
            let second = now.timestamp();
            let key = format!("rl:{}:{second}", endpoint.id);
            let expires = now + chrono::Duration::seconds(120);
            if self.store.add_to_counters(app, &key, [1, 0], Some(limit), expires).await?.is_some() {
                if self.clock.now().timestamp() == second {
                    return Ok(None);
                }
                continue;
            }
            let [_, waiting] = self.store.add_to_counters(app, &key, [0, 1], None, expires).await?.unwrap_or([0, 1]);
            let until_next_second = 1000 - i64::from(now.timestamp_subsec_millis()).min(999);
            let seconds_later = (waiting.saturating_sub(1) / limit).min(900);
            return Ok(Some(
                Duration::from_millis(until_next_second as u64) + Duration::from_secs(seconds_later) + jitter(),
            ));
        }
        // The store is slower than a second per write: try again shortly.
        Ok(Some(jitter()))
    }
}

/// Slot takes before a delivery is held back because each came back too late.
const MAX_SLOT_TRIES: usize = 3;

fn window_key(endpoint: &Endpoint, index: i64) -> String {
    format!("cb:{}:{index}", endpoint.id)
}
