//! A byte budget for buffers in flight, shared by every transfer of a process.
//!
//! A buffer is paid for before it is filled and paid back when its consumer is done with it
//! (the part is stored, the chunk is read), so memory stays bounded by the budget whatever the
//! number or the size of the objects being moved.

use std::io;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Accounting unit: 64 KiB, so a 4 KiB file does not cost a whole part.
const UNIT: u64 = 64 * 1024;

/// Bytes of buffers that may exist at once.
#[derive(Debug, Clone)]
pub struct Budget {
    units: Arc<Semaphore>,
    total_units: u32,
}

/// A paid share of the budget; dropping it pays it back.
pub type Permit = OwnedSemaphorePermit;

impl Budget {
    pub fn new(bytes: u64) -> Self {
        let total_units = bytes.div_ceil(UNIT).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        Self {
            units: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
        }
    }

    fn units(&self, bytes: u64) -> u32 {
        (bytes.div_ceil(UNIT).max(1) as u32).min(self.total_units)
    }

    /// Waits until `bytes` of budget are free. A request above the whole budget waits for all
    /// of it, so a single oversized buffer still makes progress.
    pub async fn acquire(&self, bytes: u64) -> io::Result<Permit> {
        self.units
            .clone()
            .acquire_many_owned(self.units(bytes))
            .await
            .map_err(|_| io::Error::other("transfer budget closed"))
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
    async fn permits_bound_what_is_held_and_oversized_requests_still_proceed() {
        let b = Budget::new(4 * UNIT);
        let p1 = b.acquire(3 * UNIT).await.expect("fits");
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), b.acquire(2 * UNIT));
        assert!(waiting.await.is_err(), "must wait while the budget is used");
        drop(p1);
        let big = b
            .acquire(100 * UNIT)
            .await
            .expect("capped at the whole budget");
        drop(big);
    }
}
