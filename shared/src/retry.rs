//! When to try again: the retry schedule, jitter and `Retry-After`.

use std::time::Duration;

/// SQS visibility timeouts cannot exceed 12 h, so no delay may either.
pub const MAX_DELAY: Duration = Duration::from_secs(12 * 60 * 60);

/// Delays between attempts. `delays[0]` follows attempt 1; past the end, the
/// last delay repeats (for endpoints allowing more than eight attempts).
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
    /// ±fraction applied to each delay, so failing endpoints are not hit in lockstep.
    jitter: f64,
}

impl Default for RetrySchedule {
    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts over ~28 h, ±20 %.
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        RetrySchedule {
            delays: vec![
                Duration::from_secs(5),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(300),
                minutes(600),
                minutes(600),
            ],
            jitter: 0.2,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("retry schedule must be a comma-separated list of delays like 5s,5m,2h (each ≤ 12h): {0}")]
pub struct ScheduleParseError(String);

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>, jitter: f64) -> Self {
        assert!(!delays.is_empty(), "a schedule needs at least one delay");
        RetrySchedule { delays: delays.into_iter().map(|d| d.min(MAX_DELAY)).collect(), jitter: jitter.clamp(0.0, 0.5) }
    }

    /// Parses `5s,5m,30m,2h` (units ms, s, m, h); used for fast local schedules.
    pub fn parse(spec: &str, jitter: f64) -> Result<Self, ScheduleParseError> {
        let mut delays = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (number, unit) = part.split_at(part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len()));
            let n: u64 = number.parse().map_err(|_| ScheduleParseError(part.to_string()))?;
            let delay = match unit {
                "ms" => Duration::from_millis(n),
                "s" | "" => Duration::from_secs(n),
                "m" => Duration::from_secs(n * 60),
                "h" => Duration::from_secs(n * 3600),
                _ => return Err(ScheduleParseError(part.to_string())),
            };
            if delay > MAX_DELAY {
                return Err(ScheduleParseError(part.to_string()));
            }
            delays.push(delay);
        }
        if delays.is_empty() {
            return Err(ScheduleParseError(spec.to_string()));
        }
        Ok(RetrySchedule::new(delays, jitter))
    }

    /// The un-jittered delay after attempt `attempt` (1-based) failed.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let index = (attempt.max(1) as usize - 1).min(self.delays.len() - 1);
        self.delays[index]
    }

    /// The delay after attempt `attempt` failed, with jitter from `unit`
    /// (a uniform sample in [0, 1)), so tests can pin it.
    pub fn delay_after(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.base_delay(attempt).as_secs_f64();
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Duration::from_secs_f64(base * factor).min(MAX_DELAY)
    }

    /// A `Retry-After` from a 429/503, kept within the schedule's bounds.
    pub fn clamp_retry_after(&self, requested: Duration) -> Duration {
        let shortest = self.delays.iter().min().copied().unwrap_or_default();
        let longest = self.delays.iter().max().copied().unwrap_or(MAX_DELAY);
        requested.clamp(shortest, longest)
    }

    pub fn shortest(&self) -> Duration {
        self.delays.iter().min().copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_default_schedule_then_delays_follow_the_spec() {
        let schedule = RetrySchedule::default();
        let expected = [5, 300, 1800, 7200, 18000, 36000, 36000, 36000];
        for (i, secs) in expected.iter().enumerate() {
            assert_eq!(schedule.base_delay(i as u32 + 1), Duration::from_secs(*secs));
        }
    }

    #[test]
    fn given_jitter_then_delays_stay_within_twenty_percent() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.delay_after(2, 0.0), Duration::from_secs(240));
        assert_eq!(schedule.delay_after(2, 0.5), Duration::from_secs(300));
        assert!(schedule.delay_after(2, 0.999_999) <= Duration::from_secs(360));
        assert!(schedule.delay_after(7, 1.0) <= MAX_DELAY);
    }

    #[test]
    fn given_a_retry_after_then_it_is_clamped_to_the_schedule() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.clamp_retry_after(Duration::from_secs(1)), Duration::from_secs(5));
        assert_eq!(schedule.clamp_retry_after(Duration::from_secs(90)), Duration::from_secs(90));
        assert_eq!(schedule.clamp_retry_after(Duration::from_secs(86400 * 3)), Duration::from_secs(36000));
    }

    #[test]
    fn given_a_schedule_string_then_it_parses_or_names_the_bad_part() {
        let schedule = RetrySchedule::parse("200ms,1s,2m,1h", 0.0).unwrap();
        assert_eq!(schedule.base_delay(1), Duration::from_millis(200));
        assert_eq!(schedule.base_delay(4), Duration::from_secs(3600));
        assert!(RetrySchedule::parse("5x", 0.0).is_err());
        assert!(RetrySchedule::parse("13h", 0.0).is_err());
        assert!(RetrySchedule::parse("", 0.0).is_err());
    }
}
