//! `gpupool run`: runs a command as a tenant — `libgpupool.so` preloaded, limits in env
//! variables, a shared accounting region — optionally on a simulated GPU.

use crate::artefacts::preload_library;
use crate::sim_env::SimEnv;
use anyhow::{bail, Context, Result};
use clap::Args;
use gpupool_config::{parse_size, Setting, SettingError, TenantEnv};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

/// Arguments of `gpupool run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run on a simulated GPU of this spec (e.g. `2x80GiB`, `1xH100`, `2x16GiB:ctx=300MiB`).
    #[arg(long, value_name = "SPEC")]
    pub sim: Option<String>,
    /// State folder of the simulated machine (default: one per spec under $TMPDIR).
    #[arg(long, value_name = "DIR", requires = "sim")]
    pub state: Option<PathBuf>,
    /// Device memory limit: one size for every device or a comma list per device
    /// (`512MiB`, `4GiB`, `4G`, bytes).
    #[arg(long, value_name = "SIZE[,SIZE…]")]
    pub memory: Option<String>,
    /// Host memory the command may use past --memory (one size, or a comma list per device):
    /// allocations that no longer fit the limit are served from pinned host memory the GPU
    /// reads over the bus, slower, instead of failing; other tenants' memory is never taken.
    #[arg(long, value_name = "SIZE[,SIZE…]", requires = "memory")]
    pub spill: Option<String>,
    /// Compute limit: percent of each device's time, one value for every device or a comma
    /// list per device (`50`, `25%,75%`). A tenant alone on a card is limited too.
    #[arg(long, value_name = "PCT[,PCT…]")]
    pub compute: Option<String>,
    /// Guaranteed compute share (percent, at most --compute): idle time of the card is lent up to
    /// --compute and taken back when other tenants need their share.
    #[arg(long, value_name = "PCT[,PCT…]")]
    pub compute_request: Option<String>,
    /// `high` (default): gets its share whenever busy; `low`: uses only what high-priority
    /// tenants leave idle and backs off within 100 ms when they become busy.
    #[arg(long, value_name = "high|low")]
    pub priority: Option<String>,
    /// Devices the command may use, as CUDA_VISIBLE_DEVICES takes them (`0,2` or GPU UUIDs).
    #[arg(long, value_name = "LIST")]
    pub devices: Option<String>,
    /// Device memory charged for each context (default: the simulated card's, else 0).
    #[arg(long, value_name = "SIZE")]
    pub context_memory: Option<String>,
    /// What spilled memory is: `pinned` (default) host memory, or `managed` memory moved back
    /// onto the device, oldest first, when the tenant's device memory frees up.
    #[arg(long, value_name = "MODE", requires = "spill")]
    pub spill_mode: Option<String>,
    /// When an allocation within the limit finds the card full, wait this long for room (idle
    /// tenants checkpointed by `gpupool checkpointer`) before failing.
    #[arg(long, value_name = "DURATION")]
    pub wait_for_room: Option<String>,
    /// Tenant name: runs with the same name share one limit (default: this run alone).
    #[arg(long, value_name = "NAME")]
    pub tenant: Option<String>,
    /// Run on the GPUs of a `gpupool serve` server (`tcp://HOST:PORT`, `tls://HOST:PORT` or
    /// `unix:PATH`); the server applies this client's limits.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["sim", "memory", "spill", "compute", "compute_request", "priority", "devices", "context_memory", "tenant", "wait_for_room", "spill_mode"])]
    pub remote: Option<String>,
    /// File holding the token the remote server knows this client by (default:
    /// GPUPOOL_REMOTE_TOKEN / GPUPOOL_REMOTE_TOKEN_FILE of the environment).
    #[arg(long, value_name = "FILE", requires = "remote")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) a `tls://` server's certificate must come from (default:
    /// GPUPOOL_REMOTE_TLS_CA of the environment).
    #[arg(long, value_name = "FILE", requires = "remote")]
    pub tls_ca: Option<PathBuf>,
    /// Certificate (PEM) to present to a `tls://` server that admits only clients with one
    /// (default: GPUPOOL_REMOTE_TLS_CERT of the environment).
    #[arg(long, value_name = "FILE", requires_all = ["remote", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert (default: GPUPOOL_REMOTE_TLS_KEY).
    #[arg(long, value_name = "FILE", requires_all = ["remote", "tls_cert"])]
    pub tls_key: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

