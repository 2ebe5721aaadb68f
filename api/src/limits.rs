//! Backpressure per credential: a token bucket for the request rate and a bound on
//! commands waiting for their replies. Both answer 429 with Retry-After; neither ever
//! drops work that was accepted (the limit applies before a command is enqueued).
//! The state is bounded: a bucket that has refilled is the same as none and is swept
//! out, so the map holds only credentials seen within the last `burst / rate` seconds;
//! an in-flight count leaves with its last command.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::problem::ApiError;

#[derive(Debug)]
pub struct Limits {
    rate: f64,
    burst: f64,
    max_in_flight: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
    in_flight: Mutex<HashMap<String, usize>>,
    /// Admissions since the last sweep of refilled buckets.
    since_sweep: std::sync::atomic::AtomicUsize,
}

/// How many admissions pass between two sweeps of the bucket map.
const SWEEP_EVERY: usize = 4096;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One command in flight; released on drop.
#[derive(Debug)]
pub struct InFlight {
    limits: Arc<Limits>,
    credential: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self.limits.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.credential) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.credential);
            }
        }
    }
}

impl Limits {
    pub fn new(rate: f64, burst: f64, max_in_flight: usize) -> Self {
        Self {
            rate: rate.max(0.001),
            burst: burst.max(1.0),
            max_in_flight,
            buckets: Mutex::default(),
            in_flight: Mutex::default(),
            since_sweep: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Buckets currently kept (for tests and metrics).
    pub fn buckets(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Drop every bucket that would be full by `now`: it is the same as a new one.
    fn sweep(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
    }

    /// Take one token for `credential`, or say how long until one is there.
    pub fn admit(&self, credential: &str) -> Result<(), ApiError> {
        self.admit_at(credential, Instant::now())
    }

    fn admit_at(&self, credential: &str, now: Instant) -> Result<(), ApiError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.since_sweep.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n + 1 >= SWEEP_EVERY {
            self.since_sweep.store(0, std::sync::atomic::Ordering::Relaxed);
            self.sweep(&mut buckets, now);
        }
        let bucket =
            buckets.entry(credential.to_owned()).or_insert(Bucket { tokens: self.burst, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.rate)
            .min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / self.rate;
        Err(ApiError::RateLimited { retry_after_secs: wait.ceil().max(1.0) as u64 })
    }

    /// Count one more command in flight for `credential`, if under the bound.
    pub fn start(self: &Arc<Self>, credential: &str) -> Result<InFlight, ApiError> {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(credential.to_owned()).or_default();
        if *n >= self.max_in_flight {
            return Err(ApiError::TooManyInFlight);
        }
        *n += 1;
        Ok(InFlight { limits: self.clone(), credential: credential.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_refuses_with_a_retry_after() {
        let limits = Limits::new(0.5, 3.0, 10);
        for _ in 0..3 {
            limits.admit("a").unwrap();
        }
        match limits.admit("a") {
            Err(ApiError::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 2),
            other => panic!("expected 429, got {other:?}"),
        }
        limits.admit("b").expect("another credential has its own bucket");
    }

    #[test]
    fn refilled_buckets_are_swept_so_the_state_stays_bounded() {
        // 1,000 tokens/s, burst 1: a bucket is full again 1 ms after its last use.
        let limits = Limits::new(1000.0, 1.0, 10);
        let start = Instant::now();
        for i in 0..SWEEP_EVERY - 1 {
            limits.admit_at(&format!("caller-{i}"), start).unwrap();
        }
        assert_eq!(limits.buckets(), SWEEP_EVERY - 1, "recent callers are kept");
        let later = start + std::time::Duration::from_millis(5);
        limits.admit_at("one-more", later).unwrap();
        assert_eq!(limits.buckets(), 1, "refilled buckets swept, only the new caller kept");
    }

    #[test]
    fn in_flight_commands_are_bounded_per_credential_and_released_on_drop() {
        let limits = Arc::new(Limits::new(1000.0, 1000.0, 2));
        let first = limits.start("a").unwrap();
        let _second = limits.start("a").unwrap();
        assert!(matches!(limits.start("a"), Err(ApiError::TooManyInFlight)));
        let _other = limits.start("b").expect("another credential is not affected");
        drop(first);
        limits.start("a").expect("a finished command frees its slot");
    }
}
