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
/// Host memory a tenant may use past its device memory limit (spill), per device like the limit.
pub const ENV_MEMORY_SPILL: &str = "GPUPOOL_MEMORY_SPILL";
/// Env variable: device memory charged for each context the tenant creates.
pub const ENV_CONTEXT_MEMORY: &str = "GPUPOOL_CONTEXT_MEMORY";
/// Env variable: what spilled memory is: `pinned` (default: pinned host memory mapped into the
/// device) or `managed` (managed memory kept on the host, moved onto the device, oldest first,
/// when the tenant's device memory frees up).
pub const ENV_SPILL_MODE: &str = "GPUPOOL_SPILL_MODE";
/// Env variable: how long an allocation within the limit that finds the card full waits for
/// room (idle tenants checkpointed by the node's controller) before failing (`0`: not at all).
pub const ENV_ROOM_WAIT: &str = "GPUPOOL_ROOM_WAIT";
/// The longest room wait accepted.
pub const MAX_ROOM_WAIT_NS: u64 = 600_000_000_000;
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
/// Env variable: compute limit in percent of the device's time, one value for all devices or a
/// comma list per device ordinal (`50`, `25%,75%`).
pub const ENV_COMPUTE_LIMIT: &str = "GPUPOOL_COMPUTE_LIMIT";
/// HAMi-core: compute limit (percent) for all devices (and `_<i>` per device).
pub const HAMI_SM_LIMIT: &str = "CUDA_DEVICE_SM_LIMIT";
/// Env variable: guaranteed compute share in percent (same forms as the limit); idle time of
/// the card is lent up to the limit.
pub const ENV_COMPUTE_REQUEST: &str = "GPUPOOL_COMPUTE_REQUEST";
/// Env variable: `high` (default) or `low`: low-priority tenants only use time that
/// high-priority tenants leave idle.
pub const ENV_PRIORITY: &str = "GPUPOOL_PRIORITY";
/// HAMi-core: task priority, `0` high, `1` low.
pub const HAMI_PRIORITY: &str = "CUDA_TASK_PRIORITY";
/// Env variable: folder of the per-card coordination files shared by all tenants of a node.
pub const ENV_CARD_DIR: &str = "GPUPOOL_CARD_DIR";

/// Scheduling priority of a tenant's kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// Gets its share whenever it is busy (the default).
    #[default]
    High,
    /// Uses what high-priority tenants leave idle; backs off when they are busy.
    Low,
}

impl Priority {
    /// Parses `high` / `low` (and HAMi's `0` / `1`).
    pub fn parse(s: &str) -> Option<Priority> {
        match s.trim().to_ascii_lowercase().as_str() {
            "high" | "0" => Some(Priority::High),
            "low" | "1" => Some(Priority::Low),
            _ => None,
        }
    }
}

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

/// A value for every device, with exceptions per device: by CUDA ordinal (as the tenant sees its
/// devices, which `CUDA_VISIBLE_DEVICES` can reorder) or by card UUID (what launchers write:
/// a tenant reordering its devices cannot swap those).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PerDevice<T> {
    /// For every device without a specific value.
    pub default: Option<T>,
    /// Per ordinal (index = CUDA ordinal as the tenant sees it).
    pub devices: Vec<Option<T>>,
    /// Per card UUID; when any is given, ordinals are not used.
    pub by_uuid: Vec<([u8; 16], T)>,
}

impl<T: Copy> PerDevice<T> {
    /// The value for the device with CUDA ordinal `ordinal` and UUID `uuid` (when known), if
    /// any: its UUID's entry, else (when no UUID entry exists at all) its ordinal's, else the
    /// default.
    pub fn get(&self, ordinal: usize, uuid: Option<&[u8; 16]>) -> Option<T> {
        if !self.by_uuid.is_empty() {
            return uuid
                .and_then(|u| self.by_uuid.iter().find(|(k, _)| k == u))
                .map(|(_, v)| *v)
                .or(self.default);
        }
        self.devices
            .get(ordinal)
            .copied()
            .flatten()
            .or(self.default)
    }

    /// True when some device has a value.
    pub fn any(&self) -> bool {
        self.default.is_some()
            || self.devices.iter().any(Option::is_some)
            || !self.by_uuid.is_empty()
    }

    /// True when some device has a value of its own (by ordinal or UUID).
    pub fn per_device(&self) -> bool {
        self.devices.iter().any(Option::is_some) || !self.by_uuid.is_empty()
    }