/// Checks a remote client's limits (clients-file `memory=`, `spill=`, `compute=`) with the
/// library's own parser.
pub fn validate_limits(
    memory: Option<&str>,
    spill: Option<&str>,
    compute: Option<&str>,
) -> Result<()> {
    let mut env = TenantEnv::default();
    env.set_some(Setting::MemoryLimit, memory)
        .set_some(Setting::MemorySpill, spill)
        .set_some(Setting::ComputeLimit, compute);
    env.check().map_err(|e| {
        let key = match e.setting {
            Setting::MemorySpill => "spill",
            Setting::ComputeLimit | Setting::ComputeRequest => "compute",
            _ => "memory",
        };
        anyhow::anyhow!("{key}={:?}: {}", e.value, e.why)
    })?;
    Ok(())
}

/// Runs the command on a remote GPU server: the client driver (also answering NVML) first on
/// `LD_LIBRARY_PATH`.
fn run_remote(a: &RunArgs, addr: &str) -> Result<i32> {
    let parsed = gpupool_remote::listener::Address::parse(addr)
        .map_err(|e| anyhow::anyhow!("--remote {e}"))?;
    // SAFETY: getuid has no preconditions.
    let base = std::env::temp_dir().join(format!("gpupool-remote-{}", unsafe { libc::getuid() }));
    gpupool_region::untrusted::ensure_private_dir(&base)?;
    // One folder per client build, so runs of different builds never swap each other's link.
    let client = crate::artefacts::remote_client_library()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&client, &mut h);
    let lib = base.join(format!("lib-{:016x}", std::hash::Hasher::finish(&h)));
    std::fs::create_dir_all(&lib).with_context(|| format!("{}", lib.display()))?;
    crate::sim_env::link_driver(
        &lib,
        &client,
        &[
            "libcuda.so.1",
            "libcuda.so",
            "libnvidia-ml.so.1",
            "libnvidia-ml.so",
        ],
    )?;
    let mut ld = lib.display().to_string();
    if let Ok(old) = std::env::var("LD_LIBRARY_PATH") {
        if !old.is_empty() {
            ld = format!("{ld}:{old}");
        }
    }
    let mut cmd = std::process::Command::new(&a.command[0]);
    cmd.args(&a.command[1..])
        .env("LD_LIBRARY_PATH", ld)
        .env("GPUPOOL_REMOTE", parsed.to_string());
    if let Some(f) = &a.token_file {
        if !f.is_file() {
            bail!("--token-file {}: no such file", f.display());
        }
        cmd.env("GPUPOOL_REMOTE_TOKEN_FILE", f)
            .env_remove("GPUPOOL_REMOTE_TOKEN");
    }
    let tls = matches!(parsed, gpupool_remote::listener::Address::Tls(_));
    for (flag, given) in [
        ("--tls-ca", a.tls_ca.is_some()),
        ("--tls-cert", a.tls_cert.is_some()),
    ] {
        if given && !tls {
            bail!("{flag} is for a tls:// server; --remote {addr} is not one");
        }
    }
    let identity = a
        .tls_cert
        .as_deref()
        .zip(a.tls_key.as_deref())
        .map(|(c, k)| ((c, "--tls-cert"), (k, "--tls-key")));
    // The files are checked here, before the program starts, whichever named them.
    let ca = match &a.tls_ca {
        Some(ca) => Some((ca.clone(), "--tls-ca")),
        None => std::env::var_os("GPUPOOL_REMOTE_TLS_CA")
            .filter(|v| tls && !v.is_empty())
            .map(|v| (PathBuf::from(v), "GPUPOOL_REMOTE_TLS_CA")),
    };
    if let Some((ca, what)) = &ca {
        gpupool_remote::tls::client_config((ca, what), identity).map_err(anyhow::Error::msg)?;
        cmd.env("GPUPOOL_REMOTE_TLS_CA", ca);
    }
    if let Some(((cert, _), (key, _))) = identity {
        cmd.env("GPUPOOL_REMOTE_TLS_CERT", cert)
            .env("GPUPOOL_REMOTE_TLS_KEY", key);
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {:?}", a.command[0]))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// The `gpupool run` flag that sets `setting`.
fn flag_of(setting: Setting) -> &'static str {
    match setting {
        Setting::MemoryLimit => "--memory",
        Setting::MemorySpill => "--spill",
        Setting::SpillMode => "--spill-mode",
        Setting::ComputeLimit => "--compute",
        Setting::ComputeRequest => "--compute-request",
        Setting::Priority => "--priority",
        Setting::RoomWait => "--wait-for-room",
        Setting::ContextMemory => "--context-memory",
        Setting::Region => "region",
        Setting::CardDir => "card folder",
    }
}

