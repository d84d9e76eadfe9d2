//! `gpupool node`: the node agent. A kubelet device plugin that advertises vGPU slots, answers
//! `Allocate` from the scheduler's assignment (tenant folder, read-only limits file, library and
//! `ld.so.preload` mounts), publishes the node's card inventory, watches card health, keeps its
//! allocations on disk across restarts and reaps those of pods that are gone.
//!
//! - [`config`]: settings (YAML file, flags, validation).
//! - [`error`]: the agent's error type.
//! - [`cards`]: cards, their source, vGPU slots, the inventory annotation.
//! - [`matching`]: which pod and container an `Allocate` serves.
//! - [`tenant`]: what a container is given.
//! - [`store`]: allocation records on disk.
//! - [`audit`]: NVML's memory per process against the limits (cgroups map processes to pods).
//! - [`checkpoint`] / [`region_owner`]: idle tenants checkpointed to make room on a full card.
//! - [`agent`]: the decisions, over the above.
//! - [`plugin`] / [`kubelet`]: the gRPC service, its socket and registration.
//! - [`kube_api`]: pods, node annotation, events.
//! - [`fake_kubelet`]: a stand-in kubelet for tests.
//! - [`proto`]: the device-plugin API v1beta1.

#![warn(missing_docs)]

pub mod agent;
pub mod audit;
pub mod cards;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod fake_kubelet;
pub mod kube_api;
pub mod kubelet;
pub mod matching;
pub mod plugin;
pub mod proto;
pub mod region_owner;
pub mod store;
pub mod tenant;

use std::sync::Arc;
use tokio::sync::watch;

/// Runs `round` after every `interval` (or earlier when `wake` fires) until `stop` turns true.
fn every<F, Fut>(
    interval: std::time::Duration,
    mut stop: watch::Receiver<bool>,
    mut wake: Option<watch::Receiver<Vec<cards::Card>>>,
    first_now: bool,
    mut round: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        if first_now {
            round().await;
        }
        loop {
            let woken = async {
                match &mut wake {
                    Some(w) => {
                        let _ = w.changed().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = woken => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            round().await;
        }
    })
}

/// Runs the agent until `stop` turns true: the plugin (registered with the kubelet, again after
/// every kubelet restart), the health check, the inventory / reaping round (also at once after a
/// health change), and the audit.
pub async fn run(agent: Arc<agent::Agent>, stop: watch::Receiver<bool>) -> error::Result<()> {
    let a = agent.clone();
    let health = every(
        agent.config.health_interval,
        stop.clone(),
        None,
        false,
        move || {
            let a = a.clone();
            async move {
                a.check_health().await;
            }
        },
    );
    let a = agent.clone();
    let inventory = every(
        agent.config.inventory_refresh,
        stop.clone(),
        Some(agent.watch_cards()),
        true,
        move || {
            let a = a.clone();
            async move {
                if let Err(e) = a.publish_inventory().await {
                    tracing::warn!("{e}");
                }
                if let Err(e) = a.reap().await {
                    tracing::warn!("reaping: {e}");
                }
            }
        },
    );
    let a = agent.clone();
    let audit = every(
        agent.config.audit_interval,
        stop.clone(),
        None,
        false,
        move || {
            let a = a.clone();
            async move {
                if let Err(e) = a.audit().await {
                    tracing::warn!("audit: {e}");
                }
            }
        },
    );
    let checkpoints = spawn_checkpoints(&agent, stop.clone());
    let result = kubelet::serve(agent, stop).await;
    health.abort();
    inventory.abort();
    audit.abort();
    if let Some(c) = checkpoints {
        c.abort();
    }
    result
}

/// How often the checkpoint controller looks at the tenants.
const CHECKPOINT_ROUND: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs the checkpoint controller (when checkpoints are on) on a thread of its own (its driver
/// calls block); what it does is reported by an async task.
fn spawn_checkpoints(
    agent: &Arc<agent::Agent>,
    stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut controller = agent.checkpoint_controller()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("checkpoints".into())
        .spawn(move || {
            while !*stop.borrow() {
                let now = gpupool_cuda::clock::monotonic_ns();
                for e in controller.round(now) {
                    if tx.send(e).is_err() {
                        return;
                    }
                }
                std::thread::sleep(CHECKPOINT_ROUND);
            }
        })
        .ok()?;
    let a = agent.clone();
    Some(tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            a.report_checkpoint(&e).await;
        }
    }))
}
