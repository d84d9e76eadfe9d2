//! Node-name hashing: a fast hash for the maps keyed by node name that every `filter` and
//! `prioritize` looks thousands of names up in. Node names come from the API server, not from
//! untrusted clients, so a keyed hash (std's SipHash) buys nothing there and costs a third of
//! a lookup.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// FNV-1a over the bytes written, eight at a time where it can.
#[derive(Debug, Clone, Copy)]
pub struct NameHasher(u64);

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for NameHasher {
    fn default() -> NameHasher {
        NameHasher(OFFSET)
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            self.0 = (self.0 ^ word).wrapping_mul(PRIME).rotate_left(23);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0 ^ b as u64).wrapping_mul(PRIME);
        }
    }

    fn finish(&self) -> u64 {
        // Mix the high bits down: hashbrown takes its control bits from the top.
        let h = self.0;
        (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (h >> 32)
    }
}

/// A map keyed by node name with [`NameHasher`].
pub type NameMap<V> = HashMap<String, V, BuildHasherDefault<NameHasher>>;

/// The hash of one node name (the same for equal names, in every process).
pub fn name_hash(name: &str) -> u64 {
    BuildHasherDefault::<NameHasher>::default().hash_one(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_hash_equal_and_near_names_apart() {
        assert_eq!(name_hash("node-00001"), name_hash("node-00001"));
        let mut seen = std::collections::HashSet::new();
        for n in 0..20_000 {
            assert!(
                seen.insert(name_hash(&format!("node-{n:05}"))),
                "collision at {n}"
            );
            assert!(seen.insert(name_hash(&format!("gpu-worker-{n}.example.com"))));
        }
        let mut m: NameMap<u32> = NameMap::default();
        m.insert("a".into(), 1);
        m.insert("node-1".into(), 2);
        assert_eq!(m.get("node-1"), Some(&2));
        assert_eq!(m.get("node-2"), None);
    }
}