/// A refused setting as an error naming its flag.
fn flag_error(e: SettingError) -> anyhow::Error {
    anyhow::anyhow!("{} {:?}: {}", flag_of(e.setting), e.value, e.why)
}

/// The limit flags as the tenant's settings, checked together with the library's parser (a
/// request above its limit, a spill without a limit: errors naming the flag).
fn tenant_settings(a: &RunArgs) -> Result<TenantEnv> {
    let mut env = TenantEnv::default();
    env.set_some(Setting::MemoryLimit, a.memory.as_deref())
        .set_some(Setting::MemorySpill, a.spill.as_deref())
        .set_some(Setting::SpillMode, a.spill_mode.as_deref())
        .set_some(Setting::ComputeLimit, a.compute.as_deref())
        .set_some(Setting::ComputeRequest, a.compute_request.as_deref())
        .set_some(Setting::Priority, a.priority.as_deref())
        .set_some(Setting::RoomWait, a.wait_for_room.as_deref());
    env.check().map_err(flag_error)?;
    Ok(env)
}

fn validate_devices(list: &str) -> Result<()> {
    for part in list.split(',') {
        let p = part.trim();
        let ok = p.parse::<u32>().is_ok() || (p.starts_with("GPU-") && p.len() > 4);
        if !ok {
            bail!("--devices {list:?}: {p:?} is neither a device index nor a GPU UUID (GPU-…)");
        }
    }
    Ok(())
}

fn tenant_name(t: &str) -> Result<&str> {
    if t.is_empty()
        || t.len() > 64
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || t.starts_with('.')
    {
        bail!("--tenant {t:?}: use 1-64 letters, digits, '-', '_' or '.'");
    }
    Ok(t)
}

/// Folder holding tenant regions: inside the simulated machine's state, else under $TMPDIR.
pub fn tenants_dir(sim_state: Option<&Path>) -> PathBuf {
    match sim_state {
        Some(s) => s.join("tenants"),
        // SAFETY: getuid has no preconditions.
        None => std::env::temp_dir()
            .join(format!("gpupool-{}", unsafe { libc::getuid() }))
            .join("tenants"),
    }
}

