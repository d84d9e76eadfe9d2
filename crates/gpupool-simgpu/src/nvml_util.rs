//! NVML utilisation from the device timeline: `nvmlDeviceGetUtilizationRates` (percent of the
//! last sample period in which a kernel ran) and `nvmlDeviceGetProcessUtilization` (one sample
//! per process that ran since the caller's last timestamp, SM % over that time, CPU timestamps
//! in microseconds), with the same sample period (1/6 s) and list protocol as the real library.

use crate::timeline::{now_ns, Snapshot, SNAPSHOT_EVERY_NS};
use gpupool_cuda::nvml::{nvmlDevice_t, nvmlProcessUtilizationSample_t, nvmlUtilization_t};
use gpupool_cuda::nvml_list::fill_list;
use gpupool_cuda::result::*;
use std::ffi::c_uint;

/// Percent of the last full sample period (ending with the latest snapshot) the device was busy.
pub fn device_percent(snaps: &[Snapshot]) -> u32 {
    let Some(last) = snaps.last() else { return 0 };
    let prev = snaps
        .iter()
        .rev()
        .find(|s| last.at_ns.saturating_sub(s.at_ns) >= SNAPSHOT_EVERY_NS / 2)
        .or(snaps.first());
    match prev {
        Some(p) if last.at_ns > p.at_ns => percent(last.busy_ns - p.busy_ns, last.at_ns - p.at_ns),
        _ => 0,
    }
}

fn percent(busy: u64, span: u64) -> u32 {
    ((busy as u128 * 100 + span as u128 / 2) / span.max(1) as u128).min(100) as u32
}

/// Wall-clock microseconds of monotonic time `at_ns`, given the clocks now.
fn wall_us(at_ns: u64, mono_now: u64, wall_now_us: u64) -> u64 {
    wall_now_us.saturating_sub(mono_now.saturating_sub(at_ns) / 1000)
}

/// One sample per process that ran after `last_seen_us` (wall µs; 0 = all the buffer).
pub fn process_samples(
    snaps: &[Snapshot],
    last_seen_us: u64,
    mono_now: u64,
    wall_now_us: u64,
) -> Vec<nvmlProcessUtilizationSample_t> {
    let Some(last) = snaps.last() else {
        return Vec::new();
    };
    let base = snaps
        .iter()
        .rev()
        .find(|s| wall_us(s.at_ns, mono_now, wall_now_us) <= last_seen_us)
        .or(snaps.first())
        .filter(|b| b.at_ns < last.at_ns);
    let Some(base) = base else {
        return Vec::new();
    };
    let span = last.at_ns - base.at_ns;
    last.procs
        .iter()
        .filter(|p| p.pid != 0)
        .filter_map(|p| {
            let before = base
                .procs
                .iter()
                .find(|b| b.pid == p.pid)
                .map_or(0, |b| b.busy_ns);
            let busy = p.busy_ns.saturating_sub(before);
            (busy > 0).then(|| nvmlProcessUtilizationSample_t {
                pid: p.pid,
                timeStamp: wall_us(last.at_ns, mono_now, wall_now_us),
                smUtil: percent(busy, span),
                memUtil: 0,
                encUtil: 0,
                decUtil: 0,
            })
        })
        .collect()
}

fn wall_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn snapshots(h: nvmlDevice_t) -> Result<Vec<Snapshot>, u32> {
    crate::nvml::device_of(h).map(|d| d.timeline.snapshots())
}

/// `nvmlDeviceGetUtilizationRates`.
pub unsafe fn device_get_utilization_rates(h: nvmlDevice_t, u: *mut nvmlUtilization_t) -> u32 {
    if u.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    match snapshots(h) {
        Ok(s) => {
            // SAFETY: non-null caller pointer.
            unsafe {
                u.write(nvmlUtilization_t {
                    gpu: device_percent(&s),
                    memory: 0,
                })
            };
            NVML_SUCCESS
        }
        Err(e) => e,
    }
}

/// `nvmlDeviceGetProcessUtilization`.
pub unsafe fn device_get_process_utilization(
    h: nvmlDevice_t,
    samples: *mut nvmlProcessUtilizationSample_t,
    count: *mut c_uint,
    last_seen_us: u64,
) -> u32 {
    match snapshots(h) {
        Ok(s) => {
            let list = process_samples(&s, last_seen_us, now_ns(), wall_now_us());
            if list.is_empty() {
                return NVML_ERROR_NOT_FOUND;
            }
            // SAFETY: the caller's count and array, per NVML's list protocol.
            unsafe { fill_list(&list, count, samples) }
        }
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::{ProcBusy, PROCS};

    fn snap(at_ms: u64, busy_ms: u64, procs: &[(u32, u64)]) -> Snapshot {
        let mut p = [ProcBusy::default(); PROCS];
        for (i, (pid, b)) in procs.iter().enumerate() {
            p[i] = ProcBusy::new(*pid, b * 1_000_000);
        }
        Snapshot {
            at_ns: at_ms * 1_000_000,
            busy_ns: busy_ms * 1_000_000,
            procs: p,
        }
    }

    #[test]
    fn device_percent_is_the_last_period() {
        let s = [snap(0, 0, &[]), snap(1000, 500, &[]), snap(1166, 583, &[])];
        assert_eq!(device_percent(&s), 50);
        assert_eq!(device_percent(&[]), 0);
    }

    #[test]
    fn process_samples_cover_the_time_since_last_seen() {
        let s = [
            snap(0, 0, &[(7, 0)]),
            snap(1000, 400, &[(7, 300), (9, 100)]),
            snap(2000, 600, &[(7, 300), (9, 300)]),
        ];
        // Clocks: monotonic 2 s = wall 10 000 000 µs.
        let all = process_samples(&s, 0, 2_000_000_000, 10_000_000);
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].pid, all[0].smUtil), (7, 15));
        assert_eq!((all[1].pid, all[1].smUtil), (9, 15));
        assert_eq!(all[0].timeStamp, 10_000_000);
        // Since the middle snapshot (wall 9 000 000 µs): only pid 9 ran.
        let recent = process_samples(&s, 9_000_000, 2_000_000_000, 10_000_000);
        assert_eq!(recent.len(), 1);
        assert_eq!((recent[0].pid, recent[0].smUtil), (9, 20));
        assert!(process_samples(&s, 10_000_000, 2_000_000_000, 10_000_000).is_empty());
    }
}
