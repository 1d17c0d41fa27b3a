//! A byte budget for buffers in flight, shared by every transfer of a process.
//!
//! A buffer is paid for before it is filled and paid back when its consumer is done with it
//! (the part is stored, the chunk is read), so memory stays bounded by the budget whatever the
//! number or the size of the objects being moved. A buffer larger than the whole budget is
//! refused ([`BudgetError::TooLarge`]): paying part of it would let memory pass the ceiling.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Accounting unit: 64 KiB, so a 4 KiB file does not cost a whole part.
const UNIT: u64 = 64 * 1024;

/// Why a buffer could not be paid for.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("a buffer of {wanted} bytes does not fit the transfer memory budget of {budget} bytes")]
    TooLarge { wanted: u64, budget: u64 },
    #[error("transfer budget closed")]
    Closed,
}

/// Bytes of buffers that may exist at once.
#[derive(Debug, Clone)]
pub struct Budget {
    pool: Pool,
    /// For a [`Budget::share`]: its own limit, paid before the pool it is carved from.
    cap: Option<Pool>,
    held: Arc<Held>,
}

/// The bytes paid for now and at most so far, across every share of one budget.
#[derive(Debug, Default)]
struct Held {
    now: AtomicU64,
    high_water: AtomicU64,
}

/// One semaphore of budget units.
#[derive(Debug, Clone)]
struct Pool {
    units: Arc<Semaphore>,
    total_units: u32,
}

impl Pool {
    fn new(bytes: u64) -> Self {
        let total_units = bytes.div_ceil(UNIT).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        Self {
            units: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
        }
    }

    fn bytes(&self) -> u64 {
        u64::from(self.total_units) * UNIT
    }

    /// Waits for the units of `bytes`; a request above the whole pool is refused.
    async fn acquire(&self, bytes: u64) -> io::Result<OwnedSemaphorePermit> {
        let units = bytes.div_ceil(UNIT).max(1);
        if units > u64::from(self.total_units) {
            return Err(io::Error::other(BudgetError::TooLarge {
                wanted: bytes,
                budget: self.bytes(),
            }));
        }
        self.units
            .clone()
            .acquire_many_owned(units as u32)
            .await
            .map_err(|_| io::Error::other(BudgetError::Closed))
    }
}

/// A paid share of the budget; dropping it pays it back.
#[derive(Debug)]
pub struct Permit {
    _pool: OwnedSemaphorePermit,
    _cap: Option<OwnedSemaphorePermit>,
    bytes: u64,
    held: Arc<Held>,
}

impl Permit {
    /// `bytes` that keep this share paid until their last clone is dropped: for buffers handed
    /// to code that knows nothing of the budget (an HTTP body, a backend's upload chunk).
    pub fn attach(self, bytes: Bytes) -> Bytes {
        Bytes::from_owner(Paid {
            bytes,
            _permit: self,
        })
    }
}

/// Bytes and the share they were paid with.
struct Paid {
    bytes: Bytes,
    _permit: Permit,
}

impl AsRef<[u8]> for Paid {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.held.now.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Budget {
    pub fn new(bytes: u64) -> Self {
        Self {
            pool: Pool::new(bytes),
            cap: None,
            held: Arc::default(),
        }
    }

    /// The whole budget, in bytes.
    pub fn total(&self) -> u64 {
        self.pool.bytes()
    }

    /// The most bytes held in paid buffers at once so far: never above [`Budget::total`].
    pub fn high_water(&self) -> u64 {
        self.held.high_water.load(Ordering::Relaxed)
    }

    /// A budget drawing on this one but never holding more than `bytes` of it. A server gives
    /// one to each client: the buffers of a client that stops reading stay held until it reads
    /// again, and this bounds them, so a few stalled clients cannot take the whole budget from
    /// the others.
    pub fn share(&self, bytes: u64) -> Self {
        Self {
            pool: self.pool.clone(),
            cap: Some(Pool::new(bytes)),
            held: Arc::clone(&self.held),
        }
    }

    /// Waits until `bytes` of budget are free; a request above the whole budget (or share)
    /// is refused with [`BudgetError::TooLarge`]. A share is paid first, so a client at its
    /// limit waits on its own share and never queues for the common pool.
    pub async fn acquire(&self, bytes: u64) -> io::Result<Permit> {
        let cap = match &self.cap {
            Some(cap) => Some(cap.acquire(bytes).await?),
            None => None,
        };
        let pool = self.pool.acquire(bytes).await?;
        let now = self.held.now.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.held.high_water.fetch_max(now, Ordering::Relaxed);
        Ok(Permit {
            _pool: pool,
            _cap: cap,
            bytes,
            held: Arc::clone(&self.held),
        })
    }

    /// [`Budget::acquire`] from a blocking (non-async) thread.
    pub fn acquire_blocking(&self, handle: &Handle, bytes: u64) -> io::Result<Permit> {
        handle.block_on(self.acquire(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn permits_bound_what_is_held_and_oversized_requests_are_refused() {
        let b = Budget::new(4 * UNIT);
        let p1 = b.acquire(3 * UNIT).await.expect("fits");
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), b.acquire(2 * UNIT));
        assert!(waiting.await.is_err(), "must wait while the budget is used");
        drop(p1);
        let refused = b.acquire(4 * UNIT + 1).await.expect_err("above the budget");
        assert!(
            matches!(
                refused
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<BudgetError>()),
                Some(BudgetError::TooLarge { .. })
            ),
            "{refused}"
        );
        let whole = b.acquire(4 * UNIT).await.expect("the whole budget fits");
        drop(whole);
        assert_eq!(b.high_water(), 4 * UNIT, "never above the budget");
    }

    #[tokio::test]
    async fn a_share_holds_at_most_its_limit_and_leaves_the_rest_to_others() {
        let b = Budget::new(4 * UNIT);
        let stalled = b.share(2 * UNIT);
        let held = [
            stalled.acquire(UNIT).await.expect("within the share"),
            stalled.acquire(UNIT).await.expect("within the share"),
        ];
        let over_share =
            tokio::time::timeout(std::time::Duration::from_millis(50), stalled.acquire(UNIT));
        assert!(over_share.await.is_err(), "a share waits at its limit");
        let other = b.share(2 * UNIT);
        let fresh = other.acquire(2 * UNIT).await.expect("the rest is free");
        drop((held, fresh));
    }
}
