//! Part sizes: how a stream of unknown length still fits any object into the part limit.
//!
//! With a known size, every part has the same size: the base size, or larger when
//! `size / max_parts` needs it. With an unknown size (a tar.gz being written), parts start at
//! the base size and double every `max_parts / 10` parts, so 10,000 S3 parts of 8 MiB, 16 MiB,
//! ... reach 7.8 TiB, above S3's 5 TiB object limit, while a 6 GiB stream still uses only
//! 8 MiB parts. The schedule depends on the part index alone, so a regenerated stream is cut at
//! the same offsets (what resuming needs).

use crate::storage::MultipartLimits;

const MIB: u64 = 1 << 20;

/// The size of every part of one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    base: u64,
    limits: MultipartLimits,
    fixed: Option<u64>,
}

impl PartPlan {
    /// A plan for an object of `size` bytes if known, starting from `base`-sized parts.
    pub fn new(base: u64, limits: MultipartLimits, size: Option<u64>) -> Self {
        let base = base.clamp(limits.min_part_size, limits.max_part_size);
        let fixed = size.map(|s| {
            let needed = s.div_ceil(u64::from(limits.max_parts));
            let rounded = needed.div_ceil(MIB) * MIB;
            base.max(rounded).min(limits.max_part_size)
        });
        Self {
            base,
            limits,
            fixed,
        }
    }

    /// Parts per size tier of the growing schedule.
    fn tier_len(&self) -> u32 {
        (self.limits.max_parts / 10).max(1)
    }

    /// Size of part `number` (1-based).
    pub fn part_size(&self, number: u32) -> u64 {
        if let Some(f) = self.fixed {
            return f;
        }
        let tier = (number.saturating_sub(1) / self.tier_len()).min(40);
        self.base
            .saturating_mul(1u64 << tier)
            .min(self.limits.max_part_size)
    }

    /// The largest object this plan can store within the part limit.
    pub fn max_object_size(&self) -> u64 {
        (1..=self.limits.max_parts)
            .map(|n| self.part_size(n))
            .fold(0u64, u64::saturating_add)
    }

    pub fn max_parts(&self) -> u32 {
        self.limits.max_parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIB: u64 = 1 << 40;

    #[test]
    fn unknown_size_streams_reach_five_tib_on_s3() {
        let plan = PartPlan::new(8 * MIB, MultipartLimits::S3, None);
        assert!(
            plan.max_object_size() >= 5 * TIB,
            "{}",
            plan.max_object_size()
        );
        // A 6 GiB stream stays on base-size parts: memory does not grow with it.
        assert_eq!(plan.part_size(768), 8 * MIB);
        assert_eq!(plan.part_size(1001), 16 * MIB);
        assert!(plan.part_size(10_000) <= MultipartLimits::S3.max_part_size);
    }

    #[test]
    fn known_sizes_use_equal_parts_that_fit_the_part_limit() {
        let plan = PartPlan::new(8 * MIB, MultipartLimits::S3, Some(2 << 30));
        assert_eq!(plan.part_size(1), 8 * MIB);
        let huge = 5 * TIB;
        let plan = PartPlan::new(8 * MIB, MultipartLimits::S3, Some(huge));
        let p = plan.part_size(1);
        assert!(p * 10_000 >= huge && p.is_multiple_of(MIB), "{p}");
    }

    #[test]
    fn lowered_limits_exercise_the_growth_beyond_the_part_count() {
        // With 10 parts allowed, each tier is one part: 5, 10, 20, ... MiB.
        let limits = MultipartLimits {
            max_parts: 10,
            ..MultipartLimits::S3
        };
        let plan = PartPlan::new(5 * MIB, limits, None);
        let sizes: Vec<u64> = (1..=4).map(|n| plan.part_size(n) / MIB).collect();
        assert_eq!(sizes, [5, 10, 20, 40]);
        assert!(plan.max_object_size() > 10 * 5 * MIB * 100);
    }

    #[test]
    fn base_is_clamped_to_the_backend_minimum() {
        let plan = PartPlan::new(1, MultipartLimits::S3, None);
        assert_eq!(plan.part_size(1), 5 * MIB);
    }
}
