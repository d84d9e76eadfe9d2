//! A tenant's limits, from the limits file (trusted, written by the node agent) or from env
//! variables (`GPUPOOL_*`, and HAMi-core's `CUDA_DEVICE_MEMORY_LIMIT[_<i>]` /
//! `CUDA_DEVICE_MEMORY_SHARED_CACHE`).
//!
//! Rules (documented in `docs/configuration.md`):
//! - When a limits file is given, its limits and region replace those from env variables.
//! - `GPUPOOL_*` variables win over HAMi's names when both are set.
//! - Any malformed value is an error naming the variable or file line: never a silent
//!   unlimited mode. A limit of 0 is rejected (HAMi-core reads 0 as "unlimited").

use crate::sim_spec::MAX_DEVICES;
use crate::size::parse_size;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Env variable: memory limit, one size for all devices or a comma list per device ordinal.
pub const ENV_MEMORY_LIMIT: &str = "GPUPOOL_MEMORY_LIMIT";
/// Env variable: path of the tenant's shared accounting region file.
pub const ENV_REGION: &str = "GPUPOOL_REGION";
/// Env variable: device memory charged for each context the tenant creates.
pub const ENV_CONTEXT_MEMORY: &str = "GPUPOOL_CONTEXT_MEMORY";
/// Env variable: log level (`off`, `error`, `warn`, `info`, `debug`).
pub const ENV_LOG: &str = "GPUPOOL_LOG";
/// Env variable: a limits file to read when the trusted default path does not exist.
pub const ENV_LIMITS_FILE: &str = "GPUPOOL_LIMITS_FILE";
/// The limits file the node agent mounts read-only into containers; trusted over everything.
pub const DEFAULT_LIMITS_FILE: &str = "/etc/gpupool/limits.conf";
/// HAMi-core: memory limit for all devices.
pub const HAMI_MEMORY_LIMIT: &str = "CUDA_DEVICE_MEMORY_LIMIT";
/// HAMi-core: shared cache (our region) file.
pub const HAMI_SHARED_CACHE: &str = "CUDA_DEVICE_MEMORY_SHARED_CACHE";

/// How much the library logs (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    /// Nothing.
    Off,
    /// Errors only.
    Error,
    /// Errors and warnings (the default).
    #[default]
    Warn,
    /// Start-up summary and denials.
    Info,
    /// Every intercepted call that changes accounting.
    Debug,
}

impl LogLevel {
    /// Parses a level name.
    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" | "0" => LogLevel::Off,
            "error" => LogLevel::Error,
            "warn" | "warning" | "" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" | "trace" => LogLevel::Debug,
            _ => return None,
        })
    }
}

/// A rejected configuration; the message names the input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// An env variable's value is malformed.
    #[error("gpupool: invalid {var}={value:?}: {why}")]
    Env {
        /// Variable name.
        var: String,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// A limits-file line is malformed.
    #[error("gpupool: invalid limits file {path}, line {line}: {why}")]
    File {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The limits file could not be read.
    #[error("gpupool: cannot read limits file {path}: {why}")]
    Unreadable {
        /// The file.
        path: String,
        /// The OS error.
        why: String,
    },
}

/// Where the limits came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ConfigSource {
    /// No limit anywhere: the library passes calls through.
    #[default]
    None,
    /// Env variables.
    Env,
    /// A limits file.
    File(PathBuf),
}

/// Everything the preloaded library needs to know about its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TenantConfig {
    /// Limit for every device without a specific one.
    pub default_memory_limit: Option<u64>,
    /// Per-ordinal limits (index = CUDA ordinal as the tenant sees it).
    pub device_memory_limits: Vec<Option<u64>>,
    /// Shared accounting region file; `None` = a private, per-process region.
    pub region: Option<PathBuf>,
    /// Memory charged per context created.
    pub context_memory: u64,
    /// Log level.
    pub log_level: LogLevel,
    /// Where the limits came from.
    pub source: ConfigSource,
}

impl TenantConfig {
    /// The memory limit of device `ordinal`, if any.
    pub fn memory_limit(&self, ordinal: usize) -> Option<u64> {
        self.device_memory_limits
            .get(ordinal)
            .copied()
            .flatten()
            .or(self.default_memory_limit)
    }

    /// True when at least one device has a memory limit.
    pub fn has_memory_limit(&self) -> bool {
        self.default_memory_limit.is_some() || self.device_memory_limits.iter().any(Option::is_some)
    }

