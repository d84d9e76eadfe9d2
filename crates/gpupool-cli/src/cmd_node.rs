//! `gpupool node`: the Kubernetes node agent (kubelet device plugin for vGPUs, limits files,
//! inventory annotation, card health, metrics). Settings and the NVML card source here; the
//! agent is `gpupool-node`.

use crate::cmd_exporter::AddToSnapshot;
use crate::cmd_info::read_machine;
use crate::daemon::{self, AssignmentKeyArgs, DaemonArgs};
use crate::sim_env::{SimArgs, SimEnv};
use anyhow::{anyhow, Context, Result};
use clap::Args;
use gpupool_config::parse_size;
use gpupool_node::audit::ProcessMemory;
use gpupool_node::cards::{Card, CardSource};
use gpupool_node::config::{AuditPolicy, NodeConfig};
use gpupool_observe::snapshot::{InfoSnapshot, OverLimitEntry, Owner};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `gpupool node` (flags override the config file).
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// YAML configuration file (keys as in `docs/kubernetes.md`; flags override it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's name (default: `$NODE_NAME`, which the DaemonSet sets from `spec.nodeName`).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// The kubelet's device-plugin folder.
    #[arg(long, value_name = "DIR")]
    pub kubelet_dir: Option<PathBuf>,
    /// Domain of the resource names (`DOMAIN/gpu` is registered with the kubelet).
    #[arg(long, value_name = "DOMAIN")]
    pub resource_domain: Option<String>,
    /// vGPU slots per card (how many containers may share one card).
    #[arg(long, value_name = "N")]
    pub split: Option<u32>,
    /// The agent's folder on the host (allocations, tenant folders, limits files).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// `libgpupool.so` on the host, mounted into every vGPU container.
    #[arg(long, value_name = "FILE")]
    pub library: Option<PathBuf>,
    /// How often the inventory annotation is rewritten (e.g. `30s`).
    #[arg(long, value_name = "DURATION")]
    pub inventory_refresh: Option<String>,
    /// How often the cards' health is checked (e.g. `5s`).
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// What to do with a container over its memory limit: `report` or `kill`.
    #[arg(long, value_name = "POLICY")]
    pub audit_policy: Option<String>,
    /// How often NVML's memory per process is compared with the limits (e.g. `10s`).
    #[arg(long, value_name = "DURATION")]
    pub audit_interval: Option<String>,
    /// What the audit allows each process beyond what it allocated, where contexts are not
    /// charged (real GPUs): by default each card's context size, measured at start (raise it
    /// for frameworks whose kernel images are large, e.g. `1GiB`).
    #[arg(long, value_name = "SIZE")]
    pub audit_context_allowance: Option<String>,
    /// Device memory charged to each context inside containers (default: the simulator's
    /// context size; 0 on real GPUs, where the audit allows contexts instead).
    #[arg(long, value_name = "SIZE", hide = true)]
    pub context_memory: Option<String>,
    /// Where processes' cgroups are read (`/proc`; tests point it elsewhere).
    #[arg(long, value_name = "DIR", hide = true)]
    pub proc_root: Option<PathBuf>,
    /// Also return CDI device names (`DOMAIN/gpu=<uuid>`).
    #[arg(long)]
    pub cdi: bool,
    /// The scheduler's `--memory-oversubscription` (1 to 16): each container gets its promised
    /// memory divided by it as device memory and the rest as spill to host memory.
    #[arg(long, value_name = "FACTOR")]
    pub memory_oversubscription: Option<f64>,
    /// Checkpoint processes idle this long to make room on a full card for a tenant that waits
    /// for it (driver 550 or later); default: never.
    #[arg(long, value_name = "DURATION")]
    pub checkpoint_idle_after: Option<String>,
    /// How long an allocation that finds its card full waits for that room (default 30s).
    #[arg(long, value_name = "DURATION")]
    pub room_wait: Option<String>,
    /// Address of `/metrics` (the exporter's metrics for this node's cards and containers).
    #[arg(long, default_value = "0.0.0.0:9400", value_name = "ADDR:PORT")]
    pub metrics_listen: SocketAddr,
    /// Which assignments are trusted.
    #[command(flatten)]
    pub assignment_key: AssignmentKeyArgs,
    /// Kubernetes API and logging.
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// Print the settings (after the file and flags) and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// The machine: real GPUs, or `--sim SPEC` for the simulated driver.
    #[command(flatten)]
    pub machine: SimArgs,
}

