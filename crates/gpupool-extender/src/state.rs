//! The extender's decisions, without I/O: the cluster view (nodes' cards, placed and assumed
//! pods) behind one lock, `filter` / `prioritize` answers, the assignment made at `bind`, and
//! the rebuild from listed nodes and pods.

use crate::api::{ExtenderArgs, ExtenderFilterResult, HostPriority, NodeList, MAX_PRIORITY};
use crate::pod;
use gpupool_sched::cluster::Cluster;
use gpupool_sched::protocol::{Assignment, Inventory, INVENTORY_ANNOTATION};
use gpupool_sched::request::{Policy, ResourceNames};
use k8s_openapi::api::core::v1::{Node, Pod};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Cluster-wide settings of the extender.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Resource names (domain `nvidia.com` by default).
    pub names: ResourceNames,
    /// Policy of pods that set none.
    pub defaults: Policy,
    /// Memory oversubscription factor (1.0 = none).
    pub oversubscription: f64,
    /// How long a pod assigned here counts as placed while the API does not show it bound.
    pub assume_for: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            names: ResourceNames::default(),
            defaults: Policy::default(),
            oversubscription: 1.0,
            assume_for: Duration::from_secs(60),
        }
    }
}

/// Mutable state: the cluster view and what was assigned here and not yet seen bound.
#[derive(Default)]
struct Inner {
    cluster: Cluster,
    /// Inventory annotation text last applied per node (to skip unchanged ones).
    inventories: HashMap<String, String>,
    /// Nodes whose inventory annotation is malformed, with the reason.
    bad_inventories: HashMap<String, String>,
    /// Pods assigned by `bind` here, with when.
    assumed: HashMap<String, (Assignment, Instant)>,
}

impl Inner {
    fn empty(oversubscription: f64) -> Inner {
        let mut cluster = Cluster::new();
        cluster.oversubscription = oversubscription;
        Inner {
            cluster,
            ..Inner::default()
        }
    }
}

/// The extender: settings and state.
pub struct Extender {
    settings: Settings,
    inner: Mutex<Inner>,
}

/// Outcome of [`Extender::assign`].
#[derive(Debug, Clone, PartialEq)]
pub enum Assigned {
    /// Placed now.
    New(Assignment),
    /// Already placed on that node earlier (a retried bind).
    Again(Assignment),
}

impl Assigned {
    /// The assignment.
    pub fn assignment(&self) -> &Assignment {
        match self {
            Assigned::New(a) | Assigned::Again(a) => a,
        }
    }
}

impl Extender {
    /// An extender with an empty cluster view.
    pub fn new(settings: Settings) -> Extender {
        Extender {
            inner: Mutex::new(Inner::empty(settings.oversubscription)),
            settings,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes each node's inventory annotation (nodes without one are left as they are).
    pub fn observe_nodes<'a>(&self, nodes: impl IntoIterator<Item = &'a Node>) {
        let mut g = self.lock();
        for n in nodes {
            let Some(name) = n.metadata.name.as_deref() else {
                continue;
            };
            let text = n
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(INVENTORY_ANNOTATION));
            if let Some(text) = text {
                apply_inventory(&mut g, name, text);
            }
        }
    }

    /// Answers `filter`.
    pub fn filter(&self, args: &ExtenderArgs) -> ExtenderFilterResult {
        let Some(pod) = &args.pod else {
            return ExtenderFilterResult {
                error: "the request has no Pod".into(),
                ..Default::default()
            };
        };
        if let Some(nodes) = &args.nodes {
            self.observe_nodes(&nodes.items);
        }
        let candidates = candidates(args);
        let mut result = ExtenderFilterResult::default();
        let fits: Vec<String> = match self.judge(pod) {
            Err(why) => {
                // The pod's own request is wrong: no node will ever do, and preemption
                // cannot help.
                for n in &candidates {
                    result
                        .failed_and_unresolvable
                        .insert(n.clone(), why.clone());
                }
                Vec::new()
            }
            Ok(None) => candidates.clone(),
            Ok(Some((reqs, policy))) => {
                let g = self.lock();
                // A node whose inventory cannot be read is never chosen: its cards are unknown.
                let (bad, good): (Vec<String>, Vec<String>) = candidates
                    .iter()
                    .cloned()
                    .partition(|n| g.bad_inventories.contains_key(n));
                for n in bad {
                    let why = g.bad_inventories[&n].clone();
                    result.failed_nodes.insert(n, why);
                }
                let (fits, failed) = g.cluster.filter(&reqs, &policy, &good);
                result.failed_nodes.extend(failed);
                fits
            }
        };
        match &args.nodes {
            Some(list) => {
                result.nodes = Some(NodeList {
                    metadata: list.metadata.clone(),
                    items: list
                        .items
                        .iter()
                        .filter(|n| {
                            fits.iter()
                                .any(|f| Some(f.as_str()) == n.metadata.name.as_deref())
                        })
                        .cloned()
                        .collect(),
                })
            }
            None => result.node_names = Some(fits),
        }
        result
    }

    /// Answers `prioritize`: 0..=10 per candidate (0 everywhere for pods without vGPUs or with
    /// a malformed request).
    pub fn prioritize(&self, args: &ExtenderArgs) -> Vec<HostPriority> {
        if let Some(nodes) = &args.nodes {
            self.observe_nodes(&nodes.items);
        }
        let candidates = candidates(args);
        let scores: Vec<(String, i64)> = match args.pod.as_ref().map(|p| self.judge(p)) {
            Some(Ok(Some((reqs, policy)))) => {
                let g = self.lock();
                g.cluster
                    .prioritize(&reqs, &policy, &candidates)
                    .into_iter()
                    .map(|(n, s)| {
                        let s = if g.bad_inventories.contains_key(&n) {
                            0
                        } else {
                            s
                        };
                        (n, s)
                    })
                    .collect()
            }
            _ => candidates.iter().map(|n| (n.clone(), 0)).collect(),
        };
        scores
            .into_iter()
            .map(|(host, score)| HostPriority {
                host,
                score: score.clamp(0, MAX_PRIORITY),
            })
            .collect()
    }

