//! What the client knows about addresses: device allocations on the server (to tell a device
//! address from a host one in `cuMemcpy`), managed allocations mirrored here, and pinned or
//! registered host memory (answered locally).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// What an address range is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Device memory on the server.
    Device,
    /// Managed memory: on the server, mirrored at the same address here.
    Managed,
    /// Pinned host memory this library allocated (`cuMemAllocHost`, `cuMemHostAlloc`).
    Pinned,
    /// Host memory the program registered.
    Registered,
}

/// One range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Its size in bytes.
    pub size: u64,
    /// What it is.
    pub kind: Kind,
    /// Flags it was created with.
    pub flags: u32,
}

/// The ranges by base address (held around `fork` too: see `fork`).
pub(crate) static RANGES: Mutex<BTreeMap<u64, Range>> = Mutex::new(BTreeMap::new());

fn ranges() -> std::sync::MutexGuard<'static, BTreeMap<u64, Range>> {
    RANGES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records a range.
pub fn insert(base: u64, size: u64, kind: Kind, flags: u32) {
    ranges().insert(base, Range { size, kind, flags });
}

/// Forgets the range starting at `base`.
pub fn remove(base: u64) -> Option<Range> {
    ranges().remove(&base)
}

/// The range starting exactly at `base`.
pub fn at(base: u64) -> Option<Range> {
    ranges().get(&base).copied()
}

/// The range holding `addr`, with its base.
pub fn find(addr: u64) -> Option<(u64, Range)> {
    let r = ranges();
    let (&base, &range) = r.range(..=addr).next_back()?;
    (addr - base < range.size.max(1)).then_some((base, range))
}

/// Whether `[addr, addr + len)` lies in one recorded range.
pub fn holds(addr: u64, len: u64) -> bool {
    find(addr).is_some_and(|(base, r)| {
        (addr - base)
            .checked_add(len)
            .is_some_and(|end| end <= r.size)
    })
}

/// Whether `addr` is device memory on the server (managed memory is read here, in its mirror).
pub fn is_device(addr: u64) -> bool {
    matches!(find(addr), Some((_, r)) if r.kind == Kind::Device)
}

/// Every managed range (base, size).
pub fn managed() -> Vec<(u64, u64)> {
    ranges()
        .iter()
        .filter(|(_, r)| r.kind == Kind::Managed)
        .map(|(&b, r)| (b, r.size))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_resolve_to_their_range() {
        insert(0x10_0000, 0x1000, Kind::Device, 0);
        insert(0x20_0000, 0x1000, Kind::Pinned, 0);
        assert!(is_device(0x10_0fff));
        assert!(!is_device(0x10_1000));
        assert!(!is_device(0x20_0000));
        assert_eq!(find(0x20_0010).unwrap().0, 0x20_0000);
        assert_eq!(remove(0x10_0000).unwrap().kind, Kind::Device);
        assert!(!is_device(0x10_0000));
        remove(0x20_0000);
    }
}
