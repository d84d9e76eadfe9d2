//! The extender's view of the cluster: every node's cards (from its inventory annotation) and
//! the devices of every pod placed on them (bound, or assumed between `bind` and the API's
//! confirmation). `filter` and `prioritize` try the pod on each candidate node; `assign` places
//! it for `bind` and records it, so two binds never get the same capacity.

use crate::names::{name_hash, prefetch_name, NameTable, PREFETCH_AHEAD};
use crate::placement::{place, score, score_single, try_place, CardState, Pick, Scratch};
use crate::protocol::{AssignedContainer, AssignedDevice, Assignment, Inventory, VERSION};
use crate::request::{split_promise, ContainerRequest, Policy};
use std::collections::BTreeMap;
use std::sync::Mutex;
use thiserror::Error;

/// Why a pod cannot be placed on the node `bind` names.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AssignError {
    /// The node has published no inventory (or it was unreadable).
    #[error("node {node:?} has no gpupool inventory")]
    NoInventory {
        /// The node.
        node: String,
    },
    /// Its cards no longer have room for the pod's vGPUs.
    #[error("pod {pod:?} no longer fits on node {node:?}")]
    NoRoom {
        /// The pod's key.
        pod: String,
        /// The node.
        node: String,
    },
    /// The node's host memory left for spill is less than the pod's spill.
    #[error("pod {pod:?}: its spill ({spill_mib} MiB) no longer fits the host memory node {node:?} has left ({free_mib} MiB)")]
    NoSpillRoom {
        /// The pod's key.
        pod: String,
        /// The node.
        node: String,
        /// What the pod may spill, MiB.
        spill_mib: u64,
        /// What the node has left for spill, MiB.
        free_mib: u64,
    },
}

/// One node: where its cards are in [`Cluster::cards`], and its host memory for spill.
#[derive(Debug, Clone, Copy, Default)]
struct Node {
    start: usize,
    len: usize,
    /// Host memory the node offers for spill, MiB.
    spill_cap_mib: u64,
    /// Spill its pods may use, MiB.
    spill_used_mib: u64,
}

impl Node {
    fn spill_free_mib(&self) -> u64 {
        self.spill_cap_mib.saturating_sub(self.spill_used_mib)
    }
}

/// The devices a pod holds on a node: card, memory promised (MiB), cores, spill (MiB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    node: String,
    devices: Vec<(String, u64, u32, u64)>,
}

/// The outcome of trying a pod on one candidate node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It fits, with this score (0..=10).
    Fits(i64),
    /// The node has no gpupool inventory.
    NoInventory,
    /// Not enough free slots, memory or cores on the node's cards.
    NoRoom,
    /// Not enough of the node's host memory left for the pod's spill.
    NoSpillRoom,
}

impl Verdict {
    /// The score; 0 where the pod does not fit.
    pub fn score(&self) -> i64 {
        match self {
            Verdict::Fits(s) => *s,
            _ => 0,
        }
    }
}

impl Verdict {
    /// Why the pod does not fit; `None` where it does.
    pub fn why_not(&self) -> Option<&'static str> {
        match self {
            Verdict::Fits(_) => None,
            Verdict::NoInventory => Some("no gpupool inventory on this node"),
            Verdict::NoRoom => Some("not enough free GPU slots, memory or cores"),
            Verdict::NoSpillRoom => Some("not enough host memory left for the pod's spill"),
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.why_not() {
            Some(why) => f.write_str(why),
            None => write!(f, "fits (score {})", self.score()),
        }
    }
}

/// The outcome of trying a pod on candidate nodes: one verdict per candidate, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Verdict of each candidate (same order as the candidates).
    pub verdicts: Vec<Verdict>,
    /// Each candidate's [`name_hash`] (same order), taken while its name was read anyway:
    /// how a caller recognises the candidates of a later request without keeping the names.
    pub name_hashes: Vec<u64>,
    /// Each candidate's node in the view ([`Cluster::node_name`]; [`NO_NODE`] where the view
    /// has none): answers can copy the names from the view's one buffer.
    pub nodes: Vec<u32>,
}

