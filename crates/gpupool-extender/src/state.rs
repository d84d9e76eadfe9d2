//! The extender's decisions, without I/O: the cluster view (nodes' cards, placed and assumed
//! pods) behind one lock, `filter` / `prioritize` answers, the assignment made at `bind`, and
//! the rebuild from listed nodes and pods.

use crate::api::{push_json_map, push_json_names, push_json_str, ExtenderArgs, MAX_PRIORITY};
use crate::error::ExtenderError;
use gpupool_sched::cluster::{Cluster, Placed, Verdict};
use gpupool_sched::names::{name_hash, prefetch_name, PREFETCH_AHEAD};
use gpupool_sched::pod::{self, PodError};
use gpupool_sched::protocol::{Assignment, Inventory, INVENTORY_ANNOTATION};
use gpupool_sched::request::{Policy, ResourceNames};
use gpupool_sched::signing::AssignmentKey;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The key assignments are signed with (shared with the node agents); `None`: unsigned,
    /// and unsigned assignments of other pods are trusted (the operator's explicit choice).
    pub key: Option<AssignmentKey>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            names: ResourceNames::default(),
            defaults: Policy::default(),
            oversubscription: 1.0,
            assume_for: Duration::from_secs(60),
            key: None,
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
    /// Bumped by every change of the view (evaluations of an older one are stale).
    generation: u64,
    /// The last `filter` evaluation, reused by the `prioritize` call that follows it.
    last: Option<Cached>,
}

/// An evaluation kept between `filter` and `prioritize` of the same pod.
struct Cached {
    /// Pod UID and resource version (the pod's content).
    pod: (String, String),
    generation: u64,
    /// Hash of each of filter's candidates' names (no copies of thousands of names).
    hashes: Vec<u64>,
    /// Each candidate's score (0 where the pod does not fit), same order.
    scores: Vec<i64>,
}

impl Cached {
    /// The scores of `candidates` when they are filter's candidates or a subsequence of them
    /// in the same order (kube-scheduler sends the nodes that passed, in order).
    fn scores_of(&self, candidates: &[String]) -> Option<Vec<i64>> {
        let mut at = 0;
        candidates
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if let Some(ahead) = candidates.get(i + PREFETCH_AHEAD) {
                    prefetch_name(ahead);
                }
                let h = name_hash(n);
                let k = self.hashes[at..].iter().position(|x| *x == h)?;
                at += k + 1;
                Some(self.scores[at - 1])
            })
            .collect()
    }
}