    /// The pod's vGPU requests and policy; `None` when it asks for no vGPU.
    #[allow(clippy::type_complexity)]
    fn judge(
        &self,
        pod: &Pod,
    ) -> Result<Option<(Vec<gpupool_sched::request::ContainerRequest>, Policy)>, String> {
        let reqs = pod::requests(pod, &self.settings.names)
            .map_err(|e| format!("pod {}: {e}", pod::pod_key(pod)))?;
        if reqs.is_empty() {
            return Ok(None);
        }
        let policy = pod::policy(pod, &self.settings.defaults)
            .map_err(|e| format!("pod {}: {e}", pod::pod_key(pod)))?;
        Ok(Some((reqs, policy)))
    }

    /// Chooses the pod's cards on `node` and counts them as used (assumed) at once, so that a
    /// concurrent bind cannot get the same capacity. A pod already placed on `node` gets its
    /// earlier assignment back; placed elsewhere, it is moved.
    pub fn assign(&self, pod: &Pod, node: &str) -> Result<Assigned, String> {
        let key = pod::pod_key(pod);
        let Some((reqs, policy)) = self.judge(pod)? else {
            return Err(format!("pod {key} asks for no vGPU"));
        };
        let mut g = self.lock();
        if let Some((a, _)) = g.assumed.get(&key) {
            if a.node == node {
                return Ok(Assigned::Again(a.clone()));
            }
        }
        g.cluster.remove_pod(&key);
        let a = g.cluster.assign(&key, node, &reqs, &policy)?;
        g.assumed.insert(key, (a.clone(), Instant::now()));
        Ok(Assigned::New(a))
    }

    /// Drops what [`Extender::assign`] recorded for a pod whose bind failed.
    pub fn forget(&self, key: &str) {
        let mut g = self.lock();
        g.assumed.remove(key);
        g.cluster.remove_pod(key);
    }

    /// Marks a pod's assignment as confirmed by the API (bound); it stays counted.
    pub fn confirm(&self, key: &str) {
        // Kept in `assumed` until a rebuild sees it bound: a rebuild from a list taken before
        // the bind must not drop it.
        let mut g = self.lock();
        if let Some(e) = g.assumed.get_mut(key) {
            e.1 = Instant::now();
        }
    }

    /// Replaces the view with the listed nodes and pods (bound, unfinished pods with an
    /// assignment count), keeping pods assigned here recently that the list does not show yet.
    /// Returns the pods that could not be read, with the reason.
    pub fn rebuild(&self, nodes: &[Node], pods: &[Pod]) -> BTreeMap<String, String> {
        let mut fresh = Inner::empty(self.settings.oversubscription);
        let mut problems = BTreeMap::new();
        for n in nodes {
            let Some(name) = n.metadata.name.as_deref() else {
                continue;
            };
            if let Some(text) = n
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(INVENTORY_ANNOTATION))
            {
                apply_inventory(&mut fresh, name, text);
            }
        }
        let mut seen = Vec::new();
        for p in pods {
            if pod::finished(p) {
                continue;
            }
            let key = pod::pod_key(p);
            match pod::assignment(p) {
                Ok(Some(a)) if pod::bound_node(p) == Some(a.node.as_str()) => {
                    fresh.cluster.add_pod(&key, &a);
                    seen.push(key);
                }
                Ok(_) => {}
                Err(e) => {
                    problems.insert(key, e);
                }
            }
        }
        let mut g = self.lock();
        let now = Instant::now();
        let keep = self.settings.assume_for;
        let assumed = std::mem::take(&mut g.assumed);
        for (key, (a, at)) in assumed {
            if seen.contains(&key) || now.duration_since(at) > keep {
                continue;
            }
            if fresh.cluster.node_of(&key).is_none() {
                fresh.cluster.add_pod(&key, &a);
            }
            fresh.assumed.insert(key, (a, at));
        }
        *g = fresh;
        problems
    }

    /// How many pods the view counts as placed.
    pub fn placed_pods(&self) -> usize {
        self.lock().cluster.pod_count()
    }

    /// The node a pod is placed on in the view.
    pub fn node_of(&self, key: &str) -> Option<String> {
        self.lock().cluster.node_of(key).map(String::from)
    }
}

/// Candidate node names of a request.
fn candidates(args: &ExtenderArgs) -> Vec<String> {
    match (&args.node_names, &args.nodes) {
        (Some(names), _) => names.clone(),
        (None, Some(list)) => list
            .items
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect(),
        (None, None) => Vec::new(),
    }
}

fn apply_inventory(g: &mut Inner, node: &str, text: &str) {
    if g.inventories.get(node).map(String::as_str) == Some(text) {
        return;
    }
    match Inventory::parse(text) {
        Ok(inv) => {
            g.cluster.set_inventory(node, &inv);
            g.bad_inventories.remove(node);
        }
        Err(e) => {
            g.bad_inventories.insert(
                node.to_string(),
                format!("node {node}: annotation {INVENTORY_ANNOTATION}: {e}"),
            );
        }
    }
    g.inventories.insert(node.to_string(), text.to_string());
}