fn duration(flag: &str, v: &str) -> Result<std::time::Duration> {
    gpupool_config::parse_duration_ns(v)
        .map(std::time::Duration::from_nanos)
        .map_err(|e| anyhow!("{flag}: {e}"))
}

/// The settings: defaults, then the file, then the flags; validated.
pub fn settings(a: &NodeArgs, sim: Option<&SimEnv>) -> Result<NodeConfig> {
    let env_name = std::env::var("NODE_NAME").unwrap_or_default();
    let mut c = NodeConfig::defaults(&env_name);
    if let Some(f) = &a.config {
        c.apply_file(f).map_err(|e| anyhow!(e))?;
    }
    if let Some(v) = &a.node_name {
        c.node_name = v.clone();
    }
    if let Some(v) = &a.kubelet_dir {
        c.kubelet_dir = v.clone();
    }
    if let Some(v) = &a.resource_domain {
        c.resource_domain = v.clone();
    }
    if let Some(v) = a.split {
        c.split = v;
    }
    if let Some(v) = &a.state_dir {
        c.state_dir = v.clone();
    }
    if let Some(v) = &a.library {
        c.library = v.clone();
    }
    if let Some(v) = &a.inventory_refresh {
        c.inventory_refresh = duration("--inventory-refresh", v)?;
    }
    if let Some(v) = &a.health_interval {
        c.health_interval = duration("--health-interval", v)?;
    }
    if let Some(v) = &a.audit_interval {
        c.audit_interval = duration("--audit-interval", v)?;
    }
    if let Some(v) = &a.proc_root {
        c.proc_root = v.clone();
    }
    if let Some(v) = &a.audit_policy {
        c.audit_policy = AuditPolicy::parse(v).map_err(|e| anyhow!("--audit-policy: {e}"))?;
    }
    if a.cdi {
        c.cdi = true;
    }
    if let Some(v) = a.memory_oversubscription {
        c.memory_oversubscription = v;
    }
    if let Some(v) = &a.checkpoint_idle_after {
        c.checkpoint_idle_after = Some(duration("--checkpoint-idle-after", v)?);
    }
    if let Some(v) = &a.room_wait {
        c.room_wait = duration("--room-wait", v)?;
    }
    if let Some(sim) = sim {
        c.context_memory = sim.spec.devices.first().map_or(0, |d| d.context_memory);
    }
    if let Some(v) = &a.context_memory {
        c.context_memory = parse_size(v).map_err(|e| anyhow!("--context-memory {v:?}: {e}"))?;
    }
    if let Some(v) = &a.audit_context_allowance {
        c.audit_context_allowance =
            Some(parse_size(v).map_err(|e| anyhow!("--audit-context-allowance {v:?}: {e}"))?);
    }
    c.assignment_key = a.assignment_key.key()?;
    c.validate().map_err(|e| anyhow!(e))?;
    Ok(c)
}

/// Cards through NVML (the real library, or the simulated one). Cards in MIG mode are left
/// out (said once per card in the log).
struct NvmlCards {
    sim: Arc<Option<SimEnv>>,
    /// Cards in MIG mode already reported.
    mig_reported: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Cards that had a critical XID (filled by the event thread once started).
    lost: Arc<std::sync::OnceLock<crate::nvml_events::LostCards>>,
}

impl CardSource for NvmlCards {
    fn cards(&self) -> Result<Vec<Card>, String> {
        let sim = self.sim.as_ref().as_ref();
        let devices = read_machine(sim).map_err(|e| format!("{e:#}"))?;
        let mut reported = self.mig_reported.lock().unwrap_or_else(|p| p.into_inner());
        Ok(devices
            .into_iter()
            .filter(|d| {
                if d.mig && reported.insert(d.uuid.clone()) {
                    tracing::warn!(
                        index = d.index,
                        uuid = %d.uuid,
                        "card {} ({}) has MIG mode enabled: {}",
                        d.index,
                        d.name,
                        gpupool_observe::nvml::MIG_NOT_SHARED.replace("INDEX", &d.index.to_string())
                    );
                }
                !d.mig
            })
            .map(|d| {
                let sms = sim
                    .and_then(|s| s.spec.devices.get(d.index as usize))
                    .map_or(0, |sd| sd.sms);
                if let Some(e) = &d.error {
                    tracing::warn!(index = d.index, "card unreadable: {e}");
                }
                let xid = self.lost.get().is_some_and(|l| {
                    l.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains(&d.uuid)
                });
                Card {
                    index: d.index,
                    healthy: d.error.is_none() && !xid,
                    uuid: d.uuid,
                    model: d.name,
                    memory_mib: d.total_bytes >> 20,
                    sms,
                    numa: -1,
                }
            })
            .collect())
    }

