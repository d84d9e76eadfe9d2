//! Who a process is, in a way that survives pid reuse: pid, host pid, pid namespace and start
//! time, read from `/proc`.

/// Identity of a live process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// Pid in the process's own namespace.
    pub pid: u32,
    /// Pid as the outermost namespace visible through `/proc` sees it (`NSpid`'s first entry).
    pub host_pid: u32,
    /// Inode of the pid namespace.
    pub pidns: u64,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
}

impl ProcessIdentity {
    /// The calling process.
    pub fn current() -> ProcessIdentity {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() } as u32;
        let host_pid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(pid);
        ProcessIdentity {
            pid,
            host_pid,
            pidns: own_pidns(),
            start_time: start_time(pid).unwrap_or(0),
        }
    }
}

/// Inode of the calling process's pid namespace (0 if unknown).
pub(crate) fn own_pidns() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid")
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// Start time of `pid` from `/proc/<pid>/stat`.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// State letter and start time of `pid`, from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields resume after the last ')'.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((state, rest.nth(18)?.parse().ok()?))
}

/// Whether the process `pid` that started at `start` (0 = any) is still alive. A zombie (dead,
/// not yet reaped by its parent, which in containers may never happen) counts as dead.
pub(crate) fn is_alive(pid: u32, start: u64) -> bool {
    if pid == 0 {
        return true; // slot still being filled in
    }
    // SAFETY: kill with signal 0 only checks existence and permission.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    match stat(pid) {
        Some(('Z' | 'X', _)) => false,
        Some((_, now)) => start == 0 || now == start,
        // Exists (kill said so) but /proc is not ours to read: assume alive.
        None => true,
    }
}

/// Whether process `pid` is alive (not gone, not a zombie).
pub fn process_alive(pid: u32) -> bool {
    pid != 0 && is_alive(pid, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_process_is_alive_and_reused_pid_is_not() {
        let me = ProcessIdentity::current();
        assert!(me.start_time > 0);
        assert!(is_alive(me.pid, me.start_time));
        assert!(
            !is_alive(me.pid, me.start_time + 1),
            "a different start time means pid reuse"
        );
    }

    #[test]
    fn exited_child_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = start_time(pid).unwrap_or(1);
        child.wait().unwrap();
        assert!(!is_alive(pid, start));
    }
}