/// `filter`'s verdict, before it is written as an answer.
#[derive(Default)]
struct FilterAnswer {
    /// Indices of the candidates that fit.
    fits: Vec<usize>,
    /// Indices of the candidates that do not, with why (hundreds per call: no copy of the
    /// name, and the common reasons are static text).
    failed: Vec<(usize, Cow<'static, str>)>,
    unresolvable: BTreeMap<String, String>,
    error: String,
    /// `NodeNames` and `FailedNodes` already written (`[…],"FailedNodes":{…}`), from the
    /// view's own copy of the names while the evaluation held it: the request's thousands of
    /// names are each a separate allocation, cold by then.
    names_json: Option<Vec<u8>>,
}

/// What one bind's [`Extender::assign`] changed in the view.
#[derive(Debug)]
pub struct Tentative {
    key: String,
    /// The record it made (to recognise it later).
    added: Option<Placed>,
    assignment: Assignment,
    /// What the pod held before, to put back.
    previous: Option<Placed>,
    previous_assumed: Option<(Assignment, Instant)>,
}

fn pod_identity(pod: &Pod) -> (String, String) {
    (
        pod.metadata
            .uid
            .clone()
            .unwrap_or_else(|| pod::pod_key(pod)),
        pod.metadata.resource_version.clone().unwrap_or_default(),
    )
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
    evaluations: AtomicU64,
}

impl Extender {
    /// An extender with an empty cluster view.
    pub fn new(settings: Settings) -> Extender {
        Extender {
            inner: Mutex::new(Inner::empty(settings.oversubscription)),
            settings,
            evaluations: AtomicU64::new(0),
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

    /// Answers `filter` (an `ExtenderFilterResult` as JSON), written straight from the request's
    /// names and node objects (nothing copied per node: thousands of them per call).
    pub fn filter_json(&self, args: &ExtenderArgs) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct List<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            metadata: Option<&'a ListMeta>,
            items: Vec<&'a Node>,
        }
        #[derive(serde::Serialize)]
        struct Answer<'a> {
            #[serde(rename = "Nodes")]
            nodes: Option<List<'a>>,
            #[serde(rename = "NodeNames")]
            node_names: Option<Vec<&'a str>>,
            #[serde(rename = "FailedNodes")]
            failed: BTreeMap<&'a str, &'a str>,
            #[serde(rename = "FailedAndUnresolvableNodes")]
            unresolvable: &'a BTreeMap<String, String>,
            #[serde(rename = "Error")]
            error: &'a str,
        }
        let (candidates, answer) = self.filter_core(args);
        let fit_names = || answer.fits.iter().map(|&i| candidates[i].as_str());
        if args.nodes.is_none() {
            // The common case (`nodeCacheCapable`): names only, thousands of them, written
            // by hand; the same fields in the same order as the struct below.
            let mut out = Vec::with_capacity(answer.fits.len() * 24 + 128);
            out.extend_from_slice(b"{\"Nodes\":null,\"NodeNames\":");
            match &answer.names_json {
                Some(written) => out.extend_from_slice(written),
                None => push_names_and_failed(&mut out, &answer, |i| candidates[i].as_str()),
            }
            out.extend_from_slice(b",\"FailedAndUnresolvableNodes\":");
            let _ = serde_json::to_writer(&mut out, &answer.unresolvable);
            out.extend_from_slice(b",\"Error\":");
            push_json_str(&mut out, &answer.error);
            out.push(b'}');
            return out;
        }
        let (nodes, node_names) = match &args.nodes {
            Some(list) => {
                let fits: HashSet<&str> = fit_names().collect();
                let items = list
                    .items
                    .iter()
                    .filter(|n| n.metadata.name.as_deref().is_some_and(|m| fits.contains(m)))
                    .collect();
                (
                    Some(List {
                        metadata: list.metadata.as_ref(),
                        items,
                    }),
                    None,
                )
            }
            None => (None, Some(fit_names().collect())),
        };
        serde_json::to_vec(&Answer {
            nodes,
            node_names,
            failed: answer
                .failed
                .iter()
                .map(|(i, why)| (candidates[*i].as_str(), why.as_ref()))
                .collect(),
            unresolvable: &answer.unresolvable,
            error: &answer.error,
        })
        .unwrap_or_default()
    }