/// Parts per evaluation thread a large evaluation is split into.
const PARTS_PER_THREAD: usize = 6;

/// [`Evaluation::nodes`] of a candidate the view does not know.
pub const NO_NODE: u32 = u32::MAX;

impl Evaluation {
    /// The candidates where the pod fits, and why each other one does not.
    pub fn filter(&self, candidates: &[String]) -> (Vec<String>, BTreeMap<String, String>) {
        let mut fits = Vec::new();
        let mut failed = BTreeMap::new();
        for (name, v) in candidates.iter().zip(&self.verdicts) {
            match v {
                Verdict::Fits(_) => fits.push(name.clone()),
                other => {
                    failed.insert(name.clone(), other.to_string());
                }
            }
        }
        (fits, failed)
    }

    /// Every candidate's score; 0 where the pod does not fit.
    pub fn scores(&self, candidates: &[String]) -> Vec<(String, i64)> {
        candidates
            .iter()
            .zip(&self.verdicts)
            .map(|(n, v)| (n.clone(), v.score()))
            .collect()
    }

    /// The index of the best candidate (highest score, first on ties).
    pub fn best(&self) -> Option<usize> {
        let mut best: Option<(usize, i64)> = None;
        for (i, v) in self.verdicts.iter().enumerate() {
            if let Verdict::Fits(s) = *v {
                if best.is_none_or(|(_, b)| s > b) {
                    best = Some((i, s));
                }
            }
        }
        best.map(|(i, _)| i)
    }
}

/// An upper bound of the spill a pod's containers may use on a node with `cards`, MiB.
fn spill_bound(pod: &[ContainerRequest], cards: &[CardState], over: f64) -> u64 {
    if pod.iter().all(|c| c.spill_mib == 0) && over <= 1.0 {
        return 0;
    }
    let largest = cards.iter().map(|c| c.info.memory_mib).max().unwrap_or(0);
    pod.iter()
        .map(|c| c.spill_bound(largest, over))
        .fold(0, u64::saturating_add)
}

/// Nodes, their cards and the pods on them.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    nodes: NameTable<Node>,
    /// Every node's cards, one node after another: scoring thousands of nodes reads a few
    /// pages instead of one allocation per node, wherever the allocator put it (twice as
    /// fast once the heap has been through a rebuild).
    cards: Vec<CardState>,
    /// Entries of `cards` no node uses any more (a node's card count changed).
    stale: usize,
    pods: BTreeMap<String, Placed>,
    /// Memory oversubscription factor (1.0 = none).
    pub oversubscription: f64,
}

impl Cluster {
    /// An empty cluster without memory oversubscription.
    pub fn new() -> Cluster {
        Cluster {
            oversubscription: 1.0,
            ..Cluster::default()
        }
    }

    /// Sets a node's cards from its inventory, keeping what pods already use on them.
    pub fn set_inventory(&mut self, node: &str, inventory: &Inventory) {
        let cards = inventory.cards.iter().map(|c| CardState::new(c.clone()));
        let len = inventory.cards.len();
        let spill_cap_mib = inventory.spill_mib.unwrap_or(0);
        match self.nodes.get_mut(node) {
            Some(n) if n.len == len => {
                n.spill_cap_mib = spill_cap_mib;
                n.spill_used_mib = 0;
                for (slot, card) in self.cards[n.start..n.start + len].iter_mut().zip(cards) {
                    *slot = card;
                }
            }
            old => {
                if let Some(n) = old {
                    self.stale += n.len;
                }
                let start = self.cards.len();
                self.cards.extend(cards);
                let n = Node {
                    start,
                    len,
                    spill_cap_mib,
                    spill_used_mib: 0,
                };
                self.nodes.insert(node, n);
                if self.stale > 64 && self.stale * 2 > self.cards.len() {
                    self.compact();
                }
            }
        }
        let pods: Vec<Placed> = self
            .pods
            .values()
            .filter(|p| p.node == node)
            .cloned()
            .collect();
        for p in pods {
            self.charge(&p, true);
        }
    }

