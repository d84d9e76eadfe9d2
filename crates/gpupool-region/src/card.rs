//! Coordination of compute shares between the tenants of one card: guaranteed shares with
//! borrowing of idle time, and online (high) / offline (low) priority.
//!
//! Each tenant has a folder of its own in the node's card folder, and in it one small file per
//! card it uses (named by the card's UUID), holding an entry per process of the tenant that
//! uses the card under a compute limit: priority, request and limit, when it last launched, and
//! a heartbeat. Every such process republishes its entry about every 10 ms and computes its
//! tenant's current rate from all live entries of all tenants ([`allocate`](crate::card_share::allocate)):
//!
//! - a tenant is *busy* when one of its processes launched within [`BUSY_WINDOW_NS`];
//! - every busy high-priority tenant is guaranteed its request; the card's time not requested by
//!   busy high-priority tenants is *idle* and is lent to busy high-priority tenants whose limit
//!   is above their request, in equal parts, up to their limit; it is taken back as soon as the
//!   owner of a request becomes busy;
//! - low-priority tenants share what busy high-priority tenants do not use (borrowed time
//!   counts as used), in proportion to their requests, each up to its limit; they get 1 % (a
//!   trickle) while high-priority tenants take the whole card;
//! - while a busy high-priority tenant shares the card with other busy tenants,
//!   [`SHARED_HEADROOM_PCT`](crate::card_share::SHARED_HEADROOM_PCT) of the card is not lent nor left to low priority: switching between
//!   processes costs a real GPU some of its time, and that must not come out of requests.
//!
//! A tenant maps only its own file. Other tenants' files are read with `pread` into a private
//! copy ([`crate::card_peers`]): a file truncated, filled with garbage or replaced by something
//! else hurts no reader, and no lock is shared between tenants. An entry counts for the tenant
//! whose folder holds it, and where the node agent publishes grants (`<uuid>.grants`), a
//! tenant's request and limit are capped at its grant: a tenant can only change its own share.
//!
//! Entries are plain atomics; there is no lock but the one a tenant's own processes take to
//! create their file. A process that dies simply stops its heartbeat, and its entry is ignored
//! after [`STALE_NS`] and reused later, so a crash at any moment cannot stall the others.

use crate::card_file::{
    tenant_key, CardFile, Entry, EntryCopy, CARD_ENTRIES, CARD_MAGIC, STALE_NS,
};
use crate::card_peers::{Grants, Peers};
use crate::card_share::{Demand, BUSY_WINDOW_NS};
use crate::region::{map_shared, open_shared_file, FileLock};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::*;

/// A long kernel as a tenant publishes it in the card file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishedRun {
    /// Start on the GPU, or submission while not measured yet (ns; 0 = none).
    pub start: u64,
    /// End on the GPU (ns; 0 = still running).
    pub end: u64,
    /// GPU time it was charged (ns).
    pub cost: u64,
}

/// This tenant's view of one card: its own file (mapped, written) and the other tenants'
/// (read as copies, see [`Card::refresh`]).
pub struct Card {
    map: *mut CardFile,
    key: u64,
    name: String,
    dir: PathBuf,
    uuid: String,
    peers: Peers,
}

// SAFETY: the mapping lives as long as the process; every field of it is an atomic.
unsafe impl Send for Card {}

/// What a process publishes about itself.
#[derive(Debug, Clone, Copy)]
pub struct Publish {
    /// The process.
    pub pid: u32,
    /// Low priority?
    pub low: bool,
    /// Request (percent).
    pub request: u32,
    /// Limit (percent).
    pub limit: u32,
    /// Its last launch (`CLOCK_MONOTONIC` ns).
    pub last_launch_ns: u64,
    /// Share of the card it charged recently (millionths).
    pub used_ppm: u64,
}

