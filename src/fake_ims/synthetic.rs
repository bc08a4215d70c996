//! Deterministic building blocks for synthetic fleets of any size: the fleet benchmark
//! (`ims-bench`) and the micro-benchmarks (`benches/`) draw the same IDs and the same
//! organization from these, so their numbers describe the same data.

/// The organization path every synthetic organization member sits under (its URN is
/// this prefix and the member ID).
pub const ORG_URN_PREFIX: &str =
    "organizations::6c031a41eefc480bb60f20c003891fcd:ou:o-z5142zmm6p5cumsxralfljeb3qrwqamd/";

/// SplitMix64: a cheap, well-mixed hash of `x`, so IDs look random but never collide
/// by construction of their seeds.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
