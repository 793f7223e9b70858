//! Jump consistent hash (Lamping & Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm",
//! 2014): maps a 64-bit key to one of `n` buckets so that growing `n` to `n + 1` moves only
//! about `1 / (n + 1)` of the keys, all of them to the new bucket. No table, no allocation.

/// The bucket of `key` among `n_buckets` (>= 1). The arithmetic follows the paper exactly
/// (LCG multiplier 2862933555777941757, 31-bit scale in f64) so that results agree with
/// other implementations of it.
pub fn jump_consistent_hash(mut key: u64, n_buckets: u32) -> u32 {
    let n = i64::from(n_buckets.max(1));
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < n {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}
