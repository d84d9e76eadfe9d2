//! What memory pools are charged: what a pool holds, not only what is live in it.
//!
//! A pool keeps memory freed into it (up to its release threshold until the next
//! synchronisation, or until trimmed; PyTorch's and JAX's stream-ordered allocators set the
//! threshold to keep everything), and while it keeps that memory no neighbour can have it. So
//! each pool of the process is charged the larger of its live allocations (each rounded to the
//! granularity, reserved before the driver is asked) and what the driver says the pool reserves
//! (`CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT`), read again after each allocation and free in it and
//! at each memory query. When a reservation on a device is refused, the process's pools there
//! are trimmed and read again before the refusal stands ([`give_back_kept`]): kept memory never
//! costs the tenant an allocation it could make. A device's graph memory (what graphs'
//! allocation nodes take when launched, kept by the driver for later launches) is charged the
//! same way, as one more pool (`graph_memory`).

use crate::driver::pool as drv;
use crate::real;
use crate::spinlock::{ForgetAfterFork, PerProcess};
use crate::tenant::{self, Account};
use crate::tracking::AddressHasher;
use gpupool_cuda::cu::{CUevent, CUmemoryPool, CUstream};
use gpupool_cuda::result::CUDA_SUCCESS;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// One pool of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolCharge {
    /// The pool's handle.
    pub handle: u64,
    /// CUDA ordinal it allocates on.
    pub ordinal: i32,
    /// Bytes of its live allocations, as charged.
    pub live: u64,
    /// Bytes charged for it now.
    pub charged: u64,
    /// Destroyed while allocations were still live (the driver cannot be asked any more).
    pub destroyed: bool,
}

impl PoolCharge {
    /// Sets the charge from what the driver says the pool reserves (`None`: unknown) and
    /// returns the change.
    pub fn settle(&mut self, reserved: Option<u64>) -> i128 {
        let held = if self.destroyed {
            self.live
        } else {
            self.live.max(reserved.unwrap_or(0))
        };
        let delta = held as i128 - self.charged as i128;
        self.charged = held;
        delta
    }
}

/// A live allocation from a pool.
#[derive(Debug, Clone, Copy)]
struct Block {
    pool: u64,
    bytes: u64,
}

#[derive(Default)]
struct State {
    pools: Vec<PoolCharge>,
    blocks: HashMap<u64, Block, BuildHasherDefault<AddressHasher>>,
}

impl State {
    fn pool(&mut self, handle: u64, ordinal: i32) -> &mut PoolCharge {
        match self.pools.iter().position(|p| p.handle == handle) {
            Some(i) => &mut self.pools[i],
            None => {
                self.pools.push(PoolCharge {
                    handle,
                    ordinal,
                    live: 0,
                    charged: 0,
                    destroyed: false,
                });
                self.pools.last_mut().expect("just pushed")
            }
        }
    }
}

static STATE: PerProcess<State> = PerProcess::new();

/// This module's state, which a forked child forgets (`lifecycle`).
pub fn fork_state() -> &'static dyn ForgetAfterFork {
    &STATE
}

/// Whether a pool (not graph memory) is charged more than its live blocks: only then can a
/// synchronisation change what the process is charged.
static KEEPS: AtomicBool = AtomicBool::new(false);

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| {
        let r = f(s);
        KEEPS.store(s.pools.iter().any(keeps), Relaxed);
        r
    })
}

/// Whether `p` is a pool charged for memory it keeps beyond its live blocks.
fn keeps(p: &PoolCharge) -> bool {
    p.handle < GRAPH_MEMORY && !p.destroyed && p.charged > p.live
}

/// Handles standing for a device's graph memory (`graph_memory`), one per ordinal, above any
/// pool's address.
const GRAPH_MEMORY: u64 = u64::MAX - 4096;

fn graph_memory(ord: i32) -> u64 {
    GRAPH_MEMORY.saturating_add(ord.clamp(0, 4095) as u64)
}

