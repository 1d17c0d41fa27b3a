//! Adaptive concurrency: how many requests of one transfer (ranged reads, parts) are in flight.
//!
//! A fixed number of connections either leaves a fast link idle or floods a throttling store.
//! This controller climbs a hill instead: it starts at a floor, measures the throughput of
//! each round (as many completed requests as the limit allows at once), and raises the limit
//! while a round is faster than the one before (doubling, up to a ceiling); a round that is no
//! faster takes the limit back to the level that was. A throttled request (the store said
//! SlowDown or 429: [`ErrorKind::Throttled`](crate::storage::ErrorKind), counted by the retry
//! wrapper, never read from a message) halves the limit and makes the level at which it
//! happened unreachable for the rest of the transfer; the limit then grows back one request a
//! round below that level. Memory stays the budget's business: a request waits for its budget
//! share before it waits for a slot here, so the limit only decides how much of the budget is
//! put to work. A configured concurrency is a hard cap: the controller starts there and never
//! goes above it (throttling may still take it lower).

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use super::TransferConfig;
use crate::storage::{self, Driver};

/// A round faster than the previous one by less than this share is no gain (noise).
const GAIN: f64 = 1.1;

/// The concurrency limit of one transfer; shared by its requests (`Arc`).
#[derive(Debug)]
pub struct Adaptive {
    ceiling: usize,
    state: Mutex<State>,
    freed: Notify,
}

#[derive(Debug)]
struct State {
    limit: usize,
    /// The limit never rises above this: the ceiling, lowered by throttling and by rounds
    /// that gained nothing.
    cap: usize,
    in_flight: usize,
    /// Bumped whenever the limit changes: a request that started under another limit does
    /// not count toward the current round (and cannot back off twice for one burst).
    epoch: u64,
    /// Doubling until the first throttle, one at a time after it.
    slow_start: bool,
    /// The epoch the last back-off started: requests older than it were part of the burst
    /// it answered.
    backed_off: u64,
    round: Round,
    /// The previous round's limit and throughput (bytes per second).
    previous: Option<(usize, f64)>,
}

#[derive(Debug)]
struct Round {
    started: Instant,
    requests: usize,
    bytes: u64,
}

impl Round {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            requests: 0,
            bytes: 0,
        }
    }
}

impl Adaptive {
    /// Starts at `floor` and may grow to `ceiling` (equal: a fixed limit, lowered only by
    /// throttling).
    pub fn new(floor: usize, ceiling: usize) -> Arc<Self> {
        let floor = floor.max(1);
        let ceiling = ceiling.max(floor);
        Arc::new(Self {
            ceiling,
            state: Mutex::new(State {
                limit: floor,
                cap: ceiling,
                in_flight: 0,
                epoch: 0,
                slow_start: true,
                backed_off: 0,
                round: Round::new(),
                previous: None,
            }),
            freed: Notify::new(),
        })
    }

    /// The configured range: `cfg.concurrency` fixed when it was set, else adaptive from it
    /// up to `cfg.adaptive_ceiling`.
    pub fn for_config(cfg: &TransferConfig) -> Arc<Self> {
        Self::new(cfg.concurrency, cfg.max_concurrency())
    }

    /// The most requests it ever allows in flight.
    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// Runs one request of `bytes` bytes to `driver` once a slot is free, and learns from it
    /// (its throughput, and whether the store throttled while it ran).
    pub async fn run<T>(
        &self,
        driver: &dyn Driver,
        bytes: u64,
        request: impl Future<Output = storage::Result<T>>,
    ) -> storage::Result<T> {
        let epoch = self.acquire().await;
        let slot = Slot {
            owner: self,
            epoch,
            done: None,
        };
        let throttles = driver.throttle_count();
        let out = request.await;
        let throttled = driver.throttle_count() > throttles;
        slot.finish(out.is_ok().then_some(bytes), throttled);
        out
    }