    /// Builds the configuration from env pairs and, optionally, a limits file's text.
    pub fn from_sources(
        env: &[(String, String)],
        file: Option<(&Path, &str)>,
    ) -> Result<TenantConfig, ConfigError> {
        let get = |k: &str| {
            env.iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let mut cfg = TenantConfig::default();
        if let Some(v) = get(ENV_LOG) {
            cfg.log_level = LogLevel::parse(v)
                .ok_or_else(|| env_err(ENV_LOG, v, "expected off, error, warn, info or debug"))?;
        }
        if let Some(v) = get(ENV_CONTEXT_MEMORY) {
            cfg.context_memory =
                parse_size(v).map_err(|e| env_err(ENV_CONTEXT_MEMORY, v, &e.to_string()))?;
        }
        if let Some((path, text)) = file {
            apply_file(&mut cfg, path, text)?;
            cfg.source = ConfigSource::File(path.to_path_buf());
            return Ok(cfg);
        }
        apply_hami_env(&mut cfg, env)?;
        if let Some(v) = get(ENV_MEMORY_LIMIT) {
            apply_limit_list(&mut cfg, v).map_err(|why| env_err(ENV_MEMORY_LIMIT, v, &why))?;
        }
        if let Some(v) = get(ENV_REGION).or_else(|| get(HAMI_SHARED_CACHE)) {
            if v.trim().is_empty() {
                return Err(env_err(ENV_REGION, v, "empty path"));
            }
            cfg.region = Some(PathBuf::from(v));
        }
        if cfg.has_memory_limit() {
            cfg.source = ConfigSource::Env;
        }
        Ok(cfg)
    }
}

fn env_err(var: &str, value: &str, why: &str) -> ConfigError {
    ConfigError::Env {
        var: var.into(),
        value: value.into(),
        why: why.into(),
    }
}

fn parse_limit(v: &str) -> Result<u64, String> {
    match parse_size(v) {
        Ok(0) => Err("a memory limit must be larger than 0".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn set_device_limit(cfg: &mut TenantConfig, ordinal: usize, limit: u64) -> Result<(), String> {
    if ordinal >= MAX_DEVICES {
        return Err(format!(
            "device index {ordinal} is out of range (0..{MAX_DEVICES})"
        ));
    }
    if cfg.device_memory_limits.len() <= ordinal {
        cfg.device_memory_limits.resize(ordinal + 1, None);
    }
    cfg.device_memory_limits[ordinal] = Some(limit);
    Ok(())
}

/// `4GiB` (all devices) or `4GiB,2GiB` (per ordinal).
fn apply_limit_list(cfg: &mut TenantConfig, v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split(',').collect();
    if parts.len() == 1 {
        cfg.default_memory_limit = Some(parse_limit(parts[0])?);
        cfg.device_memory_limits.clear();
        return Ok(());
    }
    cfg.default_memory_limit = None;
    cfg.device_memory_limits.clear();
    for (i, p) in parts.iter().enumerate() {
        let limit = parse_limit(p).map_err(|e| format!("entry {i}: {e}"))?;
        set_device_limit(cfg, i, limit)?;
    }
    Ok(())
}

fn apply_hami_env(cfg: &mut TenantConfig, env: &[(String, String)]) -> Result<(), ConfigError> {
    for (key, value) in env {
        if key == HAMI_MEMORY_LIMIT {
            cfg.default_memory_limit =
                Some(parse_limit(value).map_err(|why| env_err(key, value, &why))?);
        } else if let Some(idx) = key
            .strip_prefix(HAMI_MEMORY_LIMIT)
            .and_then(|s| s.strip_prefix('_'))
        {
            let ordinal: usize = idx
                .parse()
                .map_err(|_| env_err(key, value, "the suffix must be a device index"))?;
            let limit = parse_limit(value).map_err(|why| env_err(key, value, &why))?;
            set_device_limit(cfg, ordinal, limit).map_err(|why| env_err(key, value, &why))?;
        }
    }
    Ok(())
}

fn apply_file(cfg: &mut TenantConfig, path: &Path, text: &str) -> Result<(), ConfigError> {
    for (n, raw) in text.lines().enumerate() {
        let bad = |why: String| ConfigError::File {
            path: path.display().to_string(),
            line: n + 1,
            why,
        };
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| bad(format!("expected key = value, got {line:?}")))?;
        let (key, value) = (key.trim(), value.trim());
        match key {
            "memory" => cfg.default_memory_limit = Some(parse_limit(value).map_err(bad)?),
            "region" => {
                if value.is_empty() {
                    return Err(bad("region needs a path".into()));
                }
                cfg.region = Some(PathBuf::from(value));
            }
            "context_memory" => {
                cfg.context_memory = parse_size(value).map_err(|e| bad(e.to_string()))?
            }
            _ => match key.strip_prefix("memory.") {
                Some(idx) => {
                    let ordinal: usize = idx
                        .parse()
                        .map_err(|_| bad(format!("{key:?}: expected memory.<device index>")))?;
                    let limit = parse_limit(value).map_err(bad)?;
                    set_device_limit(cfg, ordinal, limit).map_err(bad)?;
                }
                None => {
                    return Err(bad(format!(
                        "unknown key {key:?} (memory, memory.<i>, region, context_memory)"
                    )))
                }
            },
        }
    }
    Ok(())
}

/// Reads the limits file that applies to this process, if any: the trusted default path when it
/// exists, else the file named by `GPUPOOL_LIMITS_FILE`.
pub fn read_limits_file(
    env: &[(String, String)],
) -> Result<Option<(PathBuf, String)>, ConfigError> {
    let default = Path::new(DEFAULT_LIMITS_FILE);
    let path = if default.exists() {
        default.to_path_buf()
    } else {
        match env.iter().rev().find(|(k, _)| k == ENV_LIMITS_FILE) {
            Some((_, v)) => PathBuf::from(v),
            None => return Ok(None),
        }
    };
    std::fs::read_to_string(&path)
        .map(|text| Some((path.clone(), text)))
        .map_err(|e| ConfigError::Unreadable {
            path: path.display().to_string(),
            why: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_configuration_means_no_limit() {
        let cfg = TenantConfig::from_sources(&[], None).unwrap();
        assert!(!cfg.has_memory_limit());
        assert_eq!(cfg.source, ConfigSource::None);
    }

    #[test]
    fn gpupool_env_single_and_per_device() {
        let cfg =
            TenantConfig::from_sources(&env(&[("GPUPOOL_MEMORY_LIMIT", "4GiB")]), None).unwrap();
        assert_eq!(cfg.memory_limit(0), Some(4 << 30));
        assert_eq!(cfg.memory_limit(7), Some(4 << 30));
        let cfg = TenantConfig::from_sources(&env(&[("GPUPOOL_MEMORY_LIMIT", "1GiB,2GiB")]), None)
            .unwrap();
        assert_eq!(cfg.memory_limit(0), Some(1 << 30));
        assert_eq!(cfg.memory_limit(1), Some(2 << 30));
        assert_eq!(cfg.memory_limit(2), None);
    }

    #[test]
    fn hami_names_are_accepted_and_gpupool_wins() {
        let cfg = TenantConfig::from_sources(
            &env(&[
                ("CUDA_DEVICE_MEMORY_LIMIT", "1g"),
                ("CUDA_DEVICE_MEMORY_LIMIT_1", "512m"),
                ("CUDA_DEVICE_MEMORY_SHARED_CACHE", "/tmp/x.cache"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(cfg.memory_limit(0), Some(1 << 30));
        assert_eq!(cfg.memory_limit(1), Some(512 << 20));
        assert_eq!(cfg.region, Some(PathBuf::from("/tmp/x.cache")));
        let cfg = TenantConfig::from_sources(
            &env(&[
                ("CUDA_DEVICE_MEMORY_LIMIT", "1g"),
                ("GPUPOOL_MEMORY_LIMIT", "3GiB"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(cfg.memory_limit(0), Some(3 << 30));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("GPUPOOL_MEMORY_LIMIT", "lots"),
            ("GPUPOOL_MEMORY_LIMIT", "0"),
            ("GPUPOOL_MEMORY_LIMIT", "1GiB,,2GiB"),
            ("CUDA_DEVICE_MEMORY_LIMIT", "-5"),
            ("CUDA_DEVICE_MEMORY_LIMIT_x", "1g"),
            ("CUDA_DEVICE_MEMORY_LIMIT_99", "1g"),
            ("GPUPOOL_LOG", "loud"),
            ("GPUPOOL_CONTEXT_MEMORY", "big"),
            ("GPUPOOL_REGION", ""),
        ] {
            let err = TenantConfig::from_sources(&env(&[(k, v)]), None).expect_err(k);
            assert!(err.to_string().contains(k), "{err}");
        }
    }

    #[test]
    fn limits_file_wins_over_env() {
        let text = "# written by gpupool node\nmemory = 2GiB\nmemory.1 = 1GiB # second card\nregion = /run/gpupool/t1/region\ncontext_memory = 300MiB\n";
        let cfg = TenantConfig::from_sources(
            &env(&[
                ("GPUPOOL_MEMORY_LIMIT", "8GiB"),
                ("GPUPOOL_REGION", "/tmp/other"),
            ]),
            Some((Path::new("/etc/gpupool/limits.conf"), text)),
        )
        .unwrap();
        assert_eq!(cfg.memory_limit(0), Some(2 << 30));
        assert_eq!(cfg.memory_limit(1), Some(1 << 30));
        assert_eq!(cfg.region, Some(PathBuf::from("/run/gpupool/t1/region")));
        assert_eq!(cfg.context_memory, 300 << 20);
        assert!(matches!(cfg.source, ConfigSource::File(_)));
    }

    #[test]
    fn bad_limits_file_names_file_and_line() {
        for text in [
            "memory 2GiB",
            "memory = two",
            "colour = red",
            "memory.x = 1GiB",
            "region =",
        ] {
            let err = TenantConfig::from_sources(&[], Some((Path::new("/l.conf"), text)))
                .expect_err(text);
            let msg = err.to_string();
            assert!(msg.contains("/l.conf") && msg.contains("line 1"), "{msg}");
        }
    }
}
