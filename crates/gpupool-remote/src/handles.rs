//! The handles one client's session may pass to the driver: those the driver gave it, and
//! the names the client gave streams, events, libraries and library kernels, each standing
//! for a driver handle (or, for a library or kernel the driver refused, for the driver's
//! error).

use crate::calls::Class;
use gpupool_cuda::result::CUDA_ERROR_INVALID_HANDLE;
use std::collections::{HashMap, HashSet};

/// A session's handles, by class.
#[derive(Debug, Default)]
pub struct Handles {
    /// Handles the driver created for the client (not those the client names itself).
    given: HashSet<(Class, u64)>,
    /// The client's names: name → the driver's handle.
    names: HashMap<(Class, u64), u64>,
    /// The same, the driver's handle → the client's name.
    named: HashMap<(Class, u64), u64>,
    /// Names of libraries and kernels the driver refused: name → the driver's error.
    refused: HashMap<(Class, u64), u32>,
}

impl Handles {
    /// Records a handle the driver created for the client.
    pub fn insert(&mut self, class: Class, h: u64) {
        self.given.insert((class, h));
    }

    /// Forgets driver handle `h` (destroyed), and the client's name for it.
    pub fn remove(&mut self, class: Class, h: u64) {
        if let Some(name) = self.named.remove(&(class, h)) {
            self.names.remove(&(class, name));
        }
        self.given.remove(&(class, h));
    }

    /// The driver's handle behind the client's handle `h` of `class`: by the name the client
    /// gave it, else as the driver gave it (null and the special streams 1 and 2 always);
    /// `None` when the client has no such handle.
    pub fn real(&self, class: Class, h: u64) -> Option<u64> {
        if h == 0 || (class == Class::Stream && h <= 2) {
            Some(h)
        } else if let Some(&real) = self.names.get(&(class, h)) {
            Some(real)
        } else {
            self.given.contains(&(class, h)).then_some(h)
        }
    }

    /// The driver's handle behind the client's `h` of `class` (never null); else the error
    /// the driver gave when the client named it, or `CUDA_ERROR_INVALID_HANDLE`.
    pub fn resolve(&self, class: Class, h: u64) -> Result<u64, u32> {
        match self.real(class, h) {
            Some(real) if real != 0 => Ok(real),
            _ => Err(self.refusal(class, h).unwrap_or(CUDA_ERROR_INVALID_HANDLE)),
        }
    }

    /// The driver's function or kernel behind the client's `f` (see [`Handles::resolve`]).
    pub fn function(&self, f: u64) -> Result<u64, u32> {
        self.resolve(Class::Function, f)
    }

    /// The error the driver gave when the client named `name`, if it refused it.
    pub fn refusal(&self, class: Class, name: u64) -> Option<u32> {
        self.refused.get(&(class, name)).copied()
    }

    /// Forgets a refused name (the client destroyed what it named); whether it was one.
    pub fn forget_refusal(&mut self, class: Class, name: u64) -> bool {
        self.refused.remove(&(class, name)).is_some()
    }

    /// Whether `name` is free for a handle of `class` the client names: never 0, 1 or 2, a
    /// name in use or refused, or a handle the driver gave out.
    pub fn name_free(&self, class: Class, name: u64) -> bool {
        name > 2
            && !self.names.contains_key(&(class, name))
            && !self.refused.contains_key(&(class, name))
            && !self.given.contains(&(class, name))
    }

    /// Records that the client's `name` stands for the driver's handle `real`.
    pub fn name(&mut self, class: Class, name: u64, real: u64) {
        self.names.insert((class, name), real);
        self.named.insert((class, real), name);
    }

    /// Records that the driver refused what the client named `name`, with `rc`.
    pub fn refuse(&mut self, class: Class, name: u64, rc: u32) {
        self.refused.insert((class, name), rc);
    }

    /// The client's name for driver handle `real`, if it gave one.
    pub fn name_of(&self, class: Class, real: u64) -> Option<u64> {
        self.named.get(&(class, real)).copied()
    }

    /// Whether `h` is a name the client gave (rather than a driver handle).
    pub fn is_name(&self, class: Class, h: u64) -> bool {
        self.names.contains_key(&(class, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stand_for_driver_handles_until_destroyed() {
        let mut h = Handles::default();
        h.name(Class::Stream, 0xfeed_0040, 0x5000);
        assert_eq!(h.real(Class::Stream, 0xfeed_0040), Some(0x5000));
        assert_eq!(
            h.real(Class::Stream, 0x5000),
            None,
            "the driver's own handle"
        );
        assert_eq!(h.real(Class::Event, 0xfeed_0040), None, "another class");
        assert_eq!(h.real(Class::Stream, 2), Some(2));
        assert!(!h.name_free(Class::Stream, 0xfeed_0040));
        h.remove(Class::Stream, 0x5000);
        assert_eq!(h.real(Class::Stream, 0xfeed_0040), None);
        assert!(h.name_free(Class::Stream, 0xfeed_0040));
    }

    #[test]
    fn functions_go_by_handle_or_name_and_refusals_keep_their_error() {
        let mut h = Handles::default();
        h.insert(Class::Function, 0x7000);
        h.name(Class::Function, 0xfeed_0080, 0x6600);
        h.refuse(Class::Function, 0xfeed_00c0, 500);
        assert_eq!(h.function(0x7000), Ok(0x7000));
        assert_eq!(h.function(0xfeed_0080), Ok(0x6600));
        assert_eq!(h.function(0xfeed_00c0), Err(500));
        assert_eq!(h.function(0x1234), Err(CUDA_ERROR_INVALID_HANDLE));
        assert_eq!(
            h.function(0),
            Err(CUDA_ERROR_INVALID_HANDLE),
            "null is no function"
        );
        for taken in [0x7000, 0xfeed_0080, 0xfeed_00c0, 1] {
            assert!(!h.name_free(Class::Function, taken), "{taken:#x}");
        }
        assert_eq!(h.name_of(Class::Function, 0x6600), Some(0xfeed_0080));
        assert!(h.is_name(Class::Function, 0xfeed_0080));
    }

    #[test]
    fn libraries_go_by_name_or_by_the_driver_s_handle() {
        let mut h = Handles::default();
        h.insert(Class::Library, 0x7100);
        h.name(Class::Library, 0xfeed_0100, 0x7200);
        h.refuse(Class::Library, 0xfeed_0140, 209);
        assert_eq!(h.resolve(Class::Library, 0x7100), Ok(0x7100));
        assert_eq!(h.resolve(Class::Library, 0xfeed_0100), Ok(0x7200));
        assert_eq!(h.resolve(Class::Library, 0xfeed_0140), Err(209));
        assert_eq!(
            h.resolve(Class::Library, 0x7200),
            Err(CUDA_ERROR_INVALID_HANDLE),
            "the driver's handle behind a name is not the client's"
        );
        assert!(h.forget_refusal(Class::Library, 0xfeed_0140));
        assert!(!h.forget_refusal(Class::Library, 0xfeed_0140));
        assert_eq!(
            h.resolve(Class::Library, 0xfeed_0140),
            Err(CUDA_ERROR_INVALID_HANDLE)
        );
        h.remove(Class::Library, 0x7200);
        assert_eq!(h.real(Class::Library, 0xfeed_0100), None);
    }
}