    async fn acquire(&self) -> u64 {
        loop {
            let freed = self.freed.notified();
            {
                let mut st = self.lock();
                if st.in_flight < st.limit {
                    st.in_flight += 1;
                    return st.epoch;
                }
            }
            freed.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the counts are still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A request in flight; gives its slot back when dropped (also when the request is cancelled).
struct Slot<'a> {
    owner: &'a Adaptive,
    epoch: u64,
    /// Bytes moved (None: failed) and whether the store throttled meanwhile, once the
    /// request ended.
    done: Option<(Option<u64>, bool)>,
}

impl Slot<'_> {
    fn finish(mut self, bytes: Option<u64>, throttled: bool) {
        self.done = Some((bytes, throttled));
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut st = self.owner.lock();
        st.in_flight -= 1;
        if let Some((bytes, throttled)) = self.done {
            st.learn(self.epoch, bytes, throttled);
        }
        drop(st);
        self.owner.freed.notify_waiters();
    }
}

impl State {
    fn learn(&mut self, epoch: u64, bytes: Option<u64>, throttled: bool) {
        if throttled {
            if epoch >= self.backed_off {
                self.back_off();
            }
            return;
        }
        let Some(bytes) = bytes.filter(|_| epoch == self.epoch) else {
            return;
        };
        self.round.requests += 1;
        self.round.bytes += bytes;
        if self.round.requests < self.limit {
            return;
        }
        let secs = self.round.started.elapsed().as_secs_f64().max(1e-6);
        let rate = self.round.bytes as f64 / secs;
        let next = match self.previous {
            // A level reached by growing that was no faster: back to the one before, and
            // stay there.
            Some((before, was)) if before < self.limit && rate < was * GAIN => {
                self.cap = before;
                before
            }
            _ if self.slow_start => (self.limit * 2).min(self.cap),
            _ => (self.limit + 1).min(self.cap),
        };
        self.previous = Some((self.limit, rate));
        self.set_limit(next);
    }

    fn back_off(&mut self) {
        tracing::debug!(
            limit = self.limit,
            "store throttled: fewer requests in flight"
        );
        self.cap = self.limit.saturating_sub(1).max(1);
        self.slow_start = false;
        self.previous = None;
        self.set_limit((self.limit / 2).max(1));
        self.backed_off = self.epoch;
    }

    fn set_limit(&mut self, limit: usize) {
        if limit != self.limit {
            tracing::debug!(from = self.limit, to = limit, "requests in flight");
        }
        self.limit = limit;
        self.epoch += 1;
        self.round = Round::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(floor: usize, ceiling: usize) -> State {
        Arc::try_unwrap(Adaptive::new(floor, ceiling))
            .expect("sole owner")
            .state
            .into_inner()
            .expect("lock")
    }

    /// Completes one whole round of requests at the current limit.
    fn round(st: &mut State) {
        let epoch = st.epoch;
        for _ in 0..st.limit {
            st.learn(epoch, Some(1 << 20), false);
        }
    }

    #[test]
    fn a_fixed_limit_never_grows() {
        let mut st = state(3, 3);
        for _ in 0..5 {
            round(&mut st);
        }
        assert_eq!(st.limit, 3);
    }

    #[test]
    fn throttling_halves_the_limit_and_bars_the_level_it_happened_at() {
        let mut st = state(4, 16);
        st.limit = 8;
        let epoch = st.epoch;
        st.learn(epoch, None, true);
        assert_eq!((st.limit, st.cap), (4, 7));
        // The same burst seen by requests of the earlier limit does not count again.
        st.learn(epoch, None, true);
        assert_eq!((st.limit, st.cap), (4, 7));
        for _ in 0..10 {
            round(&mut st);
        }
        assert!(st.limit <= 7, "{}", st.limit);
    }

    #[test]
    fn requests_of_an_earlier_limit_do_not_complete_a_round() {
        let mut st = state(2, 16);
        let stale = st.epoch;
        st.set_limit(2);
        for _ in 0..10 {
            st.learn(stale, Some(1), false);
        }
        assert_eq!((st.limit, st.round.requests), (2, 0));
    }
}
