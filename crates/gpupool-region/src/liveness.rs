//! Whether the process behind a slot is alive, judged the same way from every pid namespace: each
//! process holds an open-file-description lock (`F_OFD_SETLK`) on one byte per slot of the
//! region file, beyond its end. The kernel drops the lock when the process dies (even by
//! SIGKILL) or execs (the descriptor is close-on-exec), so "locked" means "its owner still
//! runs this image", whoever asks and wherever its pids point.
//!
//! The lock is taken through a descriptor of its own (never the mapped one: a mapping keeps its
//! file description alive after the descriptor is closed, and a forked child shares both), which
//! a forked child closes before claiming a slot of its own (the parent's lock stays with the
//! parent's descriptor).

use std::os::fd::RawFd;

/// Offset of slot `index`'s lock byte: past the layout, so the locks never touch the data.
fn lock_offset(index: usize) -> libc::off_t {
    (crate::layout::LAYOUT_SIZE + index) as libc::off_t
}

fn flock_at(index: usize, kind: libc::c_int) -> libc::flock {
    // SAFETY: flock is plain data; zero is a valid value of every field.
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = kind as libc::c_short;
    l.l_whence = libc::SEEK_SET as libc::c_short;
    l.l_start = lock_offset(index);
    l.l_len = 1;
    l.l_pid = 0; // required for open-file-description locks
    l
}

/// Takes slot `index`'s lock on `fd` (a shared lock: it works on any descriptor, and a write-lock
/// query from any other description sees it). Never waits.
pub(crate) fn lock(fd: RawFd, index: usize) -> std::io::Result<()> {
    let l = flock_at(index, libc::F_RDLCK);
    // SAFETY: fcntl with a valid flock pointer.
    if unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &l) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Releases slot `index`'s lock on `fd`.
pub(crate) fn unlock(fd: RawFd, index: usize) {
    let l = flock_at(index, libc::F_UNLCK);
    // SAFETY: fcntl with a valid flock pointer.
    unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &l) };
}

/// Whether some open file description other than `fd`'s holds slot `index`'s lock; `None` when
/// the kernel cannot tell (no OFD locks).
pub(crate) fn held_by_other(fd: RawFd, index: usize) -> Option<bool> {
    let mut l = flock_at(index, libc::F_WRLCK);
    // SAFETY: fcntl with a valid flock pointer, which it fills in.
    if unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut l) } != 0 {
        return None;
    }
    Some(l.l_type != libc::F_UNLCK as libc::c_short)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_lock_is_seen_through_another_description_and_gone_when_closed() {
        let path = std::env::temp_dir().join(format!("gpupool-liveness-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let holder = std::fs::File::open(&path).unwrap();
        let reader = std::fs::File::open(&path).unwrap();
        lock(holder.as_raw_fd(), 3).unwrap();
        assert_eq!(held_by_other(reader.as_raw_fd(), 3), Some(true));
        assert_eq!(held_by_other(reader.as_raw_fd(), 4), Some(false));
        // Its own description does not conflict with itself.
        assert_eq!(held_by_other(holder.as_raw_fd(), 3), Some(false));
        unlock(holder.as_raw_fd(), 3);
        assert_eq!(held_by_other(reader.as_raw_fd(), 3), Some(false));
        lock(holder.as_raw_fd(), 3).unwrap();
        drop(holder);
        // A child another test forks at this moment shares the description until it execs:
        // the lock goes when the last descriptor does.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while held_by_other(reader.as_raw_fd(), 3) == Some(true)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(held_by_other(reader.as_raw_fd(), 3), Some(false));
        let _ = std::fs::remove_file(&path);
    }
}
