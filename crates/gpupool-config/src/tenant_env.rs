//! The tenant contract in env-variable form: what a launcher (`gpupool run`, the remote
//! server's sessions) writes into a command's environment and the preloaded library reads back.
//!
//! A launcher sets each [`Setting`] from its own input, calls [`TenantEnv::check`] (the
//! library's own parser, so a value the launcher accepts is one the library accepts), and
//! writes [`TenantEnv::to_env`]. Errors name the setting, so the launcher can name its flag.

use crate::limits::{
    ConfigError, TenantConfig, ENV_CARD_DIR, ENV_COMPUTE_LIMIT, ENV_COMPUTE_REQUEST,
    ENV_CONTEXT_MEMORY, ENV_MEMORY_LIMIT, ENV_MEMORY_SPILL, ENV_PRIORITY, ENV_REGION,
    ENV_ROOM_WAIT, ENV_SPILL_MODE,
};
use thiserror::Error;

/// One setting of the tenant contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// Device memory limit (a size, or a per-device list).
    MemoryLimit,
    /// Host memory usable past the limit (a size, or a per-device list).
    MemorySpill,
    /// What spilled memory is (`pinned` or `managed`).
    SpillMode,
    /// Compute limit in percent (one value, or a per-device list).
    ComputeLimit,
    /// Guaranteed compute share in percent (one value, or a per-device list).
    ComputeRequest,
    /// `high` or `low`.
    Priority,
    /// How long an allocation waits for room on a full card.
    RoomWait,
    /// Device memory charged per context.
    ContextMemory,
    /// The tenant's shared accounting region.
    Region,
    /// The folder where tenants of a card coordinate compute shares.
    CardDir,
}

/// Every setting, in the order [`TenantEnv::to_env`] writes them.
pub const SETTINGS: [Setting; 10] = [
    Setting::MemoryLimit,
    Setting::MemorySpill,
    Setting::SpillMode,
    Setting::ComputeLimit,
    Setting::ComputeRequest,
    Setting::Priority,
    Setting::RoomWait,
    Setting::ContextMemory,
    Setting::Region,
    Setting::CardDir,
];

impl Setting {
    /// The env variable carrying the setting.
    pub const fn var(self) -> &'static str {
        match self {
            Setting::MemoryLimit => ENV_MEMORY_LIMIT,
            Setting::MemorySpill => ENV_MEMORY_SPILL,
            Setting::SpillMode => ENV_SPILL_MODE,
            Setting::ComputeLimit => ENV_COMPUTE_LIMIT,
            Setting::ComputeRequest => ENV_COMPUTE_REQUEST,
            Setting::Priority => ENV_PRIORITY,
            Setting::RoomWait => ENV_ROOM_WAIT,
            Setting::ContextMemory => ENV_CONTEXT_MEMORY,
            Setting::Region => ENV_REGION,
            Setting::CardDir => ENV_CARD_DIR,
        }
    }

    /// Whether the value may be a comma list with one entry per device.
    pub const fn per_device(self) -> bool {
        matches!(
            self,
            Setting::MemoryLimit
                | Setting::MemorySpill
                | Setting::ComputeLimit
                | Setting::ComputeRequest
        )
    }

    /// The setting an env variable carries, if it is one of the contract's.
    pub fn of_var(var: &str) -> Option<Setting> {
        SETTINGS.into_iter().find(|s| s.var() == var)
    }
}

/// A setting's value the library would refuse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{value:?}: {why}")]
pub struct SettingError {
    /// The setting whose value is refused (for a value inconsistent with another, the one
    /// that depends on the other: the spill on its limit, the request on its compute limit).
    pub setting: Setting,
    /// The refused value.
    pub value: String,
    /// What is wrong.
    pub why: String,
}

/// A tenant's settings as the text the library reads, one value per setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantEnv {
    values: Vec<(Setting, String)>,
}

impl TenantEnv {
    /// Sets `setting` to `value`, replacing any earlier value.
    pub fn set(&mut self, setting: Setting, value: impl Into<String>) -> &mut Self {
        let value = value.into();
        match self.values.iter_mut().find(|(s, _)| *s == setting) {
            Some(slot) => slot.1 = value,
            None => self.values.push((setting, value)),
        }
        self
    }