/// What the driver says `p` reserves (nothing for a destroyed pool).
fn reserved(p: &PoolCharge) -> Option<u64> {
    if p.destroyed {
        return None;
    }
    if p.handle >= GRAPH_MEMORY {
        return drv::graph_reserved(p.ordinal);
    }
    // SAFETY: a pool this process created or looked up and has not destroyed.
    unsafe { drv::reserved(p.handle as usize as CUmemoryPool) }
}

/// Lets `p` give back what it keeps.
fn trim(p: &PoolCharge) {
    if p.handle >= GRAPH_MEMORY {
        drv::graph_trim(p.ordinal);
    } else {
        // SAFETY: a live pool of this process.
        unsafe { drv::trim(p.handle as usize as CUmemoryPool) };
    }
}

/// Applies `delta` to the account of ordinal `ord`.
fn charge(ord: i32, delta: i128) {
    if delta != 0 {
        if let Ok(Some(acct)) = tenant::lookup_account(ord) {
            acct.adjust(delta);
        }
    }
}

/// Remembers that `pool` allocates on ordinal `ord`.
pub fn remember(pool: u64, ord: i32) {
    with(|s| s.pool(pool, ord).ordinal = ord);
}

/// The ordinal `pool` allocates on, if known.
pub fn device(pool: u64) -> Option<i32> {
    with(|s| s.pools.iter().find(|p| p.handle == pool).map(|p| p.ordinal))
}

/// The pool `cuMemAllocAsync` takes from on ordinal `ord` (remembered).
pub fn current(ord: i32) -> Option<u64> {
    let pool = drv::current(ord)? as u64;
    remember(pool, ord);
    Some(pool)
}

/// After the driver allocated `ptr` (`bytes` charged, already reserved on `acct`) from `pool`:
/// records the block and charges the pool what it now holds.
pub fn allocated(acct: &Account, pool: u64, ptr: u64, bytes: u64) {
    let delta = with(|s| {
        s.blocks.insert(ptr, Block { pool, bytes });
        let p = s.pool(pool, acct.ordinal);
        p.live = p.live.saturating_add(bytes);
        let r = reserved(p);
        p.settle(r)
    });
    // The reservation made for the block is part of the pool's new charge.
    acct.adjust(delta - bytes as i128);
}

/// After a graph launch on `acct`'s device (`provisional` bytes reserved for it on `acct`):
/// the device's graph memory is charged what it holds now, like a pool.
pub fn graph_launched(acct: &Account, provisional: u64) {
    let delta = with(|s| {
        let p = s.pool(graph_memory(acct.ordinal), acct.ordinal);
        let r = reserved(p);
        p.settle(r)
    });
    acct.adjust(delta - provisional as i128);
}

/// Frees `ptr` with `call` if it came from a pool (else hands `call` back): the pool's charge
/// follows what it still holds, so memory it keeps stays charged.
pub fn free<F: FnOnce() -> u32>(ptr: u64, call: F) -> Result<u32, F> {
    // Taken out before the driver call: once freed, the address may come back from another
    // thread's allocation.
    let Some(block) = with(|s| s.blocks.remove(&ptr)) else {
        return Err(call);
    };
    crate::idle_gate::enter();
    let rc = call();
    if rc != CUDA_SUCCESS {
        with(|s| s.blocks.insert(ptr, block));
        return Ok(rc);
    }
    let settled = with(|s| {
        let i = s.pools.iter().position(|p| p.handle == block.pool)?;
        let p = &mut s.pools[i];
        p.live = p.live.saturating_sub(block.bytes);
        let r = reserved(p);
        let (ord, delta) = (p.ordinal, p.settle(r));
        if p.destroyed && p.live == 0 {
            s.pools.swap_remove(i);
        }
        Some((ord, delta))
    });
    if let Some((ord, delta)) = settled {
        charge(ord, delta);
    }
    Ok(rc)
}

/// After the driver destroyed `pool`: what it kept is given back; its live allocations stay
/// charged until freed.
pub fn destroyed(pool: u64) {
    let settled = with(|s| {
        let i = s.pools.iter().position(|p| p.handle == pool)?;
        let p = &mut s.pools[i];
        p.destroyed = true;
        let (ord, delta) = (p.ordinal, p.settle(None));
        if p.live == 0 {
            s.pools.swap_remove(i);
        }
        Some((ord, delta))
    });
    if let Some((ord, delta)) = settled {
        charge(ord, delta);
    }
}

