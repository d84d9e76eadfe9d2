//! Sealed memfds: files whose size never changes once made, so no mapping of one can outgrow
//! it (no `SIGBUS`) whoever else holds it. Physical memory of the virtual memory API and
//! memory shared through interprocess handles live in them.

use std::ffi::CStr;

/// The seals such a file carries.
const SEALS: i32 = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// A new sealed file named `name` of `size` zero bytes (closed on exec), or `None`.
pub fn create(name: &CStr, size: u64) -> Option<i32> {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: a NUL-terminated name; result checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    if fd < 0 {
        return None;
    }
    let len = i64::try_from(size).ok();
    // SAFETY: our descriptor.
    let made = len.is_some_and(|len| unsafe {
        libc::ftruncate(fd, len) == 0 && libc::fcntl(fd, libc::F_ADD_SEALS, SEALS) == 0
    });
    if !made {
        // SAFETY: closing our descriptor.
        unsafe { libc::close(fd) };
        return None;
    }
    Some(fd)
}

/// The size of `fd` if it is a file sealed as [`create`] seals them (`None` otherwise).
pub fn sealed_size(fd: i32) -> Option<u64> {
    // SAFETY: a zeroed stat filled by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; fstat and fcntl check the descriptor.
    let seals = unsafe {
        if libc::fstat(fd, &mut st) != 0 {
            return None;
        }
        libc::fcntl(fd, libc::F_GET_SEALS)
    };
    (seals >= 0 && seals & SEALS == SEALS).then_some(st.st_size as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_sealed_against_resizing_have_a_sealed_size() {
        let fd = create(c"gpupool-sealed-test", 8192).unwrap();
        assert_eq!(sealed_size(fd), Some(8192));
        // SAFETY: this test's descriptors.
        unsafe {
            assert_ne!(libc::ftruncate(fd, 0), 0, "cannot shrink");
            let plain = libc::memfd_create(c"plain".as_ptr(), 0);
            assert_eq!(sealed_size(plain), None);
            libc::close(plain);
            libc::close(fd);
        }
        assert_eq!(sealed_size(-1), None);
    }
}
