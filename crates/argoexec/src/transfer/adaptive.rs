//! Adaptive concurrency: how many requests of one transfer (ranged reads, parts) are in flight.
//!
//! A fixed number of connections either leaves a fast link idle or floods a throttling store.
//! This controller climbs a hill instead: it starts at a floor, measures the throughput of
//! each round, and raises the limit while a round is faster than the one before (doubling, up
//! to a ceiling); a round that is no faster takes the limit back to the level that was. A round
//! at a level is timed once the level's pipeline is full: the first `limit` requests
//! completed at a new level only fill it (most of them started under the old one, or late),
//! and the clock runs over the next `limit`. Timing the filling too made every higher level
//! look no faster than the last and kept transfers at the floor. A throttled request (the store said
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
use crate::storage::Driver;

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
    fn new(now: Instant) -> Self {
        Self {
            started: now,
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
                round: Round::new(Instant::now()),
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

    /// The files of one directory: `cfg.file_concurrency` fixed when it was set, else adaptive
    /// from it up to `cfg.file_concurrency_ceiling`. A "request" is then a whole file.
    pub fn for_files(cfg: &TransferConfig) -> Arc<Self> {
        Self::new(cfg.file_concurrency, cfg.max_file_concurrency())
    }

    /// The most requests it ever allows in flight.
    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// Runs one request of `bytes` bytes to `driver` once a slot is free, and learns from it
    /// (its throughput, and whether the store throttled while it ran).
    pub async fn run<T, E>(
        &self,
        driver: &dyn Driver,
        bytes: u64,
        request: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.run_measured(driver, request, |_| bytes).await
    }

    /// As [`Adaptive::run`], for a request whose size is known from its result (`moved`).
    pub async fn run_measured<T, E>(
        &self,
        driver: &dyn Driver,
        request: impl Future<Output = Result<T, E>>,
        moved: impl FnOnce(&T) -> u64,
    ) -> Result<T, E> {
        let epoch = self.acquire().await;
        let slot = Slot {
            owner: self,
            epoch,
            done: None,
        };
        let throttles = driver.throttle_count();
        let out = request.await;
        let throttled = driver.throttle_count() > throttles;
        slot.finish(out.as_ref().ok().map(moved), throttled);
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
            st.learn(self.epoch, bytes, throttled, Instant::now());
        }
        drop(st);
        self.owner.freed.notify_waiters();
    }
}

impl State {
    /// Learns from a request of `epoch` that ended at `now`, having moved `bytes` (None:
    /// failed) while the store did or did not throttle.
    fn learn(&mut self, epoch: u64, bytes: Option<u64>, throttled: bool, now: Instant) {
        if throttled {
            if epoch >= self.backed_off {
                self.back_off(now);
            }
            return;
        }
        let Some(bytes) = bytes.filter(|_| epoch == self.epoch) else {
            return;
        };
        self.round.requests += 1;
        if self.round.requests <= self.limit {
            // Filling the pipeline at this level: the clock starts once it is full.
            if self.round.requests == self.limit {
                self.round.started = now;
            }
            return;
        }
        self.round.bytes += bytes;
        if self.round.requests < 2 * self.limit {
            return;
        }
        let secs = now
            .saturating_duration_since(self.round.started)
            .as_secs_f64()
            .max(1e-6);
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
        self.set_limit(next, now);
    }

    fn back_off(&mut self, now: Instant) {
        tracing::debug!(
            limit = self.limit,
            "store throttled: fewer requests in flight"
        );
        self.cap = self.limit.saturating_sub(1).max(1);
        self.slow_start = false;
        self.previous = None;
        self.set_limit((self.limit / 2).max(1), now);
        self.backed_off = self.epoch;
    }

    fn set_limit(&mut self, limit: usize, now: Instant) {
        if limit != self.limit {
            tracing::debug!(from = self.limit, to = limit, "requests in flight");
        }
        self.limit = limit;
        self.epoch += 1;
        self.round = Round::new(now);
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

    /// Completes one whole round of requests at the current limit (filling, then timed).
    fn round(st: &mut State) {
        let epoch = st.epoch;
        for _ in 0..2 * st.limit {
            st.learn(epoch, Some(1 << 20), false, Instant::now());
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
        st.learn(epoch, None, true, Instant::now());
        assert_eq!((st.limit, st.cap), (4, 7));
        // The same burst seen by requests of the earlier limit does not count again.
        st.learn(epoch, None, true, Instant::now());
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
        st.set_limit(2, Instant::now());
        for _ in 0..10 {
            st.learn(stale, Some(1), false, Instant::now());
        }
        assert_eq!((st.limit, st.round.requests), (2, 0));
    }

    /// Runs `requests` requests of 1 MiB through the controller on a simulated store: each
    /// request takes 100 ms while at most `parallel` are in flight, longer in proportion
    /// beyond (a link whose total rate `parallel` connections fill). Returns the limit at the
    /// end and the most requests in flight seen.
    fn simulate(ceiling: usize, parallel: usize, requests: usize) -> (usize, usize) {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        use std::time::Duration;
        let mut st = state(4, ceiling);
        let start = Instant::now();
        let mut now = start;
        // (end, epoch) of the requests in flight, soonest first.
        let mut in_flight: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
        let (mut started, mut most) = (0, 0);
        while started < requests || !in_flight.is_empty() {
            while in_flight.len() < st.limit && started < requests {
                let n = in_flight.len() + 1;
                let ms = 100 * n.max(parallel) as u64 / parallel as u64;
                in_flight.push(Reverse((now + Duration::from_millis(ms), st.epoch)));
                started += 1;
                most = most.max(in_flight.len());
            }
            let Some(Reverse((end, epoch))) = in_flight.pop() else {
                break;
            };
            now = end;
            st.learn(epoch, Some(1 << 20), false, now);
        }
        (st.limit, most)
    }

    #[test]
    fn the_limit_climbs_to_the_ceiling_while_more_requests_are_faster() {
        // Requests that start together and end together: timing a level while it fills
        // would see no gain and stay at the floor.
        let (limit, most) = simulate(16, 64, 400);
        assert_eq!((limit, most), (16, 16));
    }

    #[test]
    fn the_limit_settles_where_more_requests_are_no_faster() {
        let (limit, most) = simulate(16, 4, 400);
        assert_eq!(limit, 4, "a link that 4 requests fill");
        assert!(most <= 8, "{most}: tried one level up at most");
    }
}