/// Reads again what each pool on ordinal `ord` holds (after trimming it when `give_back`);
/// returns the bytes given back to the tenant.
fn settle_device(ord: i32, give_back: bool) -> u64 {
    let delta: i128 = with(|s| {
        s.pools
            .iter_mut()
            .filter(|p| p.ordinal == ord && !p.destroyed)
            .map(|p| {
                if give_back {
                    trim(p);
                }
                let r = reserved(p);
                p.settle(r)
            })
            .sum()
    });
    charge(ord, delta);
    u64::try_from(-delta).unwrap_or(0)
}

/// Before answering a memory query on ordinal `ord`: charges what its pools hold now (memory a
/// pool gave back at a synchronisation is no longer charged).
pub fn refresh(ord: i32) {
    if with(|s| s.pools.iter().any(|p| p.ordinal == ord && p.charged > 0)) {
        settle_device(ord, false);
    }
}

/// After a synchronisation that returned `rc`: pools release what they keep past their
/// threshold then, so each pool that keeps memory is charged what it holds now. One relaxed
/// load when none keeps any.
pub fn synchronized(rc: u32) -> u32 {
    if rc == CUDA_SUCCESS && KEEPS.load(Relaxed) {
        let changes: Vec<(i32, i128)> = with(|s| {
            s.pools
                .iter_mut()
                .filter(|p| keeps(p))
                .map(|p| {
                    let r = reserved(p);
                    (p.ordinal, p.settle(r))
                })
                .collect()
        });
        for (ord, delta) in changes {
            charge(ord, delta);
        }
    }
    rc
}

macro_rules! synchronize_hooks {
    ($($hook:ident => $real:ident($($arg:ident: $ty:ty),*);)*) => {$(
        /// Hook for the synchronisation of the same name: the checkpoint gate, then
        /// [`synchronized`].
        pub unsafe fn $hook($($arg: $ty),*) -> u32 {
            crate::idle_gate::enter();
            // SAFETY: forwarding.
            synchronized(unsafe { real::$real($($arg),*) })
        }
    )*};
}

synchronize_hooks! {
    stream_synchronize => cuStreamSynchronize(s: CUstream);
    stream_synchronize_ptsz => cuStreamSynchronize_ptsz(s: CUstream);
    ctx_synchronize => cuCtxSynchronize();
    event_synchronize => cuEventSynchronize(e: CUevent);
}

/// When a reservation on ordinal `ord` is refused: the process's pools there give back what
/// they keep; returns the bytes that came back.
pub fn give_back_kept(ord: i32) -> u64 {
    if !with(|s| {
        s.pools
            .iter()
            .any(|p| p.ordinal == ord && p.charged > p.live)
    }) {
        return 0;
    }
    settle_device(ord, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(live: u64, charged: u64) -> PoolCharge {
        PoolCharge {
            handle: 1,
            ordinal: 0,
            live,
            charged,
            destroyed: false,
        }
    }

    #[test]
    fn a_pool_is_charged_what_it_holds_or_its_live_blocks_whichever_is_more() {
        let mut p = pool(64, 64);
        assert_eq!(p.settle(Some(64)), 0);
        p.live = 0;
        assert_eq!(p.settle(Some(64)), 0, "freed but kept: still charged");
        assert_eq!(p.settle(Some(0)), -64, "given back at a synchronisation");
        p.live = 32;
        assert_eq!(p.settle(Some(96)), 96, "grew past its block");
        assert_eq!(p.settle(None), -64, "unknown: its live blocks");
        assert_eq!(p.charged, 32);
    }

    #[test]
    fn a_destroyed_pool_is_charged_its_live_blocks_only() {
        let mut p = pool(32, 128);
        p.destroyed = true;
        assert_eq!(p.settle(Some(128)), -96);
        assert_eq!(p.charged, 32);
    }
}
