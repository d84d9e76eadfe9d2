//! What each live allocation was charged: device pointers, VMM handles, arrays, contexts
//! (memory pools keep their own account: `pools`).
//! Sharded maps behind spin locks (no list walks on free); all locks are taken around `fork`.

use crate::spinlock::SpinLock;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// What was charged for one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// CUDA ordinal.
    pub ordinal: i32,
    /// Bytes charged.
    pub bytes: u64,
}

/// The kinds of objects tracked, each in its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `CUdeviceptr` from `cuMemAlloc*`.
    Pointer,
    /// `CUmemGenericAllocationHandle`.
    Handle,
    /// `CUarray` / `CUmipmappedArray`.
    Array,
    /// Extra contexts from `cuCtxCreate`.
    Context,
    /// Pinned host memory standing in for device memory past the limit (spill).
    Spilled,
    /// Managed memory kept on the host standing in for device memory past the limit (spill).
    SpilledManaged,
}

/// A multiplicative hasher: keys are addresses and handles, already well spread, and SipHash
/// would cost more than the rest of the allocation path.
#[derive(Default)]
pub struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ *b as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(n as u64);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

const SHARDS: usize = 16;
type Map = Option<HashMap<(Kind, u64), Charge, BuildHasherDefault<AddressHasher>>>;
static MAPS: [SpinLock<Map>; SHARDS] = [const { SpinLock::new(None) }; SHARDS];

fn shard(key: u64) -> &'static SpinLock<Map> {
    &MAPS[((key >> 12) ^ (key >> 21)) as usize % SHARDS]
}

/// Records a charge.
pub fn insert(kind: Kind, key: u64, charge: Charge) {
    shard(key).with(|m| {
        m.get_or_insert_with(HashMap::default)
            .insert((kind, key), charge)
    });
}

/// Removes and returns a charge.
pub fn remove(kind: Kind, key: u64) -> Option<Charge> {
    shard(key).with(|m| m.as_mut()?.remove(&(kind, key)))
}

/// The charge recorded for `key`, left in place.
pub fn get(kind: Kind, key: u64) -> Option<Charge> {
    shard(key).with(|m| m.as_ref()?.get(&(kind, key)).copied())
}

/// Fork prepare: take every lock.
pub fn lock_all() {
    MAPS.iter().for_each(|m| m.raw_lock());
}

/// Fork parent / child: release every lock.
pub fn unlock_all() {
    MAPS.iter().for_each(|m| m.raw_unlock());
}

/// Fork child: the parent's allocations are not the child's.
pub fn forget_all() {
    MAPS.iter().for_each(|m| m.with(|m| *m = None));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_separate_namespaces() {
        insert(
            Kind::Pointer,
            0x1000,
            Charge {
                ordinal: 0,
                bytes: 5,
            },
        );
        insert(
            Kind::Handle,
            0x1000,
            Charge {
                ordinal: 1,
                bytes: 7,
            },
        );
        assert_eq!(
            remove(Kind::Pointer, 0x1000),
            Some(Charge {
                ordinal: 0,
                bytes: 5
            })
        );
        assert_eq!(remove(Kind::Pointer, 0x1000), None);
        assert_eq!(remove(Kind::Handle, 0x1000).map(|c| c.bytes), Some(7));
    }
}
