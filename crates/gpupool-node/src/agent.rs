//! The agent's shared state and its decisions: which slots to prefer, what an `Allocate`
//! gives, what to reap. The gRPC service (`plugin`) and the loops (`lib.rs`) call into it.

use crate::audit::{self, OverLimit};
use crate::cards::{self, Card, CardSource};
use crate::checkpoint::{self, CheckpointDriver};
use crate::config::AuditPolicy;
use crate::config::NodeConfig;
use crate::error::{NodeError, Result};
use crate::kube_api;
use crate::matching;
use crate::proto;
use crate::store::Store;
use crate::tenant;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use tokio::sync::{watch, Mutex};

/// A new reading of the cards over the last one: a card the source could not identify (no UUID:
/// NVML failed on it) keeps what was known of it, marked unhealthy; one never known is left out.
pub fn merge(last: &[Card], read: Vec<Card>) -> Vec<Card> {
    read.into_iter()
        .filter_map(|c| {
            if !c.uuid.is_empty() {
                return Some(c);
            }
            let mut known = last.iter().find(|l| l.index == c.index)?.clone();
            known.healthy = false;
            Some(known)
        })
        .collect()
}

/// The node agent.
pub struct Agent {
    /// Its settings.
    pub config: NodeConfig,
    client: kube::Client,
    source: Arc<dyn CardSource>,
    cards: watch::Sender<Vec<Card>>,
    /// The allocation records; the lock also serialises `Allocate` calls.
    store: Mutex<Store>,
    /// Audit findings so far: how many rounds each container was found over its limit per card,
    /// and the last finding.
    findings: std::sync::Mutex<BTreeMap<FindingKey, (u64, OverLimit)>>,
    /// What each process may hold beyond its allocations (its context).
    allowance: audit::ContextAllowance,
    /// The driver's checkpointing, when the node checkpoints idle tenants.
    checkpoint_driver: std::sync::OnceLock<Arc<dyn CheckpointDriver>>,
}

/// The context allowance per process when it can be neither measured nor was it configured
/// (about what a context takes on recent data-centre cards).
pub const DEFAULT_CONTEXT_ALLOWANCE: u64 = 512 << 20;

/// The audit's allowance: 0 where the library charges contexts; else as configured, or each
/// card's context as measured now.
fn context_allowance(config: &NodeConfig, source: &dyn CardSource) -> audit::ContextAllowance {
    if config.context_memory > 0 {
        return audit::ContextAllowance::default();
    }
    if let Some(bytes) = config.audit_context_allowance {
        return audit::ContextAllowance {
            per_card: BTreeMap::new(),
            otherwise: bytes,
        };
    }
    let per_card = source.context_sizes().unwrap_or_else(|e| {
        tracing::warn!(
            "context size not measured ({e}); the audit allows {} MiB per process",
            DEFAULT_CONTEXT_ALLOWANCE >> 20
        );
        BTreeMap::new()
    });
    tracing::info!(
        ?per_card,
        "context size per card (the audit allows it per process)"
    );
    audit::ContextAllowance {
        per_card,
        otherwise: DEFAULT_CONTEXT_ALLOWANCE,
    }
}

/// (namespace, pod, container, card UUID).
type FindingKey = (String, String, String, String);

impl Agent {
    /// Reads the allocation records and the cards (failing when there is no card source).
    pub fn new(
        config: NodeConfig,
        client: kube::Client,
        source: Arc<dyn CardSource>,
    ) -> Result<Arc<Agent>> {
        let store = Store::open(&config.allocations_dir())?;
        let found = merge(&[], source.cards().map_err(NodeError::Cards)?);
        tracing::info!(
            cards = found.len(),
            allocations = store.all().count(),
            "node agent starting"
        );
        let (cards, _) = watch::channel(found);
        let allowance = context_allowance(&config, source.as_ref());
        Ok(Arc::new(Agent {
            allowance,
            config,
            client,
            source,
            cards,
            store: Mutex::new(store),
            findings: Default::default(),
            checkpoint_driver: std::sync::OnceLock::new(),
        }))
    }

    /// Gives the agent the driver's checkpointing (needed when `checkpoint_idle_after` is set).
    pub fn set_checkpoint_driver(&self, driver: Arc<dyn CheckpointDriver>) {
        let _ = self.checkpoint_driver.set(driver);
    }