    /// Sets the value of one ordinal.
    pub fn set(&mut self, ordinal: usize, value: T) -> Result<(), String> {
        if ordinal >= MAX_DEVICES {
            return Err(format!(
                "device index {ordinal} is out of range (0..{MAX_DEVICES})"
            ));
        }
        if self.devices.len() <= ordinal {
            self.devices.resize(ordinal + 1, None);
        }
        if self.devices[ordinal].is_some() {
            return Err(format!("device {ordinal} is given twice"));
        }
        self.devices[ordinal] = Some(value);
        Ok(())
    }

    /// Sets the value of the card with `uuid`.
    pub fn set_uuid(&mut self, uuid: [u8; 16], value: T) -> Result<(), String> {
        if self.by_uuid.iter().any(|(k, _)| *k == uuid) {
            return Err(format!("card {} is given twice", format_uuid(&uuid)));
        }
        if self.by_uuid.len() >= MAX_DEVICES {
            return Err(format!("more than {MAX_DEVICES} cards"));
        }
        self.by_uuid.push((uuid, value));
        Ok(())
    }

    /// `V` (every device), `V,V,...` (per ordinal) or `GPU-<uuid>=V,...` (per card), each value
    /// parsed by `parse`.
    pub fn set_list(
        &mut self,
        text: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<(), String> {
        let parts: Vec<&str> = text.split(',').collect();
        self.default = None;
        self.devices.clear();
        self.by_uuid.clear();
        if parts.iter().any(|p| p.contains('=')) {
            for (i, p) in parts.iter().enumerate() {
                let (uuid, v) = p
                    .split_once('=')
                    .ok_or_else(|| format!("entry {i}: expected GPU-<uuid>=VALUE"))?;
                let uuid = parse_gpu_uuid(uuid.trim())
                    .ok_or_else(|| format!("entry {i}: {:?} is not a GPU UUID", uuid.trim()))?;
                let v = parse(v).map_err(|e| format!("entry {i}: {e}"))?;
                self.set_uuid(uuid, v)?;
            }
            return Ok(());
        }
        if parts.len() == 1 {
            self.default = Some(parse(parts[0])?);
            return Ok(());
        }
        for (i, p) in parts.iter().enumerate() {
            let v = parse(p).map_err(|e| format!("entry {i}: {e}"))?;
            self.set(i, v)?;
        }
        Ok(())
    }
}

/// Parses `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (NVIDIA's form of a card UUID).
pub fn parse_gpu_uuid(text: &str) -> Option<[u8; 16]> {
    let hex = text.strip_prefix("GPU-")?;
    let groups: Vec<&str> = hex.split('-').collect();
    if groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
        return None;
    }
    let digits: String = groups.concat();
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(digits.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// NVIDIA's text form of a card UUID.
pub fn format_uuid(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A device's memory limit as the configuration gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimit {
    /// No memory limit is configured for the tenant at all.
    None,
    /// At most this many bytes.
    Bytes(u64),
    /// Limits are given per device, and not for this one: nothing may be allocated on it.
    NotListed,
}

/// Everything the preloaded library needs to know about its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TenantConfig {
    /// Device memory limits (bytes).
    pub memory: PerDevice<u64>,
    /// The limits file says `memory = unlimited` (a choice, never a default).
    pub memory_unlimited: bool,
    /// Host memory usable past the device memory limit (bytes; needs a limit on that device).
    pub spill: PerDevice<u64>,
    /// Compute limits (percent of the device's time, 1..=100).
    pub compute: PerDevice<u32>,
    /// Guaranteed compute shares (percent, at most the limit).
    pub compute_request: PerDevice<u32>,
    /// Priority of the tenant's kernels.
    pub priority: Priority,
    /// Folder of the per-card coordination files (request, priority); `None` = no coordination.
    pub card_dir: Option<PathBuf>,
    /// This tenant's folder name in `card_dir` (its entries; the node agent names it); `None`:
    /// derived from the region's path.
    pub card_tenant: Option<String>,
    /// Shared accounting region file; `None` = a private, per-process region.
    pub region: Option<PathBuf>,
    /// Memory charged per context created.
    pub context_memory: u64,
    /// How long an allocation that finds the card full waits for room (ns; 0: fails at once).
    pub room_wait_ns: u64,
    /// Spill to managed memory (moved back onto the device when room frees up) instead of
    /// pinned host memory.
    pub spill_managed: bool,
    /// Log level.
    pub log_level: LogLevel,
    /// Where the limits came from.
    pub source: ConfigSource,
}

impl TenantConfig {
    /// The memory limit of the device with CUDA ordinal `ordinal` and UUID `uuid`.
    pub fn memory_limit_of(&self, ordinal: usize, uuid: Option<&[u8; 16]>) -> MemoryLimit {
        if self.memory_unlimited || !self.memory.any() {
            return MemoryLimit::None;
        }
        match self.memory.get(ordinal, uuid) {
            Some(b) => MemoryLimit::Bytes(b),
            None => MemoryLimit::NotListed,
        }
    }

