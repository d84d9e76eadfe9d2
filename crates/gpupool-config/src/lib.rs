//! Parsing of everything a user types into gpupool: memory sizes, simulated-GPU specs and the
//! tenant limits read from env variables or a limits file.
//!
//! Pure functions only: no I/O beyond what the caller hands in, so every rule is unit-tested and
//! the preloaded library can parse its configuration once at start-up.

#![warn(missing_docs)]

pub mod duration;
pub mod limits;
pub mod limits_file;
pub mod sim_spec;
pub mod size;
pub mod tenant_env;

pub use duration::{format_duration_ns, parse_duration_ns, DurationError};
pub use limits::{ConfigError, LogLevel, Priority, TenantConfig};
pub use limits_file::{DeviceLimits, LimitsFile};
pub use sim_spec::{SimDevice, SimSpec, SpecError};
pub use size::{format_size, parse_size, SizeError};
pub use tenant_env::{Setting, SettingError, TenantEnv};