    /// The checkpoint controller over this node's tenants, when checkpoints are on.
    pub fn checkpoint_controller(&self) -> Option<checkpoint::Controller> {
        let idle_after = self.config.checkpoint_idle_after?;
        let driver = self.checkpoint_driver.get()?.clone();
        let mut settings = checkpoint::Settings::new(idle_after);
        settings.proc_root = self.config.proc_root.clone();
        Some(checkpoint::Controller::new(
            settings,
            driver,
            &self.config.tenants_dir(),
        ))
    }

    /// Logs what the checkpoint controller did and raises it as an event on the pod of the
    /// tenant concerned (`GpupoolCheckpointed`, `GpupoolRestored`, `GpupoolCheckpointFailed`).
    pub async fn report_checkpoint(&self, e: &checkpoint::Event) {
        use checkpoint::Event;
        let message = checkpoint::describe(e);
        let (tenant, type_, reason) = match e {
            Event::Checkpointed { tenant, .. } => (tenant, "Normal", "GpupoolCheckpointed"),
            Event::Restored { tenant, .. } => (tenant, "Normal", "GpupoolRestored"),
            Event::Failed { tenant, .. } => (tenant, "Warning", "GpupoolCheckpointFailed"),
        };
        match type_ {
            "Warning" => tracing::warn!("{message}"),
            _ => tracing::info!("{message}"),
        }
        let owner = self
            .store
            .lock()
            .await
            .all()
            .find(|a| a.tenant_dir.file_name().and_then(|n| n.to_str()) == Some(tenant))
            .cloned();
        if let Some(a) = owner {
            if let Err(e) = kube_api::pod_event(
                &self.client,
                &a.namespace,
                &a.pod,
                &a.pod_uid,
                type_,
                reason,
                &message,
            )
            .await
            {
                tracing::warn!("{e}");
            }
        }
    }

    /// The cards as last read.
    pub fn cards(&self) -> Vec<Card> {
        self.cards.borrow().clone()
    }

    /// A receiver that sees every change of the cards (health included).
    pub fn watch_cards(&self) -> watch::Receiver<Vec<Card>> {
        self.cards.subscribe()
    }

    /// The devices `ListAndWatch` reports now.
    pub fn devices(&self) -> Vec<proto::Device> {
        cards::slots(&self.cards.borrow(), self.config.split)
    }

    /// Reads the cards again; a source that fails marks every known card unhealthy. Returns
    /// whether anything changed.
    pub async fn check_health(&self) -> bool {
        let source = self.source.clone();
        let read = tokio::task::spawn_blocking(move || source.cards())
            .await
            .unwrap_or_else(|e| Err(format!("card check panicked: {e}")));
        let next = match read {
            Ok(c) => merge(&self.cards(), c),
            Err(e) => {
                tracing::warn!("reading the cards failed, all marked unhealthy: {e}");
                let mut c = self.cards();
                c.iter_mut().for_each(|c| c.healthy = false);
                c
            }
        };
        self.cards.send_if_modified(|cur| {
            if *cur == next {
                return false;
            }
            for (old, new) in cur.iter().zip(&next) {
                if old.healthy != new.healthy {
                    tracing::warn!(uuid = %new.uuid, healthy = new.healthy, "card health changed");
                }
            }
            *cur = next;
            true
        })
    }

    /// Writes the inventory annotation of the node from the current cards.
    pub async fn publish_inventory(&self) -> Result<()> {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let spill = self.config.spill_memory_mib();
        let inv = cards::inventory(&self.cards(), self.config.split, spill, now);
        kube_api::publish_inventory(&self.client, &self.config.node_name, &inv).await
    }

    /// Reports pods whose annotations could not be used (log, and an event on the pod).
    async fn report(&self, pods: &[k8s_openapi::api::core::v1::Pod], problems: Vec<String>) {
        self.report_as(pods, problems, "GpupoolBadAnnotation").await
    }

    /// Logs each line of `problems` and raises it as a `Warning` event with `reason` on the
    /// pod it names.
    async fn report_as(
        &self,
        pods: &[k8s_openapi::api::core::v1::Pod],
        problems: Vec<String>,
        reason: &str,
    ) {
        for p in problems {
            tracing::warn!("{p}");
            let Some(pod) = pods
                .iter()
                .find(|pod| p.contains(&gpupool_sched::pod::pod_key(pod)))
            else {
                continue;
            };
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let name = pod.metadata.name.as_deref().unwrap_or("");
            let uid = pod.metadata.uid.as_deref().unwrap_or("");
            if let Err(e) = kube_api::warn_pod(&self.client, ns, name, uid, reason, &p).await {
                tracing::warn!("{e}");
            }
        }
    }

