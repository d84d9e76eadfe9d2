//! The flags a driver takes when it creates a stream or an event: checked by the simulated
//! driver as a real one does, and by the remote client before it hands out a handle.

/// `CU_STREAM_NON_BLOCKING`, the one stream creation flag.
pub const STREAM_NON_BLOCKING: u32 = 0x1;

/// `CU_EVENT_BLOCKING_SYNC`.
pub const EVENT_BLOCKING_SYNC: u32 = 0x1;
/// `CU_EVENT_DISABLE_TIMING`.
pub const EVENT_DISABLE_TIMING: u32 = 0x2;
/// `CU_EVENT_INTERPROCESS` (taken only with timing disabled).
pub const EVENT_INTERPROCESS: u32 = 0x4;

/// Whether a driver takes these stream creation flags.
pub fn stream_flags_valid(flags: u32) -> bool {
    flags & !STREAM_NON_BLOCKING == 0
}

/// Whether a driver takes these event creation flags.
pub fn event_flags_valid(flags: u32) -> bool {
    let known = EVENT_BLOCKING_SYNC | EVENT_DISABLE_TIMING | EVENT_INTERPROCESS;
    flags & !known == 0 && (flags & EVENT_INTERPROCESS == 0 || flags & EVENT_DISABLE_TIMING != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_a_driver_refuses_are_refused() {
        assert!(stream_flags_valid(0) && stream_flags_valid(1));
        assert!(!stream_flags_valid(2));
        for ok in [0, 1, 2, 3, 6, 7] {
            assert!(event_flags_valid(ok), "{ok}");
        }
        assert!(!event_flags_valid(4), "interprocess needs timing disabled");
        assert!(!event_flags_valid(5), "interprocess needs timing disabled");
        assert!(!event_flags_valid(8));
    }
}