impl Card {
    /// Opens (creating) tenant `tenant`'s file for card `uuid` in the card folder `card_dir`
    /// (`<card_dir>/<tenant>/<uuid>`).
    pub fn open(card_dir: &Path, tenant: &str, uuid: &str) -> Result<Card, String> {
        let path = card_dir.join(tenant).join(uuid);
        let err = |e: std::io::Error| format!("gpupool: card file {}: {e}", path.display());
        let file = open_shared_file(&path).map_err(err)?;
        let size = std::mem::size_of::<CardFile>();
        let _guard = FileLock::exclusive_within(&file, crate::region::LOCK_TIMEOUT).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        if len == 0 {
            file.set_len(size as u64).map_err(err)?;
        } else if len != size as u64 {
            return Err(format!(
                "gpupool: card file {} has an unexpected size ({len} bytes, expected {size}); remove it",
                path.display()
            ));
        }
        let map: *mut CardFile = map_shared(&file, size).map_err(err)?;
        // SAFETY: the whole file is mapped.
        let magic = unsafe { &(*map).magic };
        if len == 0 {
            magic.store(CARD_MAGIC, SeqCst);
        } else if magic.load(SeqCst) != CARD_MAGIC {
            // SAFETY: unmapping what we mapped.
            unsafe { libc::munmap(map.cast(), size) };
            return Err(format!(
                "gpupool: {} is not a card file; remove it",
                path.display()
            ));
        }
        Ok(Card {
            map,
            key: tenant_key(tenant),
            name: tenant.to_string(),
            dir: card_dir.to_path_buf(),
            uuid: uuid.to_string(),
            peers: Peers::default(),
        })
    }

    /// This tenant's key.
    pub fn key(&self) -> u64 {
        self.key
    }

    fn entries(&self) -> &[Entry; CARD_ENTRIES] {
        // SAFETY: mapped for the process's lifetime.
        unsafe { &(*self.map).entries }
    }

    /// Claims an entry for process `pid` (a free one, or one stale for long); `None` if full.
    pub fn claim(&self, pid: u32, now_ns: u64) -> Option<usize> {
        for (i, e) in self.entries().iter().enumerate() {
            let t = e.tenant.load(Acquire);
            let stale = now_ns.saturating_sub(e.heartbeat_ns.load(Relaxed)) > 10 * STALE_NS;
            if (t == 0 || stale)
                && e.tenant
                    .compare_exchange(t, self.key, AcqRel, Relaxed)
                    .is_ok()
            {
                e.pid.store(pid, Relaxed);
                e.heartbeat_ns.store(now_ns, Release);
                return Some(i);
            }
        }
        None
    }

    /// Updates entry `slot` (heartbeat = `now_ns`).
    pub fn publish(&self, slot: usize, p: &Publish, now_ns: u64) {
        let Some(e) = self.entries().get(slot) else {
            return;
        };
        e.tenant.store(self.key, Relaxed);
        e.pid.store(p.pid, Relaxed);
        e.priority.store(p.low as u32, Relaxed);
        e.request.store(p.request, Relaxed);
        e.limit.store(p.limit, Relaxed);
        e.last_launch_ns.store(p.last_launch_ns, Relaxed);
        e.used_ppm.store(p.used_ppm, Relaxed);
        e.heartbeat_ns.store(now_ns, Release);
    }

    /// Publishes the tenant's recent long kernels in entry `slot`; the first
    /// [`CARD_RUNS`](crate::card_file::CARD_RUNS)
    /// are kept.
    pub fn publish_runs(&self, slot: usize, runs: &[PublishedRun]) {
        let Some(e) = self.entries().get(slot) else {
            return;
        };
        for (i, r) in e.runs.iter().enumerate() {
            let run = runs.get(i).copied().unwrap_or_default();
            r[1].store(run.end, Relaxed);
            r[2].store(run.cost, Relaxed);
            r[0].store(run.start, Release);
        }
    }

    /// Gives entry `slot` back (at exit).
    pub fn release(&self, slot: usize) {
        if let Some(e) = self.entries().get(slot) {
            e.heartbeat_ns.store(0, Relaxed);
            e.tenant.store(0, Release);
        }
    }

    /// Reads the other tenants' files again (and, every so often, which there are, and the
    /// grants).
    pub fn refresh(&mut self, now_ns: u64) {
        self.peers
            .refresh(&self.dir, &self.name, &self.uuid, now_ns);
    }

