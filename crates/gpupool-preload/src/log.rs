//! Logging to stderr at the level read once at start-up (`GPUPOOL_LOG`); never `getenv` per call.

use gpupool_config::LogLevel;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Warn as u8);

/// Sets the level (once, at start-up).
pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Relaxed);
}

/// Whether messages of `level` are printed.
#[inline]
pub fn enabled(level: LogLevel) -> bool {
    level != LogLevel::Off && level as u8 <= LEVEL.load(Relaxed)
}

/// Writes one line to stderr with the process id.
pub fn write_line(level: LogLevel, msg: std::fmt::Arguments<'_>) {
    let tag = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        _ => "debug",
    };
    eprintln!("gpupool[{}] {tag}: {msg}", std::process::id());
}

/// Logs at a level: `log!(Info, "...", args)`.
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {
        if $crate::log::enabled(gpupool_config::LogLevel::$level) {
            $crate::log::write_line(gpupool_config::LogLevel::$level, format_args!($($arg)*));
        }
    };
}
