//! Part sizes: every object fits the part limit, and parts stay small while they can.
//!
//! A plan starts from what is known of the object's size ([`ObjectSize`]): a file's exact
//! size, an upper bound (a tar.gz: the tar stream's exact size, computed from the tree before it
//! starts, plus the gzip pipeline's worst case), or nothing (a zip). With a size or a bound,
//! every part has the same size: the base size up to `base x max_parts`, and the smallest whole
//! number of MiB that fits the object into the part limit beyond. With nothing known, parts
//! start at the base size and double every `max_parts / 10` parts, so 10,000 S3 parts of
//! 8 MiB, 16 MiB, ... reach 7.8 TiB. Either way the plan is a pure function of (size or bound,
//! part index), so a regenerated stream is cut at the same offsets (what resuming needs).

use crate::storage::MultipartLimits;

const MIB: u64 = 1 << 20;

/// What is known of an object's size before its first byte is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectSize {
    /// Exactly this many bytes (a file): the last part is cut to what is left.
    Exact(u64),
    /// At most this many bytes (a tar.gz): parts are planned for the bound.
    AtMost(u64),
    /// No bound (a zip being written): parts grow with the part index.
    Unknown,
}

impl ObjectSize {
    /// The exact size, if known.
    pub fn exact(self) -> Option<u64> {
        match self {
            Self::Exact(n) => Some(n),
            _ => None,
        }
    }

    /// The size parts are planned for: exact or bound.
    fn planned(self) -> Option<u64> {
        match self {
            Self::Exact(n) | Self::AtMost(n) => Some(n),
            Self::Unknown => None,
        }
    }
}

impl From<Option<u64>> for ObjectSize {
    fn from(size: Option<u64>) -> Self {
        size.map_or(Self::Unknown, Self::Exact)
    }
}

/// The size of every part of one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    base: u64,
    limits: MultipartLimits,
    fixed: Option<u64>,
}

impl PartPlan {
    /// A plan for an object of `size`, starting from `base`-sized parts.
    pub fn new(base: u64, limits: MultipartLimits, size: ObjectSize) -> Self {
        let base = base.clamp(limits.min_part_size, limits.max_part_size);
        let fixed = size.planned().map(|s| {
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
        let plan = PartPlan::new(8 * MIB, MultipartLimits::S3, ObjectSize::Unknown);
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
        let plan = PartPlan::new(8 * MIB, MultipartLimits::S3, ObjectSize::Exact(2 << 30));
        assert_eq!(plan.part_size(1), 8 * MIB);
        let huge = 5 * TIB;
        let plan = PartPlan::new(8 * MIB, MultipartLimits::S3, ObjectSize::Exact(huge));
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
        let plan = PartPlan::new(5 * MIB, limits, ObjectSize::Unknown);
        let sizes: Vec<u64> = (1..=4).map(|n| plan.part_size(n) / MIB).collect();
        assert_eq!(sizes, [5, 10, 20, 40]);
        assert!(plan.max_object_size() > 10 * 5 * MIB * 100);
    }

    #[test]
    fn a_bound_keeps_base_parts_up_to_base_times_the_part_limit_and_grows_beyond() {
        let limits = MultipartLimits {
            max_parts: 20,
            ..MultipartLimits::S3
        };
        let at_limit = PartPlan::new(5 * MIB, limits, ObjectSize::AtMost(100 * MIB));
        assert_eq!(at_limit.part_size(1), 5 * MIB);
        assert_eq!(at_limit.part_size(20), 5 * MIB, "no growth with the index");
        let beyond = PartPlan::new(5 * MIB, limits, ObjectSize::AtMost(100 * MIB + 1));
        assert_eq!(
            beyond.part_size(1),
            6 * MIB,
            "the next whole MiB that fits 20 parts"
        );
        assert_eq!(beyond.part_size(20), 6 * MIB);
        // The same bound gives the same cuts, whatever produced it first.
        assert_eq!(
            beyond,
            PartPlan::new(5 * MIB, limits, ObjectSize::AtMost(100 * MIB + 1))
        );
    }

    #[test]
    fn base_is_clamped_to_the_backend_minimum() {
        let plan = PartPlan::new(1, MultipartLimits::S3, ObjectSize::Unknown);
        assert_eq!(plan.part_size(1), 5 * MIB);
    }
}
