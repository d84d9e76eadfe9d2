//! The audit: NVML's memory per process (the driver's ground truth, whatever the library in the
//! container did or did not count) against each container's limit. Processes are mapped to
//! pods and containers through their cgroups (`/proc/<pid>/cgroup`) and the pods' container
//! statuses.
//!
//! Like is compared with like: NVML counts each process's context, which the library charges
//! only where the node says so (the simulator); elsewhere each process may hold its card's
//! context size (measured when the agent starts, [`ContextAllowance`]) beyond its allocations.
//! A process is signalled only through a pidfd opened after its start time was checked again,
//! so a pid reused by another process is never hit.

use crate::store::Allocation;
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;
use std::path::Path;

/// Device memory one process holds on one card, as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessMemory {
    /// Card UUID.
    pub uuid: String,
    /// Host pid.
    pub pid: u32,
    /// Bytes.
    pub used_bytes: u64,
}

/// Where a process runs: its pod's UID and its container's runtime ID (from its cgroup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessOwner {
    /// Pod UID (with dashes).
    pub pod_uid: String,
    /// Container runtime ID (hex), when the cgroup names one.
    pub container_id: Option<String>,
    /// The process's start time (clock ticks after boot, `/proc/<pid>/stat`), which tells it
    /// from a later process given the same pid; `None` when unreadable.
    pub start_time: Option<u64>,
}

/// What each process may hold on a card beyond what the library charged it: the card's context
/// size where the library does not charge contexts, else 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextAllowance {
    /// Per card UUID.
    pub per_card: BTreeMap<String, u64>,
    /// For a card not measured.
    pub otherwise: u64,
}

impl ContextAllowance {
    /// The allowance on card `uuid`.
    pub fn on(&self, uuid: &str) -> u64 {
        self.per_card.get(uuid).copied().unwrap_or(self.otherwise)
    }
}

/// A process the audit found, as it was then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundProcess {
    /// Host pid.
    pub pid: u32,
    /// Its start time then (see [`ProcessOwner::start_time`]).
    pub start_time: Option<u64>,
}

/// Reads the pod and container of a cgroup file's text (cgroup v1 or v2; cgroupfs or systemd
/// drivers; containerd, CRI-O or Docker).
pub fn owner_from_cgroup(text: &str) -> Option<ProcessOwner> {
    for line in text.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let Some(pod_at) = parts.iter().position(|p| pod_uid_in(p).is_some()) else {
            continue;
        };
        let pod_uid = pod_uid_in(parts[pod_at])?;
        let container_id = parts.get(pod_at + 1).map(|c| {
            let c = c.strip_suffix(".scope").unwrap_or(c);
            let c = ["cri-containerd-", "crio-", "docker-", "containerd-"]
                .iter()
                .find_map(|p| c.strip_prefix(p))
                .unwrap_or(c);
            c.to_string()
        });
        return Some(ProcessOwner {
            pod_uid,
            container_id,
            start_time: None,
        });
    }
    None
}

/// The pod UID in a cgroup path component (`pod<uid>` or `kubepods-…-pod<uid_with_underscores>.slice`).
fn pod_uid_in(component: &str) -> Option<String> {
    let at = component.rfind("pod")?;
    let rest = component[at + 3..].trim_end_matches(".slice");
    let uid = rest.replace('_', "-");
    let ok = uid.len() == 36
        && uid.chars().enumerate().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (c == '-') && (c == '-' || c.is_ascii_hexdigit())
        });
    ok.then_some(uid)
}

/// The owner of `pid` under `proc_root` (normally `/proc`), with its start time.
pub fn owner_of(proc_root: &Path, pid: u32) -> Option<ProcessOwner> {
    let dir = proc_root.join(pid.to_string());
    let text = gpupool_region::untrusted::read_small_file(&dir.join("cgroup"), 64 << 10).ok()?;
    let mut owner = owner_from_cgroup(&String::from_utf8_lossy(&text))?;
    owner.start_time = start_time(proc_root, pid);
    Some(owner)
}

/// The start time of `pid` (field 22 of `/proc/<pid>/stat`, counted after the command name,
/// which may hold spaces and parentheses).
pub fn start_time(proc_root: &Path, pid: u32) -> Option<u64> {
    let path = proc_root.join(pid.to_string()).join("stat");
    let text = gpupool_region::untrusted::read_small_file(&path, 4096).ok()?;
    let text = String::from_utf8_lossy(&text);
    let after_name = &text[text.rfind(')')? + 1..];
    // Fields from the 3rd (state) on; the start time is the 22nd.
    after_name.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Sends SIGKILL to `p` if it is still the process the audit found: a pidfd pins the process,
/// then its start time is checked again (a pid reused since is left alone). `Ok(false)`: gone
/// or another process now.
pub fn kill_if_same(proc_root: &Path, p: FoundProcess) -> crate::error::Result<bool> {
    let Some(expected) = p.start_time else {
        return Ok(false);
    };
    // SAFETY: pidfd_open takes a pid and flags; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, p.pid as libc::c_long, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(false),
            _ => Err(crate::error::NodeError::Process(format!(
                "pidfd_open({}): {e}",
                p.pid
            ))),
        };
    }
    // SAFETY: a descriptor just returned to us, owned from here on.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    if start_time(proc_root, p.pid) != Some(expected) {
        return Ok(false);
    }
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            raw,
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(false),
            _ => Err(crate::error::NodeError::Process(format!(
                "signalling pid {}: {e}",
                p.pid
            ))),
        };
    }
    Ok(true)
}