    /// The candidates and `filter`'s verdict on them (fits as indices into the candidates).
    fn filter_core<'a>(&self, args: &'a ExtenderArgs) -> (Cow<'a, [String]>, FilterAnswer) {
        let mut answer = FilterAnswer::default();
        let Some(pod) = &args.pod else {
            answer.error = "the request has no Pod".into();
            return (Cow::Owned(Vec::new()), answer);
        };
        if let Some(nodes) = &args.nodes {
            self.observe_nodes(&nodes.items);
        }
        let candidates = candidates(args);
        match self.judge(pod).map_err(|e| e.to_string()) {
            Err(why) => {
                // The pod's own request is wrong: no node will ever do, and preemption
                // cannot help. The reason goes in both maps: schedulers that predate
                // `FailedAndUnresolvableNodes` (or drop it) show only `FailedNodes`.
                for (i, n) in candidates.iter().enumerate() {
                    answer.unresolvable.insert(n.clone(), why.clone());
                    answer.failed.push((i, Cow::Owned(why.clone())));
                }
            }
            Ok(None) => answer.fits = (0..candidates.len()).collect(),
            Ok(Some((reqs, policy))) => {
                let mut g = self.lock();
                self.evaluations.fetch_add(1, Ordering::Relaxed);
                let mut evaluation = g.cluster.evaluate(&reqs, &policy, &candidates);
                g.last = Some(Cached {
                    pod: pod_identity(pod),
                    generation: g.generation,
                    hashes: std::mem::take(&mut evaluation.name_hashes),
                    scores: evaluation.verdicts.iter().map(Verdict::score).collect(),
                });
                let any_bad = !g.bad_inventories.is_empty();
                for (i, (name, v)) in candidates.iter().zip(&evaluation.verdicts).enumerate() {
                    // A node whose inventory cannot be read is never chosen: its cards are
                    // unknown.
                    if let Some(why) = any_bad.then(|| g.bad_inventories.get(name)).flatten() {
                        answer.failed.push((i, Cow::Owned(why.clone())));
                    } else if let Some(why) = v.why_not() {
                        answer.failed.push((i, Cow::Borrowed(why)));
                    } else {
                        answer.fits.push(i);
                    }
                }
                if args.nodes.is_none() {
                    // The view's copy of a name is the request's (the evaluation matched it).
                    let mut out = Vec::with_capacity(answer.fits.len() * 24 + 64);
                    push_names_and_failed(&mut out, &answer, |i| {
                        g.cluster
                            .node_name(evaluation.nodes[i])
                            .unwrap_or(candidates[i].as_str())
                    });
                    answer.names_json = Some(out);
                }
            }
        }
        (candidates, answer)
    }

    /// Answers `prioritize` (a `HostPriorityList` as JSON: 0..=10 per candidate; 0 everywhere
    /// for pods without vGPUs or with a malformed request), written straight from the
    /// request's node names (no copy of each name: thousands of them per call).
    pub fn prioritize_json(&self, args: &ExtenderArgs) -> Vec<u8> {
        let (candidates, scores) = self.scores(args);
        // Written by hand: thousands of entries, each `{"Host":"…","Score":N}`.
        let mut out = Vec::with_capacity(candidates.len() * 40 + 2);
        out.push(b'[');
        for (i, (host, score)) in candidates.iter().zip(scores).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"Host\":");
            push_json_str(&mut out, host);
            out.extend_from_slice(b",\"Score\":");
            push_score(&mut out, score);
            out.push(b'}');
        }
        out.push(b']');
        out
    }

    /// The candidates and their scores (same order).
    fn scores<'a>(&self, args: &'a ExtenderArgs) -> (Cow<'a, [String]>, Vec<i64>) {
        if let Some(nodes) = &args.nodes {
            self.observe_nodes(&nodes.items);
        }
        let candidates = candidates(args);
        let Some(Ok(Some((reqs, policy)))) = args.pod.as_ref().map(|p| self.judge(p)) else {
            let zeros = vec![0; candidates.len()];
            return (candidates, zeros);
        };
        let g = self.lock();
        let identity = args.pod.as_ref().map(pod_identity);
        // kube-scheduler asks `prioritize` right after `filter`, for the nodes that passed:
        // reuse that evaluation when nothing changed since.
        let cached: Option<Vec<i64>> = g
            .last
            .as_ref()
            .filter(|c| c.generation == g.generation && Some(&c.pod) == identity.as_ref())
            .and_then(|c| c.scores_of(&candidates));
        let scores = cached.unwrap_or_else(|| {
            self.evaluations.fetch_add(1, Ordering::Relaxed);
            let e = g.cluster.evaluate(&reqs, &policy, &candidates);
            e.verdicts.iter().map(Verdict::score).collect()
        });
        let any_bad = !g.bad_inventories.is_empty();
        let scores = candidates
            .iter()
            .zip(scores)
            .map(|(n, s)| {
                if any_bad && g.bad_inventories.contains_key(n) {
                    0
                } else {
                    s.clamp(0, MAX_PRIORITY)
                }
            })
            .collect();
        drop(g);
        (candidates, scores)
    }

    /// The pod's vGPU requests and policy; `None` when it asks for no vGPU.
    #[allow(clippy::type_complexity)]
    fn judge(
        &self,
        pod: &Pod,
    ) -> Result<Option<(Vec<gpupool_sched::request::ContainerRequest>, Policy)>, PodError> {
        let reqs = pod::requests(pod, &self.settings.names)?;
        if reqs.is_empty() {
            return Ok(None);
        }
        let policy = pod::policy(pod, &self.settings.defaults)?;
        Ok(Some((reqs, policy)))
    }

    /// Chooses the pod's cards on `node` and counts them as used (assumed) at once, so that a
    /// concurrent bind cannot get the same capacity. A pod already placed on `node` gets its
    /// earlier assignment back; placed elsewhere, it is moved. The [`Tentative`] undoes exactly
    /// this change if the bind fails (`None`: nothing changed).
    pub fn assign(
        &self,
        pod: &Pod,
        node: &str,
    ) -> Result<(Assignment, Option<Tentative>), ExtenderError> {
        let key = pod::pod_key(pod);
        let Some((reqs, policy)) = self
            .judge(pod)
            .map_err(|e| ExtenderError::Refused(e.to_string()))?
        else {
            return Err(ExtenderError::Refused(format!(
                "pod {key} asks for no vGPU"
            )));
        };
        let mut g = self.lock();
        if let Some((a, _)) = g.assumed.get(&key) {
            if a.node == node {
                return Ok((a.clone(), None));
            }
        }
        g.generation += 1;
        let previous = g.cluster.take_pod(&key);
        let previous_assumed = g.assumed.get(&key).cloned();
        let a = match g.cluster.assign(&key, node, &reqs, &policy) {
            Ok(a) => a,
            Err(e) => {
                if let Some(p) = previous {
                    g.cluster.put_pod(&key, p);
                }
                return Err(ExtenderError::Refused(e.to_string()));
            }
        };
        let added = g.cluster.placed(&key).cloned();
        g.assumed.insert(key.clone(), (a.clone(), Instant::now()));
        Ok((
            a.clone(),
            Some(Tentative {
                key,
                added,
                assignment: a,
                previous,
                previous_assumed,
            }),
        ))
    }

    /// Undoes what [`Extender::assign`] did for a bind that failed: its own record goes, what
    /// the pod held before comes back (a pod bound earlier keeps its cards), and a record
    /// another bind made since is left alone.
    pub fn undo(&self, t: Tentative) {
        let mut g = self.lock();
        if g.cluster.placed(&t.key) != t.added.as_ref() {
            return;
        }
        g.generation += 1;
        g.cluster.remove_pod(&t.key);
        if g.assumed.get(&t.key).map(|(a, _)| a) == Some(&t.assignment) {
            g.assumed.remove(&t.key);
        }
        if let Some(p) = t.previous {
            g.cluster.put_pod(&t.key, p);
        }
        if let Some(a) = t.previous_assumed {
            g.assumed.insert(t.key, a);
        }
    }

    /// Counts a pod the API shows bound with a (valid) assignment, if the view lacks it: a bind
    /// that finds its pod already bound says what it holds.
    pub fn observe_bound(&self, pod: &Pod) {
        let Ok(Some(a)) = pod::signed_assignment(pod, self.settings.key.as_ref()) else {
            return;
        };
        if pod::bound_node(pod) != Some(a.node.as_str()) || pod::finished(pod) {
            return;
        }
        let key = pod::pod_key(pod);
        let mut g = self.lock();
        if g.cluster.node_of(&key).is_none() {
            g.generation += 1;
            g.cluster.add_pod(&key, &a);
        }
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
    /// Returns the pods whose assignment could not be read, with the reason.
    pub fn rebuild(&self, nodes: &[Node], pods: &[Pod]) -> Vec<PodError> {
        let mut fresh = Inner::empty(self.settings.oversubscription);
        let mut problems = Vec::new();
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
            match pod::signed_assignment(p, self.settings.key.as_ref()) {
                Ok(Some(a)) if pod::bound_node(p) == Some(a.node.as_str()) => {
                    fresh.cluster.add_pod(&key, &a);
                    seen.push(key);
                }
                Ok(_) => {}
                Err(e) => problems.push(e),
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
        fresh.generation = g.generation + 1;
        *g = fresh;
        problems
    }

    /// How many times pods were tried on the cluster (a `prioritize` right after the `filter`
    /// of the same pod reuses its evaluation).
    pub fn evaluations(&self) -> u64 {
        self.evaluations.load(Ordering::Relaxed)
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

/// Appends a score (0..=`MAX_PRIORITY` after clamping) without the formatting machinery:
/// thousands per answer.
fn push_score(out: &mut Vec<u8>, score: i64) {
    match score {
        0..=9 => out.push(b'0' + score as u8),
        _ => {
            let _ = write!(out, "{score}");
        }
    }
}

/// Writes `filter`'s `NodeNames` array and `,"FailedNodes":` map, candidate `i` being named
/// `name_of(i)`.
fn push_names_and_failed<'a>(
    out: &mut Vec<u8>,
    answer: &'a FilterAnswer,
    name_of: impl Fn(usize) -> &'a str,
) {
    push_json_names(out, answer.fits.iter().map(|&i| name_of(i)));
    out.extend_from_slice(b",\"FailedNodes\":");
    push_json_map(
        out,
        answer
            .failed
            .iter()
            .map(|(i, why)| (name_of(*i), why.as_ref())),
    );
}

/// Candidate node names of a request.
fn candidates(args: &ExtenderArgs) -> Cow<'_, [String]> {
    match (&args.node_names, &args.nodes) {
        (Some(names), _) => Cow::Borrowed(names),
        (None, Some(list)) => Cow::Owned(
            list.items
                .iter()
                .filter_map(|n| n.metadata.name.clone())
                .collect(),
        ),
        (None, None) => Cow::Owned(Vec::new()),
    }
}

fn apply_inventory(g: &mut Inner, node: &str, text: &str) {
    if g.inventories.get(node).map(String::as_str) == Some(text) {
        return;
    }
    g.generation += 1;
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
