//! Physical VMM memory stays charged while it is mapped: the driver frees a handle's memory at the
//! last `cuMemUnmap` of its mappings, not at `cuMemRelease`. Mappings are recorded by address
//! (with their handle), and a handle released while mapped keeps its charge here until its last
//! mapping goes. Not a fast path: one spin lock.

use crate::spinlock::{ForgetAfterFork, PerProcess};
use crate::tracking::Charge;
use std::collections::{BTreeMap, HashMap};

#[derive(Default)]
struct State {
    /// Mapped ranges by start address: (size, handle).
    mappings: BTreeMap<u64, (u64, u64)>,
    /// Per handle: live mappings, and its charge once it was released while mapped.
    handles: HashMap<u64, (u32, Option<Charge>)>,
}

static STATE: PerProcess<State> = PerProcess::new();

/// This module's state, which a forked child forgets (`lifecycle`).
pub fn fork_state() -> &'static dyn ForgetAfterFork {
    &STATE
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(f)
}

/// Records that `handle` was mapped at `va` for `size` bytes.
pub fn mapped(va: u64, size: u64, handle: u64) {
    with(|s| {
        if let Some((_, old)) = s.mappings.insert(va, (size, handle)) {
            // A range replaced without an unmap we saw: its handle loses that mapping.
            drop_mapping(s, old);
        }
        s.handles.entry(handle).or_default().0 += 1;
    });
}

/// Forgets one mapping of `handle`; its deferred charge when that was the last.
fn drop_mapping(s: &mut State, handle: u64) -> Option<Charge> {
    let entry = s.handles.get_mut(&handle)?;
    entry.0 = entry.0.saturating_sub(1);
    if entry.0 > 0 {
        return None;
    }
    s.handles.remove(&handle).and_then(|(_, c)| c)
}

/// Records that `[va, va + size)` was unmapped; returns the charges of handles released earlier
/// whose last mapping this was (to give back now).
pub fn unmapped(va: u64, size: u64) -> Vec<Charge> {
    with(|s| {
        let end = va.saturating_add(size);
        let gone: Vec<(u64, u64)> = s
            .mappings
            .range(va..end)
            .map(|(start, (_, handle))| (*start, *handle))
            .collect();
        let mut due = Vec::new();
        for (start, handle) in gone {
            s.mappings.remove(&start);
            if let Some(c) = drop_mapping(s, handle) {
                due.push(c);
            }
        }
        due
    })
}

/// `handle` was released with `charge`: `Some(charge)` to give back now, or `None` when it is
/// still mapped (the charge is kept until its last unmap).
pub fn released(handle: u64, charge: Charge) -> Option<Charge> {
    with(|s| match s.handles.get_mut(&handle) {
        Some(entry) if entry.0 > 0 => {
            entry.1 = Some(charge);
            None
        }
        _ => Some(charge),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_released_while_mapped_is_charged_until_its_last_unmap() {
        let c = Charge {
            ordinal: 0,
            bytes: 1 << 30,
        };
        // Not mapped: given back at once.
        assert_eq!(released(0x10, c), Some(c));
        // Mapped twice, released, unmapped one range at a time.
        mapped(0x1000_0000, 1 << 30, 0x20);
        mapped(0x9000_0000, 1 << 30, 0x20);
        assert_eq!(released(0x20, c), None);
        assert!(unmapped(0x1000_0000, 1 << 30).is_empty());
        assert_eq!(unmapped(0x9000_0000, 1 << 30), vec![c]);
        // One unmap covering several mappings.
        mapped(0x4000_0000, 1 << 20, 0x30);
        mapped(0x4010_0000, 1 << 20, 0x30);
        assert_eq!(released(0x30, c), None);
        assert_eq!(unmapped(0x4000_0000, 2 << 20), vec![c]);
        assert!(unmapped(0x4000_0000, 2 << 20).is_empty(), "nothing twice");
    }
}