    /// Drops the cards no node uses any more, keeping the nodes' order in [`Cluster::cards`].
    fn compact(&mut self) {
        let mut nodes: Vec<&mut Node> = self.nodes.values_mut().collect();
        nodes.sort_unstable_by_key(|n| n.start);
        let mut cards = Vec::with_capacity(self.cards.len() - self.stale);
        for n in nodes {
            let old = n.start;
            n.start = cards.len();
            cards.extend_from_slice(&self.cards[old..old + n.len]);
        }
        self.cards = cards;
        self.stale = 0;
    }

    /// A node's cards.
    /// The name of node `i` of an [`Evaluation::nodes`] (`None` for [`NO_NODE`]).
    pub fn node_name(&self, i: u32) -> Option<&str> {
        self.nodes.name_at(i as usize)
    }

    fn cards_of(&self, n: Node) -> &[CardState] {
        &self.cards[n.start..n.start + n.len]
    }

    fn charge(&mut self, p: &Placed, add: bool) {
        let Some(n) = self.nodes.get_mut(&p.node) else {
            return;
        };
        let spill = p
            .devices
            .iter()
            .map(|d| d.3)
            .fold(0u64, u64::saturating_add);
        n.spill_used_mib = match add {
            true => n.spill_used_mib.saturating_add(spill),
            false => n.spill_used_mib.saturating_sub(spill),
        };
        let n = *n;
        let cards = &mut self.cards[n.start..n.start + n.len];
        for (uuid, mib, cores, _) in &p.devices {
            if let Some(c) = cards.iter_mut().find(|c| &c.info.uuid == uuid) {
                if add {
                    c.used_mib += mib;
                    c.used_cores += cores;
                    c.used_slots += 1;
                } else {
                    c.used_mib = c.used_mib.saturating_sub(*mib);
                    c.used_cores = c.used_cores.saturating_sub(*cores);
                    c.used_slots = c.used_slots.saturating_sub(1);
                }
            }
        }
    }

    /// The node a pod is placed on, if it is.
    pub fn node_of(&self, pod: &str) -> Option<&str> {
        self.pods.get(pod).map(|p| p.node.as_str())
    }

    /// How many pods are placed.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Records a pod's assignment (from its annotation, or after `assign`); replaces an earlier
    /// record of the same pod.
    pub fn add_pod(&mut self, pod: &str, a: &Assignment) {
        self.remove_pod(pod);
        let over = self.oversubscription;
        let placed = Placed {
            node: a.node.clone(),
            devices: a
                .containers
                .iter()
                .flat_map(|c| c.devices.iter())
                .map(|d| {
                    let spill = d
                        .spill_mib
                        .saturating_add(split_promise(d.memory_mib, over).1);
                    (d.uuid.clone(), d.memory_mib, d.cores, spill)
                })
                .collect(),
        };
        self.charge(&placed, true);
        self.pods.insert(pod.to_string(), placed);
    }

    /// Forgets a pod (it ended, or its bind failed).
    pub fn remove_pod(&mut self, pod: &str) {
        self.take_pod(pod);
    }

    /// Forgets a pod and returns what it held, to put back with [`Cluster::put_pod`].
    pub fn take_pod(&mut self, pod: &str) -> Option<Placed> {
        let p = self.pods.remove(pod)?;
        self.charge(&p, false);
        Some(p)
    }

    /// What a pod holds, if it is placed.
    pub fn placed(&self, pod: &str) -> Option<&Placed> {
        self.pods.get(pod)
    }

    /// Puts back what [`Cluster::take_pod`] returned (replacing any other record of the pod).
    pub fn put_pod(&mut self, pod: &str, placed: Placed) {
        self.remove_pod(pod);
        self.charge(&placed, true);
        self.pods.insert(pod.to_string(), placed);
    }

