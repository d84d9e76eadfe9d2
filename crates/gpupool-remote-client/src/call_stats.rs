//! Per-call counts of what the client sent, for finding round trips a program pays for:
//! with `GPUPOOL_REMOTE_STATS=1`, each call sent waiting for its reply or without waiting is
//! counted by its number, and the counts are printed on stderr at exit, with how many module
//! and library images were sent whole (and their bytes) or by key.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

/// Call numbers counted (every table and hand-written call is below this).
const CALLS: usize = 256;

static WAITED: [AtomicU64; CALLS] = [const { AtomicU64::new(0) }; CALLS];
static SENT: [AtomicU64; CALLS] = [const { AtomicU64::new(0) }; CALLS];

/// Images sent whole, their bytes, and images sent by key.
static IMAGES: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// Counts a module or library image of `bytes` sent whole, or only its key (`by_key`).
pub fn image(bytes: usize, by_key: bool) {
    if !enabled() {
        return;
    }
    if by_key {
        IMAGES[2].fetch_add(1, Relaxed);
    } else {
        IMAGES[0].fetch_add(1, Relaxed);
        IMAGES[1].fetch_add(bytes as u64, Relaxed);
    }
}

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("GPUPOOL_REMOTE_STATS").is_some_and(|v| v != "0"))
}

/// Counts call `id`, waited for (`sync`) or not.
pub fn count(id: u16, sync: bool) {
    if !enabled() {
        return;
    }
    let table = if sync { &WAITED } else { &SENT };
    if let Some(c) = table.get(id as usize) {
        c.fetch_add(1, Relaxed);
    }
}

/// The counts as lines `call N: waited W, sent S`, most round trips first.
pub fn report() -> Vec<String> {
    let mut rows: Vec<(usize, u64, u64)> = (0..CALLS)
        .map(|i| (i, WAITED[i].load(Relaxed), SENT[i].load(Relaxed)))
        .filter(|&(_, w, s)| w + s > 0)
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)));
    let mut lines: Vec<String> = rows
        .into_iter()
        .map(|(i, w, s)| format!("call {i}: waited {w}, sent {s}"))
        .collect();
    let [whole, bytes, by_key] = IMAGES.each_ref().map(|c| c.load(Relaxed));
    if whole + by_key > 0 {
        lines.push(format!(
            "images: sent {whole} ({bytes} bytes), by key {by_key}"
        ));
    }
    lines
}

/// Prints [`report`] on stderr when counting is on.
pub fn print_at_exit() {
    if enabled() {
        for line in report() {
            eprintln!("gpupool remote GPU: {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_reported_most_round_trips_first() {
        WAITED[7].fetch_add(3, Relaxed);
        SENT[9].fetch_add(5, Relaxed);
        let r = report();
        let seven = r
            .iter()
            .position(|l| l == "call 7: waited 3, sent 0")
            .unwrap();
        let nine = r
            .iter()
            .position(|l| l == "call 9: waited 0, sent 5")
            .unwrap();
        assert!(seven < nine, "{r:?}");
    }
}
