//! The environment of a simulated machine: its state folder, a library folder where
//! `libcuda.so.1` and `libnvidia-ml.so.1` are the simulated driver, and the env variables that
//! point a program at them.

use crate::artefacts::sim_library;
use anyhow::{Context, Result};
use gpupool_config::SimSpec;
use std::path::{Path, PathBuf};

/// `--sim SPEC [--state DIR]` of the commands that look at a machine (`info`, `top`,
/// `exporter`).
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Look at a simulated machine of this spec instead of the real GPUs.
    #[arg(long, value_name = "SPEC")]
    pub sim: Option<String>,
    /// State folder of the simulated machine (default: the one `gpupool run --sim SPEC` uses).
    #[arg(long, value_name = "DIR", requires = "sim")]
    pub state: Option<PathBuf>,
}

impl SimArgs {
    /// The simulated machine, prepared; `None` for the real GPUs.
    pub fn prepare(&self) -> Result<Option<SimEnv>> {
        self.sim
            .as_deref()
            .map(|spec| SimEnv::prepare(spec, self.state.as_deref()))
            .transpose()
    }
}

/// A simulated machine ready to run programs on.
pub struct SimEnv {
    /// The parsed spec.
    pub spec: SimSpec,
    /// The spec as given.
    pub spec_text: String,
    /// State folder shared by the machine's processes.
    pub state: PathBuf,
    /// Folder to put first on `LD_LIBRARY_PATH`.
    pub lib: PathBuf,
}

/// Makes each of `names` in `lib` a symlink to `target` (a driver library built beside the
/// binary), replacing a stale link atomically: several runs may prepare the same folder at once.
pub fn link_driver(lib: &Path, target: &Path, names: &[&str]) -> Result<()> {
    for name in names {
        let link = lib.join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(target) {
            let tmp = lib.join(format!(".{name}.{}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(target, &tmp)
                .and_then(|_| std::fs::rename(&tmp, &link))
                .with_context(|| format!("creating {}", link.display()))?;
        }
    }
    Ok(())
}

/// Default state folder of a spec: one machine per spec and user.
pub fn default_state(spec: &str) -> PathBuf {
    let safe: String = spec
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // SAFETY: getuid has no preconditions.
    std::env::temp_dir()
        .join(format!("gpupool-sim-{}", unsafe { libc::getuid() }))
        .join(safe)
}

impl SimEnv {
    /// Prepares (or reuses) the machine of `spec` in `state` (default per spec).
    pub fn prepare(spec: &str, state: Option<&Path>) -> Result<SimEnv> {
        let parsed = SimSpec::parse(spec)?;
        let state = match state {
            Some(s) => s.to_path_buf(),
            None => {
                // Under $TMPDIR: a folder someone else made first could hold their libcuda.
                let state = default_state(spec);
                if let Some(base) = state.parent() {
                    gpupool_region::untrusted::ensure_private_dir(base)?;
                }
                state
            }
        };
        let lib = state.join("lib");
        std::fs::create_dir_all(&lib)
            .with_context(|| format!("simulated GPU state folder {}", lib.display()))?;
        link_driver(
            &lib,
            &sim_library()?,
            &[
                "libcuda.so.1",
                "libnvidia-ml.so.1",
                "libcuda.so",
                "libnvidia-ml.so",
            ],
        )?;
        Ok(SimEnv {
            spec: parsed,
            spec_text: spec.to_string(),
            state,
            lib,
        })
    }

    /// Env variables that make a program use this machine.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut ld = self.lib.display().to_string();
        if let Ok(old) = std::env::var("LD_LIBRARY_PATH") {
            if !old.is_empty() {
                ld = format!("{ld}:{old}");
            }
        }
        vec![
            ("LD_LIBRARY_PATH".into(), ld),
            ("GPUPOOL_SIM_SPEC".into(), self.spec_text.clone()),
            ("GPUPOOL_SIM_STATE".into(), self.state.display().to_string()),
        ]
    }
}