    /// Tries the pod on every candidate: the nodes where it fits with their scores (0..=10),
    /// and why each other one does not. `filter` and `prioritize` are both answered from one
    /// evaluation (the extender keeps it between the two calls for the same pod).
    pub fn evaluate(
        &self,
        pod: &[ContainerRequest],
        policy: &Policy,
        candidates: &[String],
    ) -> Evaluation {
        // Large clusters are split over the machine's cores (long-lived helper threads,
        // parts merged in order).
        let threads = crate::helpers::parallelism();
        if candidates.len() < 512 || threads < 2 {
            return self.evaluate_part(pod, policy, candidates);
        }
        // Several parts per thread, handed out in turn: a helper the OS runs late takes fewer.
        let chunks: Vec<&[String]> = candidates
            .chunks(candidates.len().div_ceil(threads * PARTS_PER_THREAD))
            .collect();
        let parts: Vec<Mutex<Option<Evaluation>>> =
            chunks.iter().map(|_| Mutex::new(None)).collect();
        crate::helpers::run_split(chunks.len(), &|i| {
            let e = self.evaluate_part(pod, policy, chunks[i]);
            *parts[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
        });
        // A part that panicked on a helper is evaluated again here (it panics here too).
        let parts: Vec<Evaluation> = parts
            .into_iter()
            .zip(&chunks)
            .map(|(p, chunk)| {
                p.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .unwrap_or_else(|| self.evaluate_part(pod, policy, chunk))
            })
            .collect();
        Evaluation {
            name_hashes: parts.iter().flat_map(|p| &p.name_hashes).copied().collect(),
            nodes: parts.iter().flat_map(|p| &p.nodes).copied().collect(),
            verdicts: parts.into_iter().flat_map(|p| p.verdicts).collect(),
        }
    }

    fn evaluate_part(
        &self,
        pod: &[ContainerRequest],
        policy: &Policy,
        candidates: &[String],
    ) -> Evaluation {
        let mut e = Evaluation {
            verdicts: Vec::with_capacity(candidates.len()),
            name_hashes: Vec::with_capacity(candidates.len()),
            nodes: Vec::with_capacity(candidates.len()),
        };
        let mut cards: Vec<CardState> = Vec::new();
        let mut scratch = Scratch::default();
        for (i, name) in candidates.iter().enumerate() {
            if let Some(ahead) = candidates.get(i + PREFETCH_AHEAD) {
                prefetch_name(ahead);
            }
            let hash = name_hash(name);
            e.name_hashes.push(hash);
            let found = self.nodes.entry_hashed(name, hash);
            e.nodes.push(found.map_or(NO_NODE, |(i, _)| i as u32));
            match found {
                None => e.verdicts.push(Verdict::NoInventory),
                Some((_, &n))
                    if spill_bound(pod, self.cards_of(n), self.oversubscription)
                        > n.spill_free_mib() =>
                {
                    e.verdicts.push(Verdict::NoSpillRoom)
                }
                Some((_, &n)) => {
                    let node_cards = self.cards_of(n);
                    let fits = match pod {
                        // One container (any vGPU count): scored in place, nothing copied.
                        [one] => score_single(
                            node_cards,
                            one,
                            policy,
                            self.oversubscription,
                            &mut scratch,
                        ),
                        _ => {
                            cards.clear();
                            cards.extend_from_slice(node_cards);
                            try_place(&mut cards, pod, policy, self.oversubscription)
                                .map(|_| score(&cards, policy))
                        }
                    };
                    e.verdicts.push(fits.map_or(Verdict::NoRoom, Verdict::Fits));
                }
            }
        }
        e
    }

    /// The nodes among `candidates` where the pod fits, and why each other one does not.
    pub fn filter(
        &self,
        pod: &[ContainerRequest],
        policy: &Policy,
        candidates: &[String],
    ) -> (Vec<String>, BTreeMap<String, String>) {
        self.evaluate(pod, policy, candidates).filter(candidates)
    }

    /// Scores (0..=10) of `candidates` for the pod; nodes where it does not fit score 0.
    pub fn prioritize(
        &self,
        pod: &[ContainerRequest],
        policy: &Policy,
        candidates: &[String],
    ) -> Vec<(String, i64)> {
        self.evaluate(pod, policy, candidates).scores(candidates)
    }

    /// Places the pod on `node` and records it (for `bind`); the assignment to annotate.
    pub fn assign(
        &mut self,
        pod: &str,
        node: &str,
        containers: &[ContainerRequest],
        policy: &Policy,
    ) -> Result<Assignment, AssignError> {
        let over = self.oversubscription;
        let &n = self
            .nodes
            .get(node)
            .ok_or_else(|| AssignError::NoInventory { node: node.into() })?;
        let mut cards = self.cards_of(n).to_vec();
        let picks =
            place(&mut cards, containers, policy, over).ok_or_else(|| AssignError::NoRoom {
                pod: pod.into(),
                node: node.into(),
            })?;
        let spill: u64 = containers
            .iter()
            .zip(&picks)
            .flat_map(|(c, p)| {
                p.iter().map(move |k| {
                    c.spill_mib
                        .saturating_add(split_promise(k.memory_mib, over).1)
                })
            })
            .fold(0, u64::saturating_add);
        if spill > n.spill_free_mib() {
            return Err(AssignError::NoSpillRoom {
                pod: pod.into(),
                node: node.into(),
                spill_mib: spill,
                free_mib: n.spill_free_mib(),
            });
        }
        let assigned_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .ok();
        let assignment = Assignment {
            version: VERSION,
            node: node.to_string(),
            assigned_ns,
            containers: containers
                .iter()
                .zip(&picks)
                .map(|(c, p)| AssignedContainer {
                    name: c.name.clone(),
                    devices: p
                        .iter()
                        .map(|k: &Pick| AssignedDevice {
                            uuid: cards[k.card].info.uuid.clone(),
                            memory_mib: k.memory_mib,
                            cores: k.cores,
                            priority: c.priority,
                            spill_mib: c.spill_mib,
                        })
                        .collect(),
                })
                .collect(),
        };
        self.add_pod(pod, &assignment);
        Ok(assignment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::CardInfo;
    use crate::request::Memory;

    fn inventory(cards: usize, mib: u64) -> Inventory {
        Inventory {
            version: VERSION,
            updated: String::new(),
            spill_mib: None,
            cards: (0..cards)
                .map(|i| CardInfo {
                    uuid: format!("GPU-{i}"),
                    model: "H100".into(),
                    memory_mib: mib,
                    sms: 132,
                    numa: 0,
                    healthy: true,
                    slots: 4,
                    group: None,
                })
                .collect(),
        }
    }

    fn req(mib: u64) -> Vec<ContainerRequest> {
        vec![ContainerRequest {
            name: "main".into(),
            count: 1,
            memory: Memory::Mib(mib),
            cores: 50,
            priority: 0,
            spill_mib: 0,
        }]
    }

    #[test]
    fn filter_prioritize_assign_and_release() {
        let mut c = Cluster::new();
        c.set_inventory("a", &inventory(1, 10_000));
        c.set_inventory("b", &inventory(1, 10_000));
        let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let (ok, failed) = c.filter(&req(6_000), &Policy::default(), &names);
        assert_eq!(ok, vec!["a", "b"]);
        assert!(failed["c"].contains("no gpupool inventory"));
        let a = c
            .assign("ns/p1", "a", &req(6_000), &Policy::default())
            .unwrap();
        assert_eq!(a.containers[0].devices[0].uuid, "GPU-0");
        // The same capacity is not given twice.
        let (ok, _) = c.filter(&req(6_000), &Policy::default(), &names);
        assert_eq!(ok, vec!["b"]);
        assert_eq!(
            c.assign("ns/p2", "a", &req(6_000), &Policy::default()),
            Err(AssignError::NoRoom {
                pod: "ns/p2".into(),
                node: "a".into()
            })
        );
        // Binpack prefers the node already in use for a pod that fits there.
        let scores = c.prioritize(&req(1_000), &Policy::default(), &names);
        assert!(scores[0].1 > scores[1].1, "{scores:?}");
        c.remove_pod("ns/p1");
        assert_eq!(
            c.filter(&req(6_000), &Policy::default(), &names).0,
            vec!["a", "b"]
        );
    }

    #[test]
    fn a_spill_allowance_travels_with_the_assignment_and_takes_no_card_memory() {
        let mut c = Cluster::new();
        let mut inv = inventory(1, 10_000);
        inv.spill_mib = Some(32_000);
        c.set_inventory("a", &inv);
        let mut spilling = req(6_000);
        spilling[0].spill_mib = 20_000;
        let a = c
            .assign("ns/p1", "a", &spilling, &Policy::default())
            .unwrap();
        assert_eq!(a.containers[0].devices[0].spill_mib, 20_000);
        let back: Assignment = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a, "spillMiB round-trips");
        // 4 000 MiB of the card are still free: the spill is host memory.
        assert!(c
            .assign("ns/p2", "a", &req(4_000), &Policy::default())
            .is_ok());
    }

    #[test]
    fn spill_is_bounded_by_the_host_memory_each_node_offers() {
        let mut c = Cluster::new();
        let names = vec!["small".to_string(), "big".to_string(), "old".to_string()];
        for (name, spill) in [
            ("small", Some(10_000)),
            ("big", Some(40_000)),
            ("old", None),
        ] {
            let mut inv = inventory(2, 10_000);
            inv.spill_mib = spill;
            c.set_inventory(name, &inv);
        }
        let mut spilling = req(2_000);
        spilling[0].spill_mib = 16_000;
        // Only the node offering enough host memory takes it; one that offers none (an agent
        // that does not say) takes no spill at all.
        let (ok, failed) = c.filter(&spilling, &Policy::default(), &names);
        assert_eq!(ok, vec!["big"]);
        assert!(failed["small"].contains("host memory"), "{failed:?}");
        assert!(failed["old"].contains("host memory"), "{failed:?}");
        c.assign("ns/p1", "big", &spilling, &Policy::default())
            .unwrap();
        c.assign("ns/p2", "big", &spilling, &Policy::default())
            .unwrap();
        // 32 000 of 40 000 MiB promised: a third is refused, at filter and at bind.
        let (ok, _) = c.filter(&spilling, &Policy::default(), &names);
        assert!(ok.is_empty(), "{ok:?}");
        let e = c
            .assign("ns/p3", "big", &spilling, &Policy::default())
            .unwrap_err();
        assert!(
            matches!(e, AssignError::NoSpillRoom { free_mib: 8000, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("8000 MiB"), "{e}");
        // A pod without spill still fits anywhere with room on the cards.
        let (ok, _) = c.filter(&req(2_000), &Policy::default(), &names);
        assert_eq!(ok, names);
        // A pod that ends gives its spill back; a new inventory keeps what pods hold.
        c.remove_pod("ns/p1");
        let mut inv = inventory(2, 10_000);
        inv.spill_mib = Some(40_000);
        c.set_inventory("big", &inv);
        assert_eq!(
            c.filter(&spilling, &Policy::default(), &names).0,
            vec!["big"]
        );
        c.assign("ns/p3", "big", &spilling, &Policy::default())
            .unwrap();
        assert!(c.filter(&spilling, &Policy::default(), &names).0.is_empty());
    }

    #[test]
    fn oversubscribed_promises_count_their_spill_against_the_node() {
        let mut c = Cluster::new();
        c.oversubscription = 2.0;
        let mut inv = inventory(1, 10_000);
        inv.spill_mib = Some(6_000);
        c.set_inventory("a", &inv);
        let names = vec!["a".to_string()];
        // 8 000 MiB promised on a 10 000 MiB card: 4 000 on the device, 4 000 spilled.
        let a = c
            .assign("ns/p1", "a", &req(8_000), &Policy::default())
            .unwrap();
        assert_eq!(a.containers[0].devices[0].memory_mib, 8_000);
        // The card could promise 12 000 MiB more, the host has 2 000 MiB of spill left.
        let (ok, failed) = c.filter(&req(8_000), &Policy::default(), &names);
        assert!(
            ok.is_empty() && failed["a"].contains("host memory"),
            "{failed:?}"
        );
        assert_eq!(c.filter(&req(4_000), &Policy::default(), &names).0, names);
    }

    #[test]
    fn large_candidate_lists_evaluate_in_parallel_with_the_same_answer() {
        let mut c = Cluster::new();
        let names: Vec<String> = (0..1200).map(|i| format!("n{i:04}")).collect();
        for (i, n) in names.iter().enumerate() {
            c.set_inventory(n, &inventory(1 + i % 3, 10_000));
            if i % 5 == 0 {
                c.assign(&format!("ns/p{i}"), n, &req(6_000), &Policy::default())
                    .unwrap();
            }
        }
        let mut all = names.clone();
        all.push("missing".into());
        let parallel = c.evaluate(&req(6_000), &Policy::default(), &all);
        let sequential = c.evaluate_part(&req(6_000), &Policy::default(), &all);
        assert_eq!(parallel, sequential);
        assert_eq!(parallel.verdicts.last(), Some(&Verdict::NoInventory));
        // Every known candidate's node gives its name back from the view; the unknown none.
        for (name, &node) in all.iter().zip(&parallel.nodes) {
            let known = (name != "missing").then_some(name.as_str());
            assert_eq!(c.node_name(node), known);
        }
        assert_eq!(parallel.nodes.last(), Some(&NO_NODE));
        let (fits, failed) = parallel.filter(&all);
        assert!(!fits.is_empty() && failed.len() > 1);
        assert_eq!(fits.len() + failed.len(), all.len());
    }

    #[test]
    fn inventories_that_change_size_keep_every_node_right_through_compaction() {
        // Nodes grow and shrink many times (their old cards become stale in the arena and
        // are compacted away); the view must equal one built from the final inventories.
        let names: Vec<String> = (0..40).map(|i| format!("n{i:02}")).collect();
        let mut c = Cluster::new();
        for round in 0..12 {
            for (i, n) in names.iter().enumerate() {
                c.set_inventory(n, &inventory(1 + (i + round) % 4, 10_000));
            }
            c.assign(
                &format!("ns/p{round}"),
                &names[round],
                &req(6_000),
                &Policy::default(),
            )
            .unwrap();
        }
        // 12 rounds appended about 1 200 cards; compaction keeps the arena near the 100 in use.
        assert!(
            c.cards.len() < 400,
            "not compacted: {} cards",
            c.cards.len()
        );
        assert!(
            c.stale * 2 <= c.cards.len(),
            "{} of {} stale",
            c.stale,
            c.cards.len()
        );
        let mut fresh = Cluster::new();
        for (i, n) in names.iter().enumerate() {
            fresh.set_inventory(n, &inventory(1 + (i + 11) % 4, 10_000));
        }
        for (key, p) in &c.pods {
            fresh.pods.insert(key.clone(), p.clone());
            fresh.charge(p, true);
        }
        let all: Vec<String> = names.iter().cloned().chain(["gone".into()]).collect();
        for mib in [1_000, 4_000, 6_000, 9_000] {
            let p = req(mib);
            assert_eq!(
                c.evaluate(&p, &Policy::default(), &all),
                fresh.evaluate(&p, &Policy::default(), &all),
                "{mib} MiB"
            );
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(
                c.cards_of(*c.nodes.get(n).unwrap()).len(),
                1 + (i + 11) % 4,
                "{n}"
            );
        }
    }

    #[test]
    fn a_new_inventory_keeps_the_pods_on_it() {
        let mut c = Cluster::new();
        c.set_inventory("a", &inventory(1, 10_000));
        c.assign("ns/p1", "a", &req(6_000), &Policy::default())
            .unwrap();
        c.set_inventory("a", &inventory(1, 10_000));
        assert!(c
            .assign("ns/p2", "a", &req(6_000), &Policy::default())
            .is_err());
        // A rebuilt scheduler replays the assignments it finds on pods.
        let mut rebuilt = Cluster::new();
        let a = c.pods["ns/p1"].clone();
        let ann = Assignment {
            version: VERSION,
            node: a.node.clone(),
            assigned_ns: None,
            containers: vec![AssignedContainer {
                name: "main".into(),
                devices: vec![AssignedDevice {
                    uuid: a.devices[0].0.clone(),
                    memory_mib: a.devices[0].1,
                    cores: a.devices[0].2,
                    priority: 0,
                    spill_mib: 0,
                }],
            }],
        };
        rebuilt.add_pod("ns/p1", &ann);
        rebuilt.set_inventory("a", &inventory(1, 10_000));
        assert!(rebuilt
            .assign("ns/p2", "a", &req(6_000), &Policy::default())
            .is_err());
    }
}
