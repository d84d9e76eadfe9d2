//! Kernel handles the client has been given, kept so that asking again needs no round trip
//! (NVIDIA's runtime asks for a kernel's handle and function at every launch): a library's
//! kernel by name (`cuLibraryGetKernel`), a kernel's library (`cuKernelGetLibrary`) and a
//! kernel's function in a context (`cuKernelGetFunction`, kept for the context epoch it was
//! learnt in), and the libraries this client loaded (whose kernels it names itself). A
//! library's entries go when it is unloaded.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct Known {
    /// (library, name) → kernel.
    by_name: HashMap<(u64, Vec<u8>), u64>,
    /// kernel → library.
    library_of: HashMap<u64, u64>,
    /// (kernel, context) → (epoch, function).
    functions: HashMap<(u64, u64), (u64, u64)>,
    /// Libraries loaded through this client whose kernels it names itself: not those whose
    /// kernels were listed (`cuLibraryEnumerateKernels` gives the server's handles, which
    /// asking by name must give again).
    loaded: HashSet<u64>,
}

pub(crate) static KNOWN: Mutex<Option<Known>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Known) -> R) -> R {
    f(KNOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Known::default))
}

/// The kernel `name` of `library`, if given before.
pub fn kernel_named(library: u64, name: &[u8]) -> Option<u64> {
    with(|k| k.by_name.get(&(library, name.to_vec())).copied())
}

/// Records that `library`'s kernel `name` is `kernel`.
pub fn remember_kernel(library: u64, name: &[u8], kernel: u64) {
    with(|k| {
        k.by_name.insert((library, name.to_vec()), kernel);
        k.library_of.insert(kernel, library);
    })
}

/// Records that this client loaded library or module `owner`.
pub fn loaded(owner: u64) {
    with(|k| k.loaded.insert(owner));
}

/// Whether this client names the kernels of `owner` (a library or module): it loaded it
/// and never listed them.
pub fn names_kernels_of(owner: u64) -> bool {
    with(|k| k.loaded.contains(&owner))
}

/// Records that `library`'s kernels were listed: asking by name goes to the server from now.
pub fn kernels_listed(library: u64) {
    with(|k| k.loaded.remove(&library));
}

/// Remembers that `kernel` (from `cuLibraryEnumerateKernels`) belongs to `library`.
pub fn remember_library_of(kernel: u64, library: u64) {
    with(|k| k.library_of.insert(kernel, library));
}

/// The library of `kernel`, if it was given by `cuLibraryGetKernel` or
/// `cuLibraryEnumerateKernels`.
pub fn library_of(kernel: u64) -> Option<u64> {
    with(|k| k.library_of.get(&kernel).copied())
}

/// The function of `kernel` in context `ctx`, if given in the current context epoch.
pub fn function_of(kernel: u64, ctx: u64) -> Option<u64> {
    let epoch = crate::local_answers::epoch();
    with(|k| {
        k.functions
            .get(&(kernel, ctx))
            .filter(|(learnt, _)| *learnt == epoch)
            .map(|&(_, f)| f)
    })
}

/// Records that `kernel`'s function in `ctx` is `function`, learnt in `epoch`.
pub fn remember_function(kernel: u64, ctx: u64, epoch: u64, function: u64) {
    with(|k| k.functions.insert((kernel, ctx), (epoch, function)));
}

/// Forgets what came from `library` (or module).
pub fn unloaded(library: u64) {
    with(|k| {
        k.loaded.remove(&library);
        k.by_name.retain(|(l, _), _| *l != library);
        let gone: Vec<u64> = k
            .library_of
            .iter()
            .filter(|&(_, &l)| l == library)
            .map(|(&kernel, _)| kernel)
            .collect();
        for kernel in &gone {
            k.library_of.remove(kernel);
        }
        k.functions.retain(|(kernel, _), _| !gone.contains(kernel));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_s_kernels_and_functions_go_with_it() {
        let epoch = crate::local_answers::epoch();
        remember_kernel(0x10, b"gemm", 0x11);
        remember_kernel(0x20, b"gemm", 0x21);
        remember_function(0x11, 0x5, epoch, 0x12);
        assert_eq!(kernel_named(0x10, b"gemm"), Some(0x11));
        assert_eq!(library_of(0x21), Some(0x20));
        assert_eq!(function_of(0x11, 0x5), Some(0x12));
        assert_eq!(function_of(0x11, 0x6), None, "another context");
        unloaded(0x10);
        assert_eq!(kernel_named(0x10, b"gemm"), None);
        assert_eq!(function_of(0x11, 0x5), None);
        assert_eq!(
            kernel_named(0x20, b"gemm"),
            Some(0x21),
            "the other library's stays"
        );
    }
}