    /// The memory limit of device `ordinal` by ordinal alone, if any.
    pub fn memory_limit(&self, ordinal: usize) -> Option<u64> {
        self.memory.get(ordinal, None)
    }

    /// True when at least one device has a memory limit.
    pub fn has_memory_limit(&self) -> bool {
        self.memory.any() && !self.memory_unlimited
    }

    /// True when the tenant's launches are paced at all: a compute limit or request on some
    /// device, or low priority (which yields to others).
    pub fn paces_compute(&self) -> bool {
        self.compute.any() || self.compute_request.any() || self.priority == Priority::Low
    }

    /// The compute limit of device `ordinal` in percent, if any (by ordinal alone).
    pub fn compute_limit(&self, ordinal: usize) -> Option<u32> {
        self.compute.get(ordinal, None)
    }

    /// The guaranteed share of device `ordinal`: the request, else the limit (by ordinal
    /// alone).
    pub fn compute_request(&self, ordinal: usize) -> Option<u32> {
        self.compute_request
            .get(ordinal, None)
            .or_else(|| self.compute_limit(ordinal))
    }

    /// Checks that no request exceeds its device's limit.
    /// Host memory device `ordinal` (UUID `uuid`) may spill to past its limit (0: none).
    pub fn spill_of(&self, ordinal: usize, uuid: Option<&[u8; 16]>) -> u64 {
        match self.memory_limit_of(ordinal, uuid) {
            MemoryLimit::Bytes(_) => self.spill.get(ordinal, uuid).unwrap_or(0),
            _ => 0,
        }
    }

    /// Every device given a spill allowance of its own has a memory limit (a spill for every
    /// device applies to those with a limit).
    fn check_spill(&self) -> Result<(), String> {
        if !self.spill.any() {
            return Ok(());
        }
        let no_limit = "a spill allowance needs a memory limit on the same devices (memory = SIZE)";
        if self.memory_unlimited || !self.memory.any() {
            return Err(no_limit.into());
        }
        for o in 0..MAX_DEVICES {
            if self.spill.get(o, None).is_some() && self.memory.get(o, None).is_none() {
                return Err(format!("{no_limit}: device {o} has a spill but no limit"));
            }
        }
        for uuid in self.spill.by_uuid.iter().map(|(u, _)| u) {
            if self.memory.get(usize::MAX, Some(uuid)).is_none() {
                return Err(format!(
                    "{no_limit}: card {} has a spill but no limit",
                    format_uuid(uuid)
                ));
            }
        }
        Ok(())
    }