/// The UUIDs of the devices the command `cmd` will see, by CUDA ordinal: `gpupool probe
/// --list-uuids` with the command's environment, without the library.
fn device_uuids(cmd: &std::process::Command) -> Result<Vec<String>> {
    let mut probe = std::process::Command::new(std::env::current_exe()?);
    probe.args(["probe", "--list-uuids"]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => probe.env(k, v),
            None => probe.env_remove(k),
        };
    }
    probe.env_remove("LD_PRELOAD");
    let out = probe.output().context("listing the devices")?;
    if !out.status.success() {
        bail!(
            "per-device limits need the devices' UUIDs, and listing them failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// A path as the text an env variable carries (the library reads UTF-8 paths).
fn path_text(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{}: not a UTF-8 path", p.display()))
}

/// Runs the command; returns its exit status (128 + signal if killed).
pub fn run(a: RunArgs) -> Result<i32> {
    if let Some(addr) = &a.remote {
        return run_remote(&a, addr);
    }
    let mut settings = tenant_settings(&a)?;
    if let Some(d) = &a.devices {
        validate_devices(d)?;
    }
    let preload = preload_library()?;
    let sim = match &a.sim {
        Some(spec) => Some(SimEnv::prepare(spec, a.state.as_deref())?),
        None => None,
    };
    let context_memory = match (&a.context_memory, &sim) {
        (Some(s), _) => parse_size(s).with_context(|| format!("--context-memory {s:?}"))?,
        (None, Some(sim)) => sim.spec.devices[0].context_memory,
        (None, None) => 0,
    };
    let (name, ephemeral) = match &a.tenant {
        Some(t) => (tenant_name(t)?.to_string(), false),
        None => (format!("run-{}", std::process::id()), true),
    };
    let tenants = tenants_dir(sim.as_ref().map(|s| s.state.as_path()));
    if sim.is_none() {
        // $TMPDIR/gpupool-<uid>: private, or someone else's regions and card files.
        if let Some(base) = tenants.parent() {
            gpupool_region::untrusted::ensure_private_dir(base)?;
        }
    }
    let tenant_dir = tenants.join(&name);
    std::fs::create_dir_all(&tenant_dir)
        .with_context(|| format!("tenant folder {}", tenant_dir.display()))?;
    let region = tenant_dir.join("region");

    let mut cmd = std::process::Command::new(&a.command[0]);
    cmd.args(&a.command[1..]);
    if let Some(sim) = &sim {
        cmd.envs(sim.env());
    }
    let mut preload_var = preload.display().to_string();
    if let Ok(old) = std::env::var("LD_PRELOAD") {
        if !old.is_empty() && !old.contains("libgpupool.so") {
            preload_var = format!("{preload_var}:{old}");
        }
    }
    cmd.env("LD_PRELOAD", preload_var);
    settings
        .set(Setting::Region, path_text(&region)?)
        .set(Setting::ContextMemory, context_memory.to_string());
    if std::env::var_os(Setting::CardDir.var()).is_none() {
        // Tenants of this machine coordinate their compute shares through one folder.
        settings.set(
            Setting::CardDir,
            path_text(&tenants.with_file_name("cards"))?,
        );
    }
    if let Some(d) = &a.devices {
        cmd.env("CUDA_VISIBLE_DEVICES", d);
    }
    // Per-device values are pinned to the cards the command sees now: a command that reorders
    // CUDA_VISIBLE_DEVICES later cannot swap its cards' limits.
    if settings.has_device_lists() {
        let uuids = device_uuids(&cmd)?;
        settings.pin_to_cards(&uuids).map_err(flag_error)?;
    }
    cmd.envs(settings.to_env());
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {:?}", a.command[0]));
    if ephemeral {
        let _ = std::fs::remove_dir_all(&tenant_dir);
    }
    let status = status?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_input() {
        assert!(validate_limits(Some("4GiB,512MiB"), None, Some("25%,75")).is_ok());
        let e = validate_limits(Some("4GiB,lots"), None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory=") && e.contains("lots"), "{e}");
        assert!(validate_limits(Some("0"), None, None).is_err());
        let e = validate_limits(None, None, Some("150"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("compute=") && e.contains("150"), "{e}");
        let e = validate_limits(None, Some("1GiB"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("spill=") && e.contains("memory limit"), "{e}");
        let mut a = RunArgs {
            sim: None,
            state: None,
            memory: None,
            spill: None,
            compute: Some("40".into()),
            compute_request: Some("60".into()),
            priority: None,
            devices: None,
            context_memory: None,
            tenant: None,
            wait_for_room: None,
            spill_mode: None,
            remote: None,
            token_file: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            command: vec!["true".into()],
        };
        let e = tenant_settings(&a).unwrap_err().to_string();
        assert!(e.contains("above the compute limit"), "{e}");
        a.compute_request = Some("20".into());
        a.priority = Some("urgent".into());
        let e = tenant_settings(&a).unwrap_err().to_string();
        assert!(e.contains("--priority") && e.contains("urgent"), "{e}");
        a.priority = Some("low".into());
        assert_eq!(tenant_settings(&a).unwrap().to_env().len(), 3);
        a.wait_for_room = Some("forever".into());
        let e = tenant_settings(&a).unwrap_err().to_string();
        assert!(
            e.contains("--wait-for-room") && e.contains("forever"),
            "{e}"
        );
        a.wait_for_room = Some("30s".into());
        assert_eq!(tenant_settings(&a).unwrap().to_env().len(), 4);
        a.memory = Some("4GiB,lots".into());
        let e = tenant_settings(&a).unwrap_err().to_string();
        assert!(e.starts_with("--memory \"4GiB,lots\""), "{e}");
        assert!(validate_devices("0,2,GPU-1234").is_ok());
        assert!(validate_devices("0,x")
            .unwrap_err()
            .to_string()
            .contains("\"x\""));
        assert!(tenant_name("team-a.1").is_ok());
        assert!(tenant_name("../etc").is_err());
        assert!(tenant_name("").is_err());
    }
}