    fn processes(&self) -> Result<Vec<ProcessMemory>, String> {
        let devices = read_machine(self.sim.as_ref().as_ref()).map_err(|e| format!("{e:#}"))?;
        Ok(devices
            .into_iter()
            .flat_map(|d| {
                let uuid = d.uuid;
                d.processes.into_iter().map(move |p| ProcessMemory {
                    uuid: uuid.clone(),
                    pid: p.pid,
                    used_bytes: p.used_bytes,
                })
            })
            .collect())
    }

    fn context_sizes(&self) -> Result<std::collections::BTreeMap<String, u64>, String> {
        // In a process of its own (a context costs device memory until it exits; a driver
        // fault there does not touch the agent), without the library.
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut probe = std::process::Command::new(exe);
        probe
            .args(["probe", "--context-sizes"])
            .env_remove("LD_PRELOAD");
        if let Some(sim) = self.sim.as_ref().as_ref() {
            probe.envs(sim.env());
        }
        let out = probe.output().map_err(|e| format!("gpupool probe: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "gpupool probe --context-sizes: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("gpupool probe --context-sizes: {e}"))
    }
}

/// The agent's audit findings as snapshot entries (for `/metrics`).
fn findings_of(agent: Arc<gpupool_node::agent::Agent>) -> AddToSnapshot {
    Arc::new(move |snap: &mut InfoSnapshot| {
        snap.over_limit = agent
            .findings()
            .into_iter()
            .map(|(rounds, f)| OverLimitEntry {
                owner: Owner {
                    namespace: f.namespace,
                    pod: f.pod,
                    container: f.container,
                },
                uuid: f.uuid,
                rounds,
                used_bytes: f.used_bytes,
                limit_bytes: f.limit_bytes,
            })
            .collect();
    })
}

/// Runs the agent until SIGTERM / Ctrl-C.
pub fn run(a: NodeArgs) -> Result<()> {
    let sim = a.machine.prepare()?;
    let config = settings(&a, sim.as_ref())?;
    if a.dry_run {
        println!("{config:#?}");
        return Ok(());
    }
    a.daemon.init_logging()?;
    let sim = Arc::new(sim);
    let tenants = config.tenants_dir();
    let node_name = config.node_name.clone();
    daemon::runtime()?.block_on(async move {
        let client = a.daemon.kube_client().await?;
        let lost = Arc::new(std::sync::OnceLock::new());
        let source = NvmlCards {
            sim: sim.clone(),
            lost: lost.clone(),
            mig_reported: Default::default(),
        };
        let checkpoints = config.checkpoint_idle_after.is_some();
        let agent = gpupool_node::agent::Agent::new(config, client, Arc::new(source))
            .map_err(|e| anyhow!(e))?;
        if checkpoints {
            let library = match (*sim).as_ref() {
                Some(_) => Some(crate::artefacts::sim_library()?),
                None => None,
            };
            let driver = crate::checkpoint_driver::DriverCheckpoints::load(library.as_deref())
                .context("checkpointIdleAfter is set, but the driver cannot checkpoint")?;
            agent.set_checkpoint_driver(Arc::new(driver));
        }
        // After the first read (which points this process at the simulator, if any).
        let library = match (*sim).as_ref() {
            Some(_) => Some(crate::artefacts::sim_library()?),
            None => None,
        };
        match crate::nvml_events::watch(library) {
            Ok(l) => {
                let _ = lost.set(l);
            }
            Err(e) => tracing::warn!("XID events are not watched: {e:#}"),
        }
        let listener = tokio::net::TcpListener::bind(a.metrics_listen)
            .await
            .with_context(|| format!("--metrics-listen {}", a.metrics_listen))?;
        eprintln!(
            "gpupool node: metrics on http://{}/metrics",
            listener.local_addr()?
        );
        let router = crate::cmd_exporter::router(
            sim.clone(),
            tenants,
            Some(findings_of(agent.clone())),
            &node_name,
        );
        tokio::spawn(async move { axum::serve(listener, router).await });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            gpupool_extender::shutdown().await;
            let _ = stop.send(true);
        });
        gpupool_node::run(agent, stopped)
            .await
            .map_err(|e| anyhow!(e))
    })
}
