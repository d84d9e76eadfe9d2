//! `gpupool node`: the node agent. A kubelet device plugin that advertises vGPU slots, answers
//! `Allocate` from the scheduler's assignment (tenant folder, read-only limits file, library and
//! `ld.so.preload` mounts), publishes the node's card inventory, watches card health, keeps its
//! allocations on disk across restarts and reaps those of pods that are gone.
//!
//! - [`config`]: settings (YAML file, flags, validation).
//! - [`cards`]: cards, their source, vGPU slots, the inventory annotation.
//! - [`matching`]: which pod and container an `Allocate` serves.
//! - [`tenant`]: what a container is given.
//! - [`store`]: allocation records on disk.
//! - [`audit`]: NVML's memory per process against the limits (cgroups map processes to pods).
//! - [`agent`]: the decisions, over the above.
//! - [`plugin`] / [`kubelet`]: the gRPC service, its socket and registration.
//! - [`kube_api`]: pods, node annotation, events.
//! - [`fake_kubelet`]: a stand-in kubelet for tests.
//! - [`proto`]: the device-plugin API v1beta1.

#![warn(missing_docs)]

pub mod agent;
pub mod audit;
pub mod cards;
pub mod config;
pub mod fake_kubelet;
pub mod kube_api;
pub mod kubelet;
pub mod matching;
pub mod plugin;
pub mod proto;
pub mod store;
pub mod tenant;

use std::sync::Arc;
use tokio::sync::watch;

/// Runs the agent until `stop` turns true: the plugin (registered with the kubelet, again after
/// every kubelet restart), the health check, and the inventory / reaping loop.
pub async fn run(agent: Arc<agent::Agent>, stop: watch::Receiver<bool>) -> Result<(), String> {
    let health = {
        let agent = agent.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(agent.config.health_interval) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                agent.check_health().await;
            }
        })
    };
    let inventory = {
        let agent = agent.clone();
        let mut stop = stop.clone();
        let mut changes = agent.watch_cards();
        tokio::spawn(async move {
            loop {
                if let Err(e) = agent.publish_inventory().await {
                    tracing::warn!("{e}");
                }
                match agent.reap().await {
                    Ok(_) => {}
                    Err(e) => tracing::warn!("reaping: {e}"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(agent.config.inventory_refresh) => {}
                    _ = changes.changed() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        })
    };
    let audit = {
        let agent = agent.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(agent.config.audit_interval) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                if let Err(e) = agent.audit().await {
                    tracing::warn!("audit: {e}");
                }
            }
        })
    };
    let result = kubelet::serve(agent, stop).await;
    health.abort();
    inventory.abort();
    audit.abort();
    result
}