    /// Serves one container of an `Allocate` call: finds the pod and container it is for,
    /// writes its tenant folder and limits file, records it, marks the pod.
    pub async fn allocate(
        &self,
        device_ids: &[String],
    ) -> Result<proto::ContainerAllocateResponse> {
        for id in device_ids {
            if cards::card_of_slot(id).is_none() {
                return Err(NodeError::Allocate(format!(
                    "device ID {id:?} is not a gpupool vGPU slot"
                )));
            }
        }
        let mut store = self.store.lock().await;
        let pods = kube_api::node_pods(&self.client, &self.config.node_name).await?;
        let mut problems = Vec::new();
        let found = matching::find(
            &pods,
            &self.config.node_name,
            device_ids.len(),
            &store,
            self.config.assignment_key.as_ref(),
            &mut problems,
        );
        self.report(&pods, problems).await;
        let m = match found {
            Ok(m) => m,
            Err(e) => {
                let resource = self.config.resource_name();
                let elsewhere =
                    matching::placed_elsewhere(&pods, &self.config.node_name, &resource);
                let e = match elsewhere.is_empty() {
                    true => e,
                    false => NodeError::Allocate(format!("{e}; {}", elsewhere.join("; "))),
                };
                self.report_as(&pods, elsewhere, "GpupoolNotScheduled")
                    .await;
                return Err(e);
            }
        };
        let known: HashSet<String> = self.cards().into_iter().map(|c| c.uuid).collect();
        if let Some(d) = m
            .container
            .devices
            .iter()
            .find(|d| !known.contains(&d.uuid))
        {
            return Err(NodeError::Allocate(format!(
                "pod {}/{} container {} is assigned card {}, which this node does not have",
                m.namespace, m.pod, m.container.name, d.uuid
            )));
        }
        let record = tenant::prepare(&self.config, &m, device_ids)?;
        let response = tenant::response(&self.config, &record);
        store.insert(record)?;
        tenant::write_grants(&self.config, store.all())?;
        tracing::info!(pod = %format!("{}/{}", m.namespace, m.pod), container = %m.container.name,
                       devices = ?device_ids, "allocated");
        if let Err(e) =
            kube_api::mark_allocated(&self.client, &m.namespace, &m.pod, &m.container.name).await
        {
            // The record on disk already keeps the container from being served twice here.
            tracing::warn!("{e}");
        }
        Ok(response)
    }

    /// The slots to prefer for a request of `size` from `available`: on the cards the pod being
    /// admitted was assigned, else one slot per card where possible.
    pub async fn preferred(
        &self,
        available: &[String],
        must_include: &[String],
        size: usize,
    ) -> Vec<String> {
        let mut chosen: Vec<String> = must_include.to_vec();
        let mut used_cards: HashSet<String> = chosen
            .iter()
            .filter_map(|id| cards::card_of_slot(id).map(String::from))
            .collect();
        let wanted: Vec<String> = {
            let store = self.store.lock().await;
            match kube_api::node_pods(&self.client, &self.config.node_name).await {
                Ok(pods) => matching::find(
                    &pods,
                    &self.config.node_name,
                    size,
                    &store,
                    self.config.assignment_key.as_ref(),
                    &mut vec![],
                )
                .map(|m| m.container.devices.into_iter().map(|d| d.uuid).collect())
                .unwrap_or_default(),
                Err(_) => Vec::new(),
            }
        };
        let mut pick = |want: Option<&str>| {
            for id in available {
                if chosen.len() >= size {
                    return;
                }
                let Some(card) = cards::card_of_slot(id) else {
                    continue;
                };
                let fits = match want {
                    Some(w) => card == w,
                    None => true,
                };
                if fits && !used_cards.contains(card) && !chosen.contains(id) {
                    used_cards.insert(card.to_string());
                    chosen.push(id.clone());
                    if want.is_some() {
                        return;
                    }
                }
            }
        };
        for w in &wanted {
            pick(Some(w));
        }
        pick(None);
        // Fewer cards than slots wanted: fill with any free slot.
        for id in available {
            if chosen.len() >= size {
                break;
            }
            if !chosen.contains(id) {
                chosen.push(id.clone());
            }
        }
        chosen
    }

