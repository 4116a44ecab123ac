//! Stable, platform-independent hashing for feature hashing (the trained artifact depends on
//! these exact functions: changing them invalidates the model).

/// The splitmix64 finalizer: a fast, well-mixing 64-bit permutation.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over bytes, seeded, then mixed.
#[inline]
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x100_0000_01b3);
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    mix64(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_values() {
        // Pinned: the committed model artifact was trained with these.
        assert_eq!(mix64(0), 0xe220_a839_7b1d_cdaf);
        assert_ne!(hash_bytes(1, b"abc"), hash_bytes(2, b"abc"));
        assert_eq!(hash_bytes(7, b"ignore"), hash_bytes(7, b"ignore"));
    }
}