/// A container over its limit on a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Card UUID.
    pub uuid: String,
    /// What NVML says its processes hold on the card.
    pub used_bytes: u64,
    /// Its limit there.
    pub limit_bytes: u64,
    /// Its processes on that card.
    pub pids: Vec<u32>,
    /// The same, with their start times when found.
    pub processes: Vec<FoundProcess>,
}

/// The container name of runtime ID `id` in a pod's statuses.
fn container_named(pod: &Pod, id: &str) -> Option<String> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|s| {
            s.container_id
                .as_deref()
                .and_then(|c| c.split_once("://").map(|(_, id)| id))
                == Some(id)
        })
        .map(|s| s.name.clone())
}

/// Compares NVML's memory per process, less each process's context allowance on its card, with
/// the allocations. A process is charged to the container its cgroup names; when the runtime ID
/// cannot be matched to a container name and the pod has a single allocated container, to that
/// one. Processes of pods the agent did not allocate for are not its business.
pub fn find_over_limit(
    usage: &[ProcessMemory],
    allocations: &[Allocation],
    pods: &[Pod],
    allowance: &ContextAllowance,
    owner: impl Fn(u32) -> Option<ProcessOwner>,
) -> Vec<OverLimit> {
    // (pod uid, container, uuid) -> (bytes, processes)
    let mut per: BTreeMap<(String, String, String), (u64, Vec<FoundProcess>)> = BTreeMap::new();
    for p in usage {
        let Some(o) = owner(p.pid) else { continue };
        let mine: Vec<&Allocation> = allocations
            .iter()
            .filter(|a| a.pod_uid == o.pod_uid)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let pod = pods
            .iter()
            .find(|x| x.metadata.uid.as_deref() == Some(o.pod_uid.as_str()));
        let by_id = o
            .container_id
            .as_deref()
            .zip(pod)
            .and_then(|(id, pod)| container_named(pod, id));
        let container = match by_id {
            Some(name) => name,
            None if mine.len() == 1 => mine[0].container.clone(),
            None => continue,
        };
        let e = per
            .entry((o.pod_uid.clone(), container, p.uuid.clone()))
            .or_default();
        e.0 =
            e.0.saturating_add(p.used_bytes.saturating_sub(allowance.on(&p.uuid)));
        e.1.push(FoundProcess {
            pid: p.pid,
            start_time: o.start_time,
        });
    }
    let mut out = Vec::new();
    for ((uid, container, uuid), (used, processes)) in per {
        let Some(a) = allocations
            .iter()
            .find(|a| a.pod_uid == uid && a.container == container)
        else {
            continue;
        };
        // A card the container was not given counts as a limit of 0.
        let limit = a
            .devices
            .iter()
            .find(|d| d.uuid == uuid)
            .map_or(0, |d| d.memory_mib << 20);
        if used > limit {
            out.push(OverLimit {
                namespace: a.namespace.clone(),
                pod: a.pod.clone(),
                container,
                uuid,
                used_bytes: used,
                limit_bytes: limit,
                pids: processes.iter().map(|p| p.pid).collect(),
                processes,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpupool_sched::protocol::AssignedDevice;
    use serde_json::json;

    const UID: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
    const CID: &str = "0f3a5c7e9b1d2f4a6c8e0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d";

    #[test]
    fn cgroup_paths_of_every_driver_name_the_pod_and_container() {
        let systemd = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID}.scope\n",
            UID.replace('-', "_")
        );
        let o = owner_from_cgroup(&systemd).unwrap();
        assert_eq!(o.pod_uid, UID);
        assert_eq!(o.container_id.as_deref(), Some(CID));
        let cgroupfs = format!("12:memory:/kubepods/besteffort/pod{UID}/{CID}\n11:cpu:/\n");
        assert_eq!(
            owner_from_cgroup(&cgroupfs)
                .unwrap()
                .container_id
                .as_deref(),
            Some(CID)
        );
        assert_eq!(owner_from_cgroup("0::/user.slice/session-1.scope\n"), None);
        assert_eq!(owner_from_cgroup("0::/kubepods/podnot-a-uid/x\n"), None);
    }

    fn allocation(container: &str, uuid: &str, mib: u64) -> Allocation {
        Allocation {
            pod_uid: UID.into(),
            namespace: "ns".into(),
            pod: "p".into(),
            container: container.into(),
            device_ids: vec![],
            devices: vec![AssignedDevice {
                uuid: uuid.into(),
                memory_mib: mib,
                cores: 100,
                priority: 0,
                spill_mib: 0,
            }],
            tenant_dir: "/t".into(),
            limits_file: "/l".into(),
        }
    }

    #[test]
    fn usage_is_summed_per_container_and_card_and_compared_with_its_limit() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": UID},
            "status": {"containerStatuses": [
                {"name": "main", "containerID": format!("containerd://{CID}"), "image": "", "imageID": "",
                 "ready": true, "restartCount": 0},
            ]}
        }))
        .unwrap();
        let allocs = [
            allocation("main", "GPU-a", 1024),
            allocation("side", "GPU-a", 4096),
        ];
        let usage = [
            ProcessMemory {
                uuid: "GPU-a".into(),
                pid: 10,
                used_bytes: 700 << 20,
            },
            ProcessMemory {
                uuid: "GPU-a".into(),
                pid: 11,
                used_bytes: 700 << 20,
            },
            ProcessMemory {
                uuid: "GPU-b".into(),
                pid: 12,
                used_bytes: 1 << 20,
            },
            ProcessMemory {
                uuid: "GPU-a".into(),
                pid: 99,
                used_bytes: 70 << 30,
            },
        ];
        let owner = |pid: u32| {
            (pid != 99).then(|| ProcessOwner {
                pod_uid: UID.into(),
                container_id: Some(CID.into()),
                start_time: Some(u64::from(pid) * 1000),
            })
        };
        let none = ContextAllowance::default();
        let found = find_over_limit(&usage, &allocs, std::slice::from_ref(&pod), &none, owner);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            (found[0].uuid.as_str(), found[0].used_bytes),
            ("GPU-a", 1400 << 20)
        );
        assert_eq!(found[0].pids, vec![10, 11]);
        assert_eq!(found[0].processes[1].start_time, Some(11_000));
        assert_eq!(found[0].container, "main");
        assert_eq!(
            (found[1].uuid.as_str(), found[1].limit_bytes),
            ("GPU-b", 0),
            "a card it was not given"
        );
        // Within the limit: nothing.
        let found = find_over_limit(
            &usage[..1],
            &allocs,
            std::slice::from_ref(&pod),
            &none,
            owner,
        );
        assert!(found.is_empty());
        // Each process's context is allowed where the library does not charge it: 2 × 700 MiB
        // less 2 × 200 MiB is within main's 1 GiB; GPU-b has no allowance measured but the
        // default.
        let allowance = ContextAllowance {
            per_card: [("GPU-a".to_string(), 200 << 20)].into_iter().collect(),
            otherwise: 1 << 20,
        };
        let found = find_over_limit(
            &usage,
            &allocs,
            std::slice::from_ref(&pod),
            &allowance,
            owner,
        );
        assert!(found.is_empty(), "{found:?}");
        // Beyond the allowance, the rest counts.
        let mut big = usage.clone();
        big[1].used_bytes = 1000 << 20;
        let found = find_over_limit(&big, &allocs, &[pod], &allowance, owner);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].used_bytes, (500 + 800) << 20);
    }

    #[test]
    fn the_start_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let root = std::env::temp_dir().join(format!("gpupool-stat-{}", std::process::id()));
        let dir = root.join("42");
        std::fs::create_dir_all(&dir).unwrap();
        let fields: Vec<String> = (3..=30).map(|i| i.to_string()).collect();
        std::fs::write(
            dir.join("stat"),
            format!("42 (a) (b c) {}\n", fields.join(" ")),
        )
        .unwrap();
        assert_eq!(start_time(&root, 42), Some(22));
        assert_eq!(start_time(&root, 43), None);
        std::fs::write(dir.join("stat"), "42 (x\n").unwrap();
        assert_eq!(start_time(&root, 42), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_process_is_killed_only_while_it_is_the_one_found() {
        let proc_root = Path::new("/proc");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = start_time(proc_root, pid).expect("its start time");
        // Another process's start time (a pid reused since it was found): left alone.
        let other = FoundProcess {
            pid,
            start_time: Some(start + 1),
        };
        assert_eq!(kill_if_same(proc_root, other).ok(), Some(false));
        let unknown = FoundProcess {
            pid,
            start_time: None,
        };
        assert_eq!(kill_if_same(proc_root, unknown).ok(), Some(false));
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(child.try_wait().unwrap().is_none(), "still running");
        let same = FoundProcess {
            pid,
            start_time: Some(start),
        };
        assert_eq!(kill_if_same(proc_root, same).ok(), Some(true));
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // Gone (reaped): nothing to signal.
        assert_eq!(kill_if_same(proc_root, same).ok(), Some(false));
    }
}