    /// Removes the records, tenant folders and limits files of containers whose pod is gone or
    /// finished. Nothing is removed when the pods cannot be listed, nor what was allocated
    /// after the listing began (its pod may be newer than the list: a CI run once saw a
    /// container's folder removed between `Allocate` and its start).
    pub async fn reap(&self) -> Result<usize> {
        let known: HashSet<String> = self.store.lock().await.all().map(|a| a.key()).collect();
        let pods = kube_api::node_pods(&self.client, &self.config.node_name).await?;
        let live: HashSet<String> = pods
            .iter()
            .filter(|p| !gpupool_sched::pod::finished(p))
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        let mut store = self.store.lock().await;
        let gone: Vec<_> = store
            .all()
            .filter(|a| !live.contains(&a.pod_uid) && known.contains(&a.key()))
            .cloned()
            .collect();
        for a in &gone {
            let _ = std::fs::remove_dir_all(&a.tenant_dir);
            let _ = std::fs::remove_dir_all(crate::tenant::card_folder(&self.config, a));
            let _ = std::fs::remove_file(&a.limits_file);
            let _ = std::fs::remove_file(crate::tenant::owner_file(&a.tenant_dir));
            store.remove(&a.key())?;
            tracing::info!(pod = %format!("{}/{}", a.namespace, a.pod), container = %a.container,
                           "reaped");
        }
        if !gone.is_empty() {
            tenant::write_grants(&self.config, store.all())?;
        }
        Ok(gone.len())
    }

    /// One audit round: NVML's memory per process against the limits; each container over its
    /// limit is logged, gets an event on its pod when first found, is counted, and with the `kill`
    /// policy its processes on that card are killed. Returns the findings of this round.
    pub async fn audit(&self) -> Result<Vec<OverLimit>> {
        let source = self.source.clone();
        let usage = tokio::task::spawn_blocking(move || source.processes())
            .await
            .map_err(|e| NodeError::Cards(format!("audit: {e}")))?
            .map_err(NodeError::Cards)?;
        let allocations = self.allocations().await;
        if usage.is_empty() || allocations.is_empty() {
            return Ok(Vec::new());
        }
        let pods = kube_api::node_pods(&self.client, &self.config.node_name).await?;
        let root = self.config.proc_root.clone();
        let found = audit::find_over_limit(&usage, &allocations, &pods, &self.allowance, |pid| {
            audit::owner_of(&root, pid)
        });
        let mut first_seen = Vec::new();
        {
            let mut findings = self.findings.lock().unwrap_or_else(|e| e.into_inner());
            for f in &found {
                let key = (
                    f.namespace.clone(),
                    f.pod.clone(),
                    f.container.clone(),
                    f.uuid.clone(),
                );
                let e = findings.entry(key).or_insert((0, f.clone()));
                if e.0 == 0 {
                    first_seen.push(f.clone());
                }
                e.0 += 1;
                e.1 = f.clone();
            }
        }
        for f in &found {
            let message = format!(
                "container {} uses {} MiB on {} (NVML), above its limit of {} MiB (pids {:?})",
                f.container,
                f.used_bytes >> 20,
                f.uuid,
                f.limit_bytes >> 20,
                f.pids
            );
            tracing::warn!(pod = %format!("{}/{}", f.namespace, f.pod), "{message}");
            if self.config.audit_policy == AuditPolicy::Kill {
                let mut killed = Vec::new();
                for p in &f.processes {
                    match audit::kill_if_same(&root, *p) {
                        Ok(true) => killed.push(p.pid),
                        Ok(false) => {
                            tracing::info!(
                                pid = p.pid,
                                "not killed: gone, or its pid is another process's now"
                            )
                        }
                        Err(e) => tracing::warn!("{e}"),
                    }
                }
                tracing::warn!(pids = ?killed, "killed (audit policy kill)");
            }
            if first_seen.contains(f) {
                let uid = allocations
                    .iter()
                    .find(|a| a.namespace == f.namespace && a.pod == f.pod)
                    .map(|a| a.pod_uid.clone())
                    .unwrap_or_default();
                let reason = "GpupoolOverLimit";
                if let Err(e) =
                    kube_api::warn_pod(&self.client, &f.namespace, &f.pod, &uid, reason, &message)
                        .await
                {
                    tracing::warn!("{e}");
                }
            }
        }
        Ok(found)
    }

    /// Every container the audit found over its limit: rounds found, last finding.
    pub fn findings(&self) -> Vec<(u64, OverLimit)> {
        let findings = self.findings.lock().unwrap_or_else(|e| e.into_inner());
        findings.values().cloned().collect()
    }

    /// Every allocation record (for tests and `gpupool info`).
    pub async fn allocations(&self) -> Vec<crate::store::Allocation> {
        self.store.lock().await.all().cloned().collect()
    }
}