    /// Sets `setting` when `value` is given.
    pub fn set_some(&mut self, setting: Setting, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.set(setting, v);
        }
        self
    }

    /// The value of `setting`, if set.
    pub fn get(&self, setting: Setting) -> Option<&str> {
        self.values
            .iter()
            .find(|(s, _)| *s == setting)
            .map(|(_, v)| v.as_str())
    }

    /// Parses every setting as the library will, together (a spill needs its limit, a request
    /// must not exceed its compute limit).
    pub fn check(&self) -> Result<TenantConfig, SettingError> {
        let env: Vec<(String, String)> = self
            .to_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        TenantConfig::from_sources(&env, None).map_err(|e| self.error_of(e))
    }

    /// The setting a configuration error is about.
    fn error_of(&self, e: ConfigError) -> SettingError {
        match e {
            ConfigError::Env { var, value, why } => match Setting::of_var(&var) {
                Some(setting) => SettingError {
                    setting,
                    value,
                    why,
                },
                None => self.unattributed(format!("{var}={value:?}: {why}")),
            },
            other => self.unattributed(other.to_string()),
        }
    }

    /// An error `from_sources` could not attach to a variable of ours (it reads no file and
    /// only our variables here, so this is a defect); attached to the first setting.
    fn unattributed(&self, why: String) -> SettingError {
        let (setting, value) = self
            .values
            .first()
            .cloned()
            .unwrap_or((Setting::MemoryLimit, String::new()));
        SettingError {
            setting,
            value,
            why,
        }
    }

    /// Whether any per-device setting is a list (which [`TenantEnv::pin_to_cards`] pins).
    pub fn has_device_lists(&self) -> bool {
        self.values.iter().any(|(s, v)| is_device_list(*s, v))
    }

    /// Rewrites each per-device list (`8GiB,2GiB`) as per-card entries (`GPU-…=8GiB,…`) for
    /// the cards `uuids` lists by CUDA ordinal, so a command that reorders its devices later
    /// cannot swap its cards' limits. Single values stay as they are.
    pub fn pin_to_cards(&mut self, uuids: &[String]) -> Result<(), SettingError> {
        for (setting, value) in &mut self.values {
            if !is_device_list(*setting, value) {
                continue;
            }
            let entries: Vec<&str> = value.split(',').map(str::trim).collect();
            if entries.len() > uuids.len() {
                return Err(SettingError {
                    setting: *setting,
                    value: value.clone(),
                    why: format!(
                        "{} values for the {} devices the command sees",
                        entries.len(),
                        uuids.len()
                    ),
                });
            }
            *value = entries
                .iter()
                .zip(uuids)
                .map(|(v, u)| format!("{u}={v}"))
                .collect::<Vec<_>>()
                .join(",");
        }
        Ok(())
    }

    /// The env variables to write, in [`SETTINGS`] order.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        SETTINGS
            .into_iter()
            .filter_map(|s| self.get(s).map(|v| (s.var(), v.to_string())))
            .collect()
    }
}

/// Whether `value` of `setting` is a list with one entry per device.
fn is_device_list(setting: Setting, value: &str) -> bool {
    setting.per_device() && value.contains(',')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(Setting, &str)]) -> TenantEnv {
        let mut e = TenantEnv::default();
        for (s, v) in pairs {
            e.set(*s, *v);
        }
        e
    }

    #[test]
    fn what_is_written_is_what_the_library_reads() {
        let e = env(&[
            (Setting::ComputeLimit, "50"),
            (Setting::MemoryLimit, "4GiB"),
            (Setting::MemorySpill, "1GiB"),
            (Setting::Priority, "low"),
        ]);
        let cfg = e.check().unwrap();
        assert_eq!(cfg.memory_limit(0), Some(4 << 30));
        assert_eq!(cfg.spill_of(0, None), 1 << 30);
        assert_eq!(cfg.compute_limit(1), Some(50));
        assert_eq!(cfg.priority, crate::Priority::Low);
        let written = e.to_env();
        assert_eq!(written[0], (ENV_MEMORY_LIMIT, "4GiB".to_string()));
        assert_eq!(written.len(), 4);
    }

    #[test]
    fn a_later_value_replaces_an_earlier_one() {
        let mut e = env(&[(Setting::MemoryLimit, "1GiB")]);
        e.set(Setting::MemoryLimit, "2GiB");
        e.set_some(Setting::Priority, None);
        assert_eq!(e.to_env(), vec![(ENV_MEMORY_LIMIT, "2GiB".to_string())]);
    }

    #[test]
    fn errors_name_the_setting_and_its_value() {
        let e = env(&[(Setting::MemoryLimit, "4GiB,lots")])
            .check()
            .unwrap_err();
        assert_eq!(e.setting, Setting::MemoryLimit);
        assert_eq!(e.value, "4GiB,lots");
        let e = env(&[(Setting::RoomWait, "forever")]).check().unwrap_err();
        assert_eq!(e.setting, Setting::RoomWait);
        let e = env(&[
            (Setting::ComputeLimit, "40"),
            (Setting::ComputeRequest, "60"),
        ])
        .check()
        .unwrap_err();
        assert_eq!(e.setting, Setting::ComputeRequest);
        assert!(e.why.contains("above the compute limit"), "{e}");
        let e = env(&[(Setting::MemorySpill, "1GiB")]).check().unwrap_err();
        assert_eq!(e.setting, Setting::MemorySpill);
        let e = env(&[(Setting::Region, " ")]).check().unwrap_err();
        assert_eq!(e.setting, Setting::Region);
    }

    #[test]
    fn device_lists_are_pinned_to_cards() {
        let uuids = ["GPU-a".to_string(), "GPU-b".to_string()];
        let mut e = env(&[
            (Setting::MemoryLimit, "8GiB, 2GiB"),
            (Setting::ComputeLimit, "50"),
            (Setting::Region, "/r,x"),
        ]);
        assert!(e.has_device_lists());
        e.pin_to_cards(&uuids).unwrap();
        assert_eq!(e.get(Setting::MemoryLimit), Some("GPU-a=8GiB,GPU-b=2GiB"));
        assert_eq!(e.get(Setting::ComputeLimit), Some("50"));
        assert_eq!(e.get(Setting::Region), Some("/r,x"), "not a device list");
        let mut e = env(&[(Setting::MemorySpill, "1GiB,1GiB,1GiB")]);
        let err = e.pin_to_cards(&uuids).unwrap_err();
        assert_eq!(err.setting, Setting::MemorySpill);
        assert!(err.why.contains("3 values for the 2 devices"), "{err}");
    }

    #[test]
    fn every_setting_has_its_own_variable() {
        for s in SETTINGS {
            assert_eq!(Setting::of_var(s.var()), Some(s));
        }
        assert_eq!(Setting::of_var("GPUPOOL_LOG"), None);
    }
}