    fn check_requests(&self) -> Result<(), String> {
        for o in 0..MAX_DEVICES {
            if let (Some(r), Some(l)) =
                (self.compute_request.get(o, None), self.compute.get(o, None))
            {
                if r > l {
                    return Err(format!(
                        "device {o}: compute request {r}% is above the compute limit {l}%"
                    ));
                }
            }
        }
        for (uuid, r) in &self.compute_request.by_uuid {
            if let Some(l) = self.compute.get(0, Some(uuid)) {
                if *r > l {
                    return Err(format!(
                        "card {}: compute request {r}% is above the compute limit {l}%",
                        format_uuid(uuid)
                    ));
                }
            }
        }
        Ok(())
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
        if let Some(v) = get(ENV_SPILL_MODE) {
            cfg.spill_managed =
                parse_spill_mode(v).map_err(|why| env_err(ENV_SPILL_MODE, v, &why))?;
        }
        if let Some(v) = get(ENV_ROOM_WAIT) {
            cfg.room_wait_ns = parse_room_wait(v).map_err(|why| env_err(ENV_ROOM_WAIT, v, &why))?;
        }
        if let Some((path, text)) = file {
            apply_file(&mut cfg, path, text)?;
            cfg.check_requests()
                .and_then(|()| cfg.check_spill())
                .map_err(|why| ConfigError::File {
                    path: path.display().to_string(),
                    line: 0,
                    why,
                })?;
            cfg.source = ConfigSource::File(path.to_path_buf());
            return Ok(cfg);
        }
        apply_hami_env(&mut cfg, env)?;
        if let Some(v) = get(ENV_MEMORY_LIMIT) {
            cfg.memory
                .set_list(v, parse_limit)
                .map_err(|why| env_err(ENV_MEMORY_LIMIT, v, &why))?;
        }
        if let Some(v) = get(ENV_MEMORY_SPILL) {
            cfg.spill
                .set_list(v, parse_spill)
                .map_err(|why| env_err(ENV_MEMORY_SPILL, v, &why))?;
            cfg.check_spill()
                .map_err(|why| env_err(ENV_MEMORY_SPILL, v, &why))?;
        }
        if let Some(v) = get(ENV_COMPUTE_LIMIT) {
            cfg.compute
                .set_list(v, parse_percent)
                .map_err(|why| env_err(ENV_COMPUTE_LIMIT, v, &why))?;
        }
        if let Some(v) = get(ENV_COMPUTE_REQUEST) {
            cfg.compute_request
                .set_list(v, parse_percent)
                .map_err(|why| env_err(ENV_COMPUTE_REQUEST, v, &why))?;
            cfg.check_requests()
                .map_err(|why| env_err(ENV_COMPUTE_REQUEST, v, &why))?;
        }
        for var in [HAMI_PRIORITY, ENV_PRIORITY] {
            if let Some(v) = get(var) {
                cfg.priority = Priority::parse(v)
                    .ok_or_else(|| env_err(var, v, "expected high or low (HAMi: 0 or 1)"))?;
            }
        }
        if let Some(v) = get(ENV_CARD_DIR) {
            if v.trim().is_empty() {
                return Err(env_err(ENV_CARD_DIR, v, "empty path"));
            }
            cfg.card_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get(ENV_REGION).or_else(|| get(HAMI_SHARED_CACHE)) {
            if v.trim().is_empty() {
                return Err(env_err(ENV_REGION, v, "empty path"));
            }
            cfg.region = Some(PathBuf::from(v));
        }
        if cfg.has_memory_limit() || cfg.compute.any() {
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

/// Checks a tenant folder name for the card folder: 1 to 128 letters, digits, `-`, `_` or
/// `.`, not starting with `.`.
pub fn check_card_tenant(name: &str) -> Result<String, String> {
    let ok = (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(format!(
            "card_tenant {name:?}: expected 1 to 128 letters, digits, '-', '_' or '.', not starting with '.'"
        ))
    }
}

/// The largest memory limit accepted (1 PiB): anything larger is a mistake (or an attempt at
/// "no limit", which is written by leaving the limit out, or `memory = unlimited` in a limits
/// file).
pub const MAX_MEMORY_LIMIT: u64 = 1 << 50;

fn parse_limit(v: &str) -> Result<u64, String> {
    match parse_size(v) {
        Ok(0) => Err("a memory limit must be larger than 0".into()),
        Ok(n) if n > MAX_MEMORY_LIMIT => Err(format!(
            "a memory limit must be at most 1PiB ({MAX_MEMORY_LIMIT} bytes); for no limit, give none"
        )),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A spill mode: `true` for `managed`, `false` for `pinned`.
fn parse_spill_mode(v: &str) -> Result<bool, String> {
    match v.trim() {
        "pinned" => Ok(false),
        "managed" => Ok(true),
        _ => Err(format!("spill mode {v:?}: expected pinned or managed")),
    }
}

/// A room wait: a duration up to [`MAX_ROOM_WAIT_NS`].
fn parse_room_wait(v: &str) -> Result<u64, String> {
    let ns = crate::duration::parse_duration_ns(v).map_err(|e| e.to_string())?;
    if ns > MAX_ROOM_WAIT_NS {
        return Err(format!(
            "a room wait must be at most {}",
            crate::duration::format_duration_ns(MAX_ROOM_WAIT_NS)
        ));
    }
    Ok(ns)
}

/// A spill allowance: a size up to the largest memory limit (0: none).
fn parse_spill(v: &str) -> Result<u64, String> {
    match parse_size(v) {
        Ok(n) if n > MAX_MEMORY_LIMIT => Err(format!(
            "a spill allowance must be at most 1PiB ({MAX_MEMORY_LIMIT} bytes)"
        )),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A compute limit: `50` or `50%`, from 1 to 100.
fn parse_percent(v: &str) -> Result<u32, String> {
    let t = v.trim();
    let t = t.strip_suffix('%').unwrap_or(t).trim();
    match t.parse::<u32>() {
        Ok(n) if (1..=100).contains(&n) => Ok(n),
        _ => Err("a compute limit is a percentage from 1 to 100".into()),
    }
}

fn apply_hami_env(cfg: &mut TenantConfig, env: &[(String, String)]) -> Result<(), ConfigError> {
    for (key, value) in env {
        apply_hami_var(&mut cfg.memory, HAMI_MEMORY_LIMIT, key, value, parse_limit)?;
        apply_hami_var(&mut cfg.compute, HAMI_SM_LIMIT, key, value, parse_percent)?;
    }
    Ok(())
}

/// HAMi-core's `NAME` (every device) or `NAME_<i>` (one device).
fn apply_hami_var<T: Copy>(
    target: &mut PerDevice<T>,
    name: &str,
    key: &str,
    value: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<(), ConfigError> {
    if key == name {
        target.default = Some(parse(value).map_err(|why| env_err(key, value, &why))?);
    } else if let Some(idx) = key.strip_prefix(name).and_then(|s| s.strip_prefix('_')) {
        let ordinal: usize = idx
            .parse()
            .map_err(|_| env_err(key, value, "the suffix must be a device index"))?;
        let v = parse(value).map_err(|why| env_err(key, value, &why))?;
        target
            .set(ordinal, v)
            .map_err(|why| env_err(key, value, &why))?;
    }
    Ok(())
}

fn apply_file(cfg: &mut TenantConfig, path: &Path, text: &str) -> Result<(), ConfigError> {
    let mut seen: Vec<(String, usize)> = Vec::new();
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
        if let Some((_, first)) = seen.iter().find(|(k, _)| k == key) {
            return Err(bad(format!(
                "{key:?} is given twice (first on line {first})"
            )));
        }
        seen.push((key.to_string(), n + 1));
        match key {
            "memory" if value.eq_ignore_ascii_case("unlimited") => cfg.memory_unlimited = true,
            "memory" => cfg.memory.default = Some(parse_limit(value).map_err(bad)?),
            "spill" => cfg.spill.default = Some(parse_spill(value).map_err(bad)?),
            "compute" => cfg.compute.default = Some(parse_percent(value).map_err(bad)?),
            "compute_request" => {
                cfg.compute_request.default = Some(parse_percent(value).map_err(bad)?)
            }
            "priority" => {
                cfg.priority = Priority::parse(value)
                    .ok_or_else(|| bad(format!("priority {value:?}: expected high or low")))?
            }
            "card_dir" => {
                if value.is_empty() {
                    return Err(bad("card_dir needs a path".into()));
                }
                cfg.card_dir = Some(PathBuf::from(value));
            }
            "card_tenant" => {
                cfg.card_tenant = Some(check_card_tenant(value).map_err(bad)?);
            }
            "region" => {
                if value.is_empty() {
                    return Err(bad("region needs a path".into()));
                }
                cfg.region = Some(PathBuf::from(value));
            }
            "context_memory" => {
                cfg.context_memory = parse_size(value).map_err(|e| bad(e.to_string()))?
            }
            "room_wait" => cfg.room_wait_ns = parse_room_wait(value).map_err(bad)?,
            "spill_mode" => cfg.spill_managed = parse_spill_mode(value).map_err(bad)?,
            _ => {
                let Some((name, device)) = key.split_once('.') else {
                    return Err(bad(format!(
                        "unknown key {key:?} (memory[.<i>|.GPU-<uuid>], spill[…], compute[…], compute_request[…], priority, region, card_dir, card_tenant, context_memory, room_wait, spill_mode)"
                    )));
                };
                let target = |cfg: &mut TenantConfig| -> Result<(), String> {
                    match name {
                        "memory" => set_device(&mut cfg.memory, device, parse_limit(value)?),
                        "spill" => set_device(&mut cfg.spill, device, parse_spill(value)?),
                        "compute" => set_device(&mut cfg.compute, device, parse_percent(value)?),
                        "compute_request" => {
                            set_device(&mut cfg.compute_request, device, parse_percent(value)?)
                        }
                        _ => Err(format!(
                            "unknown key {key:?} (memory[.<i>|.GPU-<uuid>], spill[…], compute[…], compute_request[…], priority, region, card_dir, card_tenant, context_memory, room_wait, spill_mode)"
                        )),
                    }
                };
                target(cfg).map_err(bad)?;
            }
        }
    }
    if cfg.memory_unlimited && cfg.memory.any() {
        return Err(ConfigError::File {
            path: path.display().to_string(),
            line: 0,
            why: "memory = unlimited together with memory limits".into(),
        });
    }
    if !cfg.memory.any() && !cfg.memory_unlimited {
        // A limits file is the node's word on the tenant: one that says nothing about memory
        // is a broken file, never "no limit".
        return Err(ConfigError::File {
            path: path.display().to_string(),
            line: 0,
            why: "no memory limit (memory = SIZE, memory.<i> / memory.GPU-<uuid> = SIZE, or memory = unlimited)".into(),
        });
    }
    Ok(())
}

/// `<i>` (a CUDA ordinal) or `GPU-<uuid>` (a card) of a per-device key.
fn set_device<T: Copy>(target: &mut PerDevice<T>, device: &str, value: T) -> Result<(), String> {
    if device.starts_with("GPU-") {
        let uuid = parse_gpu_uuid(device).ok_or_else(|| {
            format!("{device:?} is not a GPU UUID (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
        })?;
        return target.set_uuid(uuid, value);
    }
    let ordinal = device
        .parse::<usize>()
        .map_err(|_| format!("{device:?}: expected a device index or GPU-<uuid>"))?;
    target.set(ordinal, value)
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
    fn the_spill_mode_is_pinned_unless_managed_is_asked_for() {
        let base = [(ENV_MEMORY_LIMIT, "1GiB"), (ENV_MEMORY_SPILL, "1GiB")];
        let cfg = TenantConfig::from_sources(&env(&base), None).unwrap();
        assert!(!cfg.spill_managed);
        let mut vars = base.to_vec();
        vars.push((ENV_SPILL_MODE, "managed"));
        assert!(
            TenantConfig::from_sources(&env(&vars), None)
                .unwrap()
                .spill_managed
        );
        vars.push((ENV_SPILL_MODE, "fast"));
        let e = TenantConfig::from_sources(&env(&vars), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("GPUPOOL_SPILL_MODE") && e.contains("pinned or managed"),
            "{e}"
        );
        let file = "memory = 1GiB\nspill = 1GiB\nspill_mode = managed\n";
        let cfg = TenantConfig::from_sources(&[], Some((Path::new("/l.conf"), file))).unwrap();
        assert!(cfg.spill_managed);
    }

    #[test]
    fn a_room_wait_comes_from_env_or_file_and_is_bounded() {
        let cfg = TenantConfig::from_sources(
            &env(&[(ENV_MEMORY_LIMIT, "1GiB"), (ENV_ROOM_WAIT, "1.5s")]),
            None,
        )
        .unwrap();
        assert_eq!(cfg.room_wait_ns, 1_500_000_000);
        let file = "memory = 1GiB\nroom_wait = 30s\n";
        let cfg = TenantConfig::from_sources(&[], Some((Path::new("/l.conf"), file))).unwrap();
        assert_eq!(cfg.room_wait_ns, 30_000_000_000);
        for (v, needle) in [("20m", "at most 600.00s"), ("soon", "GPUPOOL_ROOM_WAIT")] {
            let e = TenantConfig::from_sources(&env(&[(ENV_ROOM_WAIT, v)]), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{v}: {e}");
        }
        let e = TenantConfig::from_sources(
            &[],
            Some((Path::new("/l.conf"), "memory = 1GiB\nroom_wait = 2\n")),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/l.conf") && e.contains("unit"), "{e}");
    }

    #[test]
    fn spill_allowances_need_a_memory_limit() {
        let cfg = TenantConfig::from_sources(
            &env(&[
                (ENV_MEMORY_LIMIT, "4GiB,2GiB"),
                (ENV_MEMORY_SPILL, "8GiB,0"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!((cfg.spill_of(0, None), cfg.spill_of(1, None)), (8 << 30, 0));
        assert_eq!(cfg.spill_of(2, None), 0, "no limit on device 2: no spill");
        for (vars, needle) in [
            (vec![(ENV_MEMORY_SPILL, "8GiB")], "needs a memory limit"),
            (
                vec![(ENV_MEMORY_LIMIT, "1GiB"), (ENV_MEMORY_SPILL, "lots")],
                "GPUPOOL_MEMORY_SPILL",
            ),
            (
                vec![(ENV_MEMORY_LIMIT, "1GiB"), (ENV_MEMORY_SPILL, "2048TiB")],
                "at most 1PiB",
            ),
        ] {
            let e = TenantConfig::from_sources(&env(&vars), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{vars:?}: {e}");
        }
        let file = "memory = 4GiB\nspill = 4GiB\nspill.1 = 1GiB\n";
        let cfg = TenantConfig::from_sources(&[], Some((Path::new("/l"), file))).unwrap();
        assert_eq!(
            (cfg.spill_of(0, None), cfg.spill_of(1, None)),
            (4 << 30, 1 << 30)
        );
        let file = "memory = unlimited\nspill = 1GiB\n";
        let e = TenantConfig::from_sources(&[], Some((Path::new("/l"), file)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/l") && e.contains("needs a memory limit"),
            "{e}"
        );
    }

    #[test]
    fn compute_limits_from_env_hami_and_file() {
        let cfg = TenantConfig::from_sources(&env(&[(ENV_COMPUTE_LIMIT, "25%,75")]), None).unwrap();
        assert_eq!(cfg.compute_limit(0), Some(25));
        assert_eq!(cfg.compute_limit(1), Some(75));
        assert_eq!(cfg.compute_limit(2), None);
        assert_eq!(cfg.source, ConfigSource::Env);
        let cfg = TenantConfig::from_sources(
            &env(&[
                ("CUDA_DEVICE_SM_LIMIT", "30"),
                ("CUDA_DEVICE_SM_LIMIT_1", "60"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(cfg.compute_limit(0), Some(30));
        assert_eq!(cfg.compute_limit(1), Some(60));
        let cfg = TenantConfig::from_sources(
            &env(&[("CUDA_DEVICE_SM_LIMIT", "30"), (ENV_COMPUTE_LIMIT, "40")]),
            None,
        )
        .unwrap();
        assert_eq!(
            cfg.compute_limit(0),
            Some(40),
            "GPUPOOL_* wins over HAMi's name"
        );
        let file = "memory = unlimited\ncompute = 50\ncompute.1 = 10%\n";
        let cfg = TenantConfig::from_sources(&[], Some((Path::new("/l"), file))).unwrap();
        assert_eq!(
            (cfg.compute_limit(0), cfg.compute_limit(1)),
            (Some(50), Some(10))
        );
    }

    #[test]
    fn requests_priority_and_card_dir() {
        let cfg = TenantConfig::from_sources(
            &env(&[
                (ENV_COMPUTE_LIMIT, "80"),
                (ENV_COMPUTE_REQUEST, "30"),
                (ENV_PRIORITY, "low"),
                (ENV_CARD_DIR, "/run/gpupool/cards"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(cfg.compute_request(0), Some(30));
        assert_eq!(cfg.priority, Priority::Low);
        assert_eq!(cfg.card_dir, Some(PathBuf::from("/run/gpupool/cards")));
        let only_limit =
            TenantConfig::from_sources(&env(&[(ENV_COMPUTE_LIMIT, "40")]), None).unwrap();
        assert_eq!(
            only_limit.compute_request(0),
            Some(40),
            "the request defaults to the limit"
        );
        assert_eq!(only_limit.priority, Priority::High);
        let hami = TenantConfig::from_sources(&env(&[(HAMI_PRIORITY, "1")]), None).unwrap();
        assert_eq!(hami.priority, Priority::Low);
        for (k, v) in [
            (ENV_PRIORITY, "urgent"),
            (HAMI_PRIORITY, "2"),
            (ENV_CARD_DIR, " "),
        ] {
            let e = TenantConfig::from_sources(&env(&[(k, v)]), None).unwrap_err();
            assert!(e.to_string().contains(k), "{e}");
        }
        let over = TenantConfig::from_sources(
            &env(&[(ENV_COMPUTE_LIMIT, "40"), (ENV_COMPUTE_REQUEST, "60")]),
            None,
        )
        .unwrap_err();
        assert!(
            over.to_string().contains("above the compute limit"),
            "{over}"
        );
        let file =
            "memory = 1GiB\ncompute = 80\ncompute_request = 20\npriority = low\ncard_dir = /c\n";
        let cfg = TenantConfig::from_sources(&[], Some((Path::new("/l"), file))).unwrap();
        assert_eq!(
            (cfg.compute_request(0), cfg.priority),
            (Some(20), Priority::Low)
        );
        let bad = TenantConfig::from_sources(
            &[],
            Some((
                Path::new("/l"),
                "memory = 1GiB\ncompute = 10\ncompute_request = 20\n",
            )),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn bad_compute_limits_fail_closed_naming_the_input() {
        for (k, v) in [
            (ENV_COMPUTE_LIMIT, "0"),
            (ENV_COMPUTE_LIMIT, "101"),
            (ENV_COMPUTE_LIMIT, "half"),
            (ENV_COMPUTE_LIMIT, "50,,50"),
            ("CUDA_DEVICE_SM_LIMIT", "0"),
            ("CUDA_DEVICE_SM_LIMIT_x", "50"),
        ] {
            let e = TenantConfig::from_sources(&env(&[(k, v)]), None).unwrap_err();
            assert!(e.to_string().contains(k), "{k}={v}: {e}");
        }
        for line in ["compute = 0", "compute.x = 5", "compute.99 = 5"] {
            let text = format!("memory = 1GiB\n{line}");
            let e = TenantConfig::from_sources(&[], Some((Path::new("/l"), &text))).unwrap_err();
            assert!(e.to_string().contains("/l"), "{line}: {e}");
        }
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
        assert_eq!(
            cfg.memory_limit_of(2, None),
            MemoryLimit::NotListed,
            "a device left out of a per-device list gets nothing, not everything"
        );
        let a = "GPU-0a0a0a0a-0000-4000-8000-000000000001";
        let b = "GPU-0b0b0b0b-0000-4000-8000-000000000002";
        let cfg = TenantConfig::from_sources(
            &env(&[("GPUPOOL_MEMORY_LIMIT", &format!("{a}=1GiB,{b}=2GiB"))]),
            None,
        )
        .unwrap();
        let (ua, ub) = (parse_gpu_uuid(a).unwrap(), parse_gpu_uuid(b).unwrap());
        // Keyed by card: the order the tenant sees its devices in does not matter.
        assert_eq!(
            cfg.memory_limit_of(1, Some(&ua)),
            MemoryLimit::Bytes(1 << 30)
        );
        assert_eq!(
            cfg.memory_limit_of(0, Some(&ub)),
            MemoryLimit::Bytes(2 << 30)
        );
        assert_eq!(cfg.memory_limit_of(0, None), MemoryLimit::NotListed);
        assert_eq!(format_uuid(&ua), a);
    }

    #[test]
    fn a_limits_file_fails_closed() {
        let f = |text: &str| TenantConfig::from_sources(&[], Some((Path::new("/l.conf"), text)));
        // Nothing about memory is never "no limit".
        for text in ["", "# comment only\n", "region = /r\n", "compute = 50\n"] {
            let e = f(text).expect_err(text).to_string();
            assert!(
                e.contains("/l.conf") && e.contains("no memory limit"),
                "{text:?}: {e}"
            );
        }
        // Every key once.
        for text in [
            "memory = 1GiB\nmemory = 8GiB\n",
            "memory.0 = 1GiB\nmemory.0 = 2GiB\n",
            "memory = 1GiB\nregion = /a\nregion = /b\n",
        ] {
            let e = f(text).expect_err(text).to_string();
            assert!(e.contains("given twice"), "{text:?}: {e}");
        }
        let a = "GPU-0a0a0a0a-0000-4000-8000-000000000001";
        let e = f(&format!("memory.{a} = 1GiB\nmemory.{a} = 2GiB\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("given twice"), "{e}");
        let e = f("memory.GPU-zz = 1GiB\n").unwrap_err().to_string();
        assert!(e.contains("not a GPU UUID"), "{e}");
        let e = f("memory = unlimited\nmemory.0 = 1GiB\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unlimited together"), "{e}");
        let cfg = f("memory = unlimited\ncompute = 20\n").unwrap();
        assert_eq!(cfg.memory_limit_of(0, None), MemoryLimit::None);
        assert!(!cfg.has_memory_limit());
    }

    #[test]
    fn a_limit_meant_as_no_limit_is_refused() {
        for v in ["18446744073709551615", "16EiB", "2PiB", "1048577GiB"] {
            let e = TenantConfig::from_sources(&env(&[(ENV_MEMORY_LIMIT, v)]), None)
                .expect_err(v)
                .to_string();
            assert!(
                e.contains(ENV_MEMORY_LIMIT)
                    && (e.contains("at most 1PiB")
                        || e.contains("too large")
                        || e.contains("unit")),
                "{v}: {e}"
            );
            let text = format!("memory = {v}\n");
            assert!(TenantConfig::from_sources(&[], Some((Path::new("/l"), &text))).is_err());
        }
        let cfg =
            TenantConfig::from_sources(&env(&[(ENV_MEMORY_LIMIT, "1048576GiB")]), None).unwrap();
        assert_eq!(cfg.memory_limit(0), Some(MAX_MEMORY_LIMIT));
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