    /// Every tenant's entries as last read: (tenant folder, key, entries); this tenant's
    /// read now.
    fn all_entries(&self) -> impl Iterator<Item = (&str, u64, EntryCopy)> + '_ {
        let own = self
            .entries()
            .iter()
            .map(move |e| (self.name.as_str(), self.key, e.copy()));
        own.chain(self.peers.entries())
    }

    /// The long kernels other tenants' live entries publish, each once (a tenant's processes
    /// publish the same ones), as last read.
    pub fn other_runs(&self, now_ns: u64) -> Vec<PublishedRun> {
        let mut out: Vec<PublishedRun> = Vec::new();
        for (_, key, e) in self.all_entries() {
            if key == self.key || !e.live(now_ns) {
                continue;
            }
            for r in &e.runs {
                let run = PublishedRun {
                    start: r[0],
                    end: r[1],
                    cost: r[2],
                };
                if run.start != 0 && !out.contains(&run) {
                    out.push(run);
                }
            }
        }
        out
    }

    /// Every live tenant's demand, one per tenant (its processes merged), capped by the grants
    /// when the node publishes them (a tenant without a grant then counts for nothing).
    pub fn demands(&self, now_ns: u64) -> Vec<Demand> {
        let grants: Option<&Grants> = self.peers.grants();
        let mut out: Vec<Demand> = Vec::new();
        for (name, tenant, e) in self.all_entries() {
            if !e.live(now_ns) {
                continue;
            }
            let busy = now_ns.saturating_sub(e.last_launch_ns) <= BUSY_WINDOW_NS;
            let mut d = Demand {
                tenant,
                low: e.priority == 1,
                request: e.request.min(100),
                limit: e.limit.min(100),
                busy,
                used_ppm: e.used_ppm.min(1_000_000),
                contexts: busy as u32,
            };
            if let Some(grants) = grants {
                let Some(g) = grants.get(name) else { continue };
                d.request = d.request.min(g.request);
                d.limit = d.limit.min(g.limit);
                d.low |= g.low;
            }
            match out.iter_mut().find(|x| x.tenant == tenant) {
                Some(x) => {
                    x.busy |= d.busy;
                    x.used_ppm = x.used_ppm.saturating_add(d.used_ppm);
                    x.contexts = x.contexts.saturating_add(d.contexts);
                }
                None => out.push(d),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card_file::STALE_NS;

    #[test]
    fn entries_of_a_tenant_merge_and_stale_ones_are_ignored() {
        let dir = std::env::temp_dir().join(format!("gpupool-card-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut seven = Card::open(&dir, "seven", "GPU-x").unwrap();
        let nine = Card::open(&dir, "nine", "GPU-x").unwrap();
        let mut eight = Card::open(&dir, "eight", "GPU-x").unwrap();
        let now = 10_000_000_000;
        let p = |last| Publish {
            pid: 1,
            low: false,
            request: 50,
            limit: 50,
            last_launch_ns: last,
            used_ppm: 250_000,
        };
        let s1 = seven.claim(1, now).unwrap();
        let s2 = seven.claim(2, now).unwrap();
        let s3 = nine.claim(3, now).unwrap();
        seven.publish(s1, &p(0), now);
        seven.publish(s2, &p(now), now);
        nine.publish(s3, &p(now), now - STALE_NS - 1);
        eight.refresh(now);
        let ds = eight.demands(now);
        assert_eq!(ds.len(), 1, "nine is stale, eight has no entry: {ds:?}");
        assert_eq!(ds[0].tenant, tenant_key("seven"));
        assert!(ds[0].busy, "one busy process makes the tenant busy");
        assert_eq!(ds[0].used_ppm, 500_000, "its processes' use adds up");
        assert_eq!(ds[0].contexts, 1, "one of its processes launched lately");
        // Long kernels: each once, other tenants' only, stale entries' never.
        let run = |start, end, cost| PublishedRun { start, end, cost };
        seven.publish_runs(s1, &[run(100, 200, 90), run(300, 0, 50)]);
        seven.publish_runs(s2, &[run(100, 200, 90)]);
        nine.publish_runs(s3, &[run(50, 60, 10)]);
        eight.refresh(now);
        assert_eq!(
            eight.other_runs(now),
            vec![run(100, 200, 90), run(300, 0, 50)]
        );
        seven.refresh(now);
        assert!(seven.other_runs(now).is_empty());
        seven.publish_runs(s1, &[]);
        eight.refresh(now);
        assert_eq!(eight.other_runs(now), vec![run(100, 200, 90)]);
        seven.release(s1);
        seven.release(s2);
        eight.refresh(now);
        assert!(eight.demands(now).is_empty());
        let again = Card::open(&dir, "seven", "GPU-x").unwrap();
        assert!(again.claim(5, now).is_some(), "released entries are reused");
        std::fs::write(dir.join("junk").join("GPU-x"), b"junk")
            .or_else(|_| {
                std::fs::create_dir_all(dir.join("junk"))
                    .and_then(|_| std::fs::write(dir.join("junk").join("GPU-x"), b"junk"))
            })
            .unwrap();
        assert!(Card::open(&dir, "junk", "GPU-x").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
