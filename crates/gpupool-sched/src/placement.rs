//! Which cards of a node every container of a pod gets.
//!
//! Memory and cores are never over-committed on a card (memory may be oversubscribed by a
//! configured factor), a card's vGPU slots are respected, every vGPU of a container is on a
//! different card, unhealthy cards and cards excluded by the pod's selectors are never used.
//! Containers are placed one after another (largest first); each picks its cards by the pod's
//! card policy (binpack: fullest first; spread: emptiest first), from one NUMA node when the pod
//! asks for it, and from one interconnect group when one can hold them all.

use crate::protocol::CardInfo;
use crate::request::{ContainerRequest, Packing, Policy};
use std::sync::Arc;

/// A card and what is already placed on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardState {
    /// The card (shared: copies of a node's state for trial placements are cheap).
    pub info: Arc<CardInfo>,
    /// Memory given out, MiB.
    pub used_mib: u64,
    /// Cores given out, percent.
    pub used_cores: u32,
    /// vGPUs on it.
    pub used_slots: u32,
    /// The interconnect group as a number (0: none), compared instead of the name when many
    /// nodes are scored.
    group_key: u64,
    /// Copies of the fields every fit test reads, kept beside the usage so that scoring
    /// thousands of nodes does not chase each card's shared `info`.
    hot: Hot,
}

/// The card facts read on every fit test (copied from [`CardInfo`]).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Hot {
    memory_mib: u64,
    /// `1 / memory_mib` (1 for a card reporting none): loads are computed for every card of
    /// thousands of nodes per call, a multiplication is cheaper than a division.
    per_mib: f64,
    slots: u32,
    healthy: bool,
    numa: i32,
}

// `per_mib` is `1 / memory_mib` of a whole number at least 1: never NaN, so equality is one.
impl Eq for Hot {}

impl CardState {
    /// An empty card.
    pub fn new(info: CardInfo) -> CardState {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let group_key = info.group.as_deref().map_or(0, |g| {
            BuildHasherDefault::<DefaultHasher>::default().hash_one(g) | 1
        });
        let hot = Hot {
            memory_mib: info.memory_mib,
            per_mib: 1.0 / info.memory_mib.max(1) as f64,
            slots: info.slots,
            healthy: info.healthy,
            numa: info.numa,
        };
        CardState {
            hot,
            info: Arc::new(info),
            used_mib: 0,
            used_cores: 0,
            used_slots: 0,
            group_key,
        }
    }

    fn memory_cap(&self, oversubscription: f64) -> u64 {
        (self.hot.memory_mib as f64 * oversubscription.max(1.0)) as u64
    }

    /// Whether one vGPU of `r` fits. A vGPU of 100 cores has the card to itself (no other vGPU
    /// before or after it, as in HAMi); one of 0 cores reserves no compute.
    pub fn fits(&self, r: &ContainerRequest, oversubscription: f64) -> bool {
        self.hot.healthy
            && self.used_slots < self.hot.slots
            && self.used_cores + r.cores <= 100
            && self.used_cores < 100
            && !(r.cores >= 100 && self.used_slots > 0)
            && self.used_mib + r.memory_on(self.hot.memory_mib) <= self.memory_cap(oversubscription)
    }

    /// Whether the pod's selectors allow it.
    pub fn allowed(&self, p: &Policy) -> bool {
        if !p.has_selectors() {
            // The common case: nothing to read from the shared `info` (a cache miss per card).
            return true;
        }
        let model = &self.info.model;
        let uuid = &self.info.uuid;
        (p.use_types.is_empty() || p.use_types.iter().any(|t| model.contains(t.as_str())))
            && !p.avoid_types.iter().any(|t| model.contains(t.as_str()))
            && (p.use_uuids.is_empty() || p.use_uuids.contains(uuid))
            && !p.avoid_uuids.contains(uuid)
    }

    /// How full it is, 0..=1 (the larger of memory and cores).
    pub fn load(&self) -> f64 {
        self.load_with(self.used_mib, self.used_cores)
    }

    /// How full it would be with `mib` and `cores` given out.
    fn load_with(&self, mib: u64, cores: u32) -> f64 {
        let mem = mib as f64 * self.hot.per_mib;
        (mem.max(cores as f64 * 0.01)).min(1.0)
    }

    fn take(&mut self, r: &ContainerRequest) -> u64 {
        let mib = r.memory_on(self.hot.memory_mib);
        self.used_mib += mib;
        self.used_cores += r.cores;
        self.used_slots += 1;
        mib
    }
}

/// A vGPU chosen for a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// Index of the card in the node's list.
    pub card: usize,
    /// Memory given, MiB.
    pub memory_mib: u64,
    /// Cores given, percent.
    pub cores: u32,
}

/// Places every container of a pod on `cards`; `None` if it does not fit. On success `cards`
/// is left as it would be with the pod placed, and the picks are in `pod`'s order; on failure
/// `cards` is unchanged.
pub fn place(
    cards: &mut [CardState],
    pod: &[ContainerRequest],
    policy: &Policy,
    oversubscription: f64,
) -> Option<Vec<Vec<Pick>>> {
    let before = cards.to_vec();
    let picks = try_place(cards, pod, policy, oversubscription);
    if picks.is_none() {
        cards.clone_from_slice(&before);
    }
    picks
}

/// [`place`] on a scratch copy: on failure `cards` is left part-way.
pub fn try_place(
    cards: &mut [CardState],
    pod: &[ContainerRequest],
    policy: &Policy,
    oversubscription: f64,
) -> Option<Vec<Vec<Pick>>> {
    if let [one] = pod {
        return Some(vec![place_container(cards, one, policy, oversubscription)?]);
    }
    let mut order: Vec<usize> = (0..pod.len()).collect();
    // Largest first: the hardest to fit.
    order.sort_by_key(|&i| {
        std::cmp::Reverse((
            pod[i].count,
            pod[i].cores,
            pod[i].memory_on(u32::MAX as u64),
        ))
    });
    let mut picks = vec![Vec::new(); pod.len()];
    for i in order {
        picks[i] = place_container(cards, &pod[i], policy, oversubscription)?;
    }
    Some(picks)
}

fn place_container(
    cards: &mut [CardState],
    r: &ContainerRequest,
    policy: &Policy,
    over: f64,
) -> Option<Vec<Pick>> {
    let mut scratch = Scratch::default();
    let chosen = choose(cards, r, policy, over, &mut scratch)?.to_vec();
    Some(
        chosen
            .into_iter()
            .map(|i| Pick {
                card: i,
                memory_mib: cards[i].take(r),
                cores: r.cores,
            })
            .collect(),
    )
}

/// Buffers for choosing cards, kept between calls so that scoring thousands of nodes
/// allocates nothing once they have grown.
#[derive(Debug, Default)]
pub struct Scratch {
    usable: Vec<usize>,
    members: Vec<usize>,
    chosen: Vec<usize>,
    loads: Vec<f64>,
}

/// The node score a one-container request (any vGPU count) would give `cards` if placed,
/// without changing them (the common case of `filter` / `prioritize`); `None` if it does not
/// fit. The same cards as [`place`] chooses, so the same score as [`place`] then [`score`].
pub fn score_single(
    cards: &[CardState],
    r: &ContainerRequest,
    policy: &Policy,
    oversubscription: f64,
    scratch: &mut Scratch,
) -> Option<i64> {
    choose(cards, r, policy, oversubscription, scratch)?;
    let Scratch { chosen, loads, .. } = scratch;
    // `choose` left every card's load in `loads`: only the picked cards' change.
    for &i in chosen.iter() {
        let c = &cards[i];
        loads[i] = c.load_with(
            c.used_mib + r.memory_on(c.hot.memory_mib),
            c.used_cores + r.cores,
        );
    }
    let total: f64 = loads.iter().sum();
    Some(node_score(total / cards.len() as f64, policy))
}

/// The cards one container gets: the usable ones (fitting, allowed), grouped by NUMA node
/// (required with `policy.numa`) or interconnect group (preferred) for several vGPUs, ordered
/// by the card packing (binpack: fuller first; spread: emptier first; then by index); among
/// groups holding enough, the one whose picks the packing prefers. Written to `scratch`.
fn choose<'s>(
    cards: &[CardState],
    r: &ContainerRequest,
    policy: &Policy,
    oversubscription: f64,
    scratch: &'s mut Scratch,
) -> Option<&'s [usize]> {
    let Scratch {
        usable,
        members,
        chosen,
        loads,
    } = scratch;
    let count = r.count as usize;
    usable.clear();
    loads.clear();
    for (i, c) in cards.iter().enumerate() {
        // Every card's, computed once: the order below compares them many times and
        // `score_single` sums them.
        loads.push(c.load());
        if c.fits(r, oversubscription) && c.allowed(policy) {
            usable.push(i);
        }
    }
    if usable.len() < count {
        return None;
    }
    let by_policy = |a: &usize, b: &usize| {
        let c = match policy.gpu {
            Packing::Binpack => loads[*b].total_cmp(&loads[*a]),
            Packing::Spread => loads[*a].total_cmp(&loads[*b]),
        };
        c.then(a.cmp(b))
    };
    chosen.clear();
    if count == 1 {
        // One vGPU: the best usable card, no groups.
        chosen.push(usable.iter().copied().min_by(by_policy)?);
        return Some(chosen);
    }
    let numa = policy.numa && count > 1;
    let same_group = |a: usize, b: usize| {
        if numa {
            cards[a].hot.numa == cards[b].hot.numa
        } else {
            cards[a].group_key == cards[b].group_key
        }
    };
    let load_of = |picks: &[usize]| picks.iter().map(|&i| loads[i]).sum::<f64>();
    for (pos, &first) in usable.iter().enumerate() {
        // Each group once, in the order its first card appears.
        if usable[..pos].iter().any(|&e| same_group(e, first)) {
            continue;
        }
        members.clear();
        members.extend(usable.iter().copied().filter(|&i| same_group(i, first)));
        if members.len() < count {
            continue;
        }
        members.sort_by(by_policy);
        let better = chosen.is_empty()
            || match policy.gpu {
                Packing::Binpack => load_of(&members[..count]) > load_of(chosen),
                Packing::Spread => load_of(&members[..count]) < load_of(chosen),
            };
        if better {
            chosen.clear();
            chosen.extend_from_slice(&members[..count]);
        }
    }
    if chosen.is_empty() {
        if numa {
            return None;
        }
        usable.sort_by(by_policy);
        chosen.extend_from_slice(&usable[..count]);
    }
    Some(chosen)
}

fn node_score(load: f64, policy: &Policy) -> i64 {
    let s = match policy.node {
        Packing::Binpack => load,
        Packing::Spread => 1.0 - load,
    };
    (s * 10.0).round().clamp(0.0, 10.0) as i64
}

/// How much the pod's node policy likes a node with these cards (after placing the pod),
/// 0..=10 as kube-scheduler extenders score.
pub fn score(cards: &[CardState], policy: &Policy) -> i64 {
    if cards.is_empty() {
        return 0;
    }
    let load = cards.iter().map(CardState::load).sum::<f64>() / cards.len() as f64;
    node_score(load, policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Memory;
    use proptest::prelude::*;

    fn card(i: usize, model: &str, mib: u64, numa: i32, group: Option<&str>) -> CardState {
        CardState::new(CardInfo {
            uuid: format!("GPU-{i}"),
            model: model.into(),
            memory_mib: mib,
            sms: 132,
            numa,
            healthy: true,
            slots: 4,
            group: group.map(String::from),
        })
    }

    fn req(count: u32, mib: u64, cores: u32) -> ContainerRequest {
        ContainerRequest {
            name: "c".into(),
            count,
            memory: Memory::Mib(mib),
            cores,
            priority: 0,
            spill_mib: 0,
        }
    }

    #[test]
    fn binpack_fills_a_card_spread_uses_the_emptiest() {
        let mut cards = vec![
            card(0, "H100", 80_000, 0, None),
            card(1, "H100", 80_000, 0, None),
        ];
        cards[1].used_mib = 40_000;
        let mut bp = cards.clone();
        let p = place(&mut bp, &[req(1, 10_000, 10)], &Policy::default(), 1.0).unwrap();
        assert_eq!(p[0][0].card, 1, "binpack: the fuller card");
        let spread = Policy {
            gpu: Packing::Spread,
            ..Policy::default()
        };
        let p = place(&mut cards, &[req(1, 10_000, 10)], &spread, 1.0).unwrap();
        assert_eq!(p[0][0].card, 0, "spread: the emptier card");
    }

    #[test]
    fn zero_cores_share_a_card_and_a_hundred_take_it_alone() {
        let mut cards = vec![card(0, "H100", 80_000, 0, None)];
        let p = Policy::default();
        // Pods that ask memory only (0 cores) share the card without reserving compute.
        for _ in 0..3 {
            place(&mut cards, &[req(1, 10_000, 0)], &p, 1.0).unwrap();
        }
        assert_eq!((cards[0].used_slots, cards[0].used_cores), (3, 0));
        // 100 cores wants the card to itself: not on a shared card.
        assert!(place(&mut cards, &[req(1, 1_000, 100)], &p, 1.0).is_none());
        let mut empty = vec![card(1, "H100", 80_000, 0, None)];
        place(&mut empty, &[req(1, 1_000, 100)], &p, 1.0).unwrap();
        // ... and once it has it, nothing joins, not even a pod of 0 cores.
        assert!(place(&mut empty, &[req(1, 1_000, 0)], &p, 1.0).is_none());
        assert_eq!(empty[0].used_slots, 1);
    }

    #[test]
    fn nothing_is_over_committed_and_a_failed_pod_changes_nothing() {
        let mut cards = vec![card(0, "H100", 80_000, 0, None)];
        assert!(place(&mut cards, &[req(1, 60_000, 50)], &Policy::default(), 1.0).is_some());
        let before = cards.clone();
        assert!(place(&mut cards, &[req(1, 30_000, 10)], &Policy::default(), 1.0).is_none());
        assert!(place(&mut cards, &[req(1, 1_000, 60)], &Policy::default(), 1.0).is_none());
        assert_eq!(cards, before);
        assert!(
            place(&mut cards, &[req(1, 30_000, 10)], &Policy::default(), 1.5).is_some(),
            "oversubscription"
        );
        let mut two = vec![card(0, "H100", 80_000, 0, None)];
        assert!(
            place(&mut two, &[req(2, 1, 1)], &Policy::default(), 1.0).is_none(),
            "two vGPUs need two cards"
        );
    }

    #[test]
    fn numa_and_groups() {
        let mut cards = vec![
            card(0, "H100", 80_000, 0, Some("a")),
            card(1, "H100", 80_000, 1, Some("b")),
            card(2, "H100", 80_000, 1, Some("b")),
            card(3, "H100", 80_000, 0, Some("c")),
        ];
        let numa = Policy {
            numa: true,
            ..Policy::default()
        };
        let p = place(&mut cards.clone(), &[req(2, 1_000, 10)], &numa, 1.0).unwrap();
        let nodes: Vec<i32> = p[0].iter().map(|k| cards[k.card].info.numa).collect();
        assert_eq!(nodes[0], nodes[1]);
        let p = place(
            &mut cards.clone(),
            &[req(2, 1_000, 10)],
            &Policy::default(),
            1.0,
        )
        .unwrap();
        let mut got: Vec<usize> = p[0].iter().map(|k| k.card).collect();
        got.sort();
        assert_eq!(got, vec![1, 2], "the only group holding both");
        let mut sick = (*cards[1].info).clone();
        sick.healthy = false;
        cards[1] = CardState::new(sick);
        assert!(place(&mut cards.clone(), &[req(3, 1_000, 10)], &numa, 1.0).is_none());
    }

    #[test]
    fn selectors() {
        let cards = vec![
            card(0, "NVIDIA H100", 80_000, 0, None),
            card(1, "Tesla T4", 15_000, 0, None),
        ];
        let t4 = Policy {
            use_types: vec!["T4".into()],
            ..Policy::default()
        };
        let p = place(&mut cards.clone(), &[req(1, 1_000, 10)], &t4, 1.0).unwrap();
        assert_eq!(p[0][0].card, 1);
        let not0 = Policy {
            avoid_uuids: vec!["GPU-0".into()],
            ..Policy::default()
        };
        assert_eq!(
            place(&mut cards.clone(), &[req(1, 1_000, 10)], &not0, 1.0).unwrap()[0][0].card,
            1
        );
    }

    #[test]
    fn node_scores_follow_the_policy() {
        let mut full = vec![card(0, "H100", 100, 0, None)];
        full[0].used_mib = 90;
        let empty = vec![card(0, "H100", 100, 0, None)];
        let bp = Policy::default();
        let sp = Policy {
            node: Packing::Spread,
            ..Policy::default()
        };
        assert!(score(&full, &bp) > score(&empty, &bp));
        assert!(score(&full, &sp) < score(&empty, &sp));
    }

    fn arb_card() -> impl Strategy<Value = CardState> {
        (1u64..100_000, 0i32..2, 1u32..8, any::<bool>(), 0u8..4).prop_map(
            |(mib, numa, slots, healthy, g)| {
                let group = ["x", "y", "z"].get(g as usize).copied();
                let mut info = (*card(0, "H100", mib, numa, group).info).clone();
                info.slots = slots;
                info.healthy = healthy || g == 0;
                CardState::new(info)
            },
        )
    }

    fn arb_req() -> impl Strategy<Value = ContainerRequest> {
        (
            1u32..4,
            prop_oneof![
                (1u64..50_000).prop_map(Memory::Mib),
                (1u32..100).prop_map(Memory::Percent),
                Just(Memory::Whole)
            ],
            1u32..101,
        )
            .prop_map(|(count, memory, cores)| ContainerRequest {
                name: "c".into(),
                count,
                memory,
                cores,
                priority: 0,
                spill_mib: 0,
            })
    }

    proptest! {
        #[test]
        fn the_one_container_shortcut_scores_like_a_placement(
            cards in proptest::collection::vec(arb_card(), 1..10),
            r in arb_req(),
            spread in any::<bool>(),
            numa in any::<bool>(),
            used in proptest::collection::vec((0u64..60_000, 0u32..90), 10),
        ) {
            let mut cards = cards;
            for (c, (mib, cores)) in cards.iter_mut().zip(used) {
                c.used_mib = mib.min(c.info.memory_mib);
                c.used_cores = cores;
            }
            let policy = Policy {
                gpu: if spread { Packing::Spread } else { Packing::Binpack },
                node: if spread { Packing::Binpack } else { Packing::Spread },
                numa,
                ..Policy::default()
            };
            let mut placed = cards.clone();
            let picks = place(&mut placed, std::slice::from_ref(&r), &policy, 1.0);
            let full = picks.as_ref().map(|_| score(&placed, &policy));
            let mut scratch = Scratch::default();
            prop_assert_eq!(score_single(&cards, &r, &policy, 1.0, &mut scratch), full);
            let fast = choose(&cards, &r, &policy, 1.0, &mut scratch).map(<[usize]>::to_vec);
            let slow = picks.map(|p| p[0].iter().map(|k| k.card).collect::<Vec<_>>());
            prop_assert_eq!(fast, slow, "the same cards");
        }

        #[test]
        fn streams_of_pods_never_over_commit_a_card_and_follow_the_policy(
            cards in proptest::collection::vec(arb_card(), 1..8),
            pods in proptest::collection::vec(proptest::collection::vec(arb_req(), 1..3), 1..30),
            spread in any::<bool>(),
            numa in any::<bool>(),
        ) {
            let mut cards: Vec<CardState> = cards
                .into_iter()
                .enumerate()
                .map(|(i, mut c)| { Arc::make_mut(&mut c.info).uuid = format!("GPU-{i}"); c })
                .collect();
            let policy = Policy {
                gpu: if spread { Packing::Spread } else { Packing::Binpack },
                numa,
                ..Policy::default()
            };
            for pod in &pods {
                let before = cards.clone();
                match place(&mut cards, pod, &policy, 1.0) {
                    Some(picks) => {
                        for (r, p) in pod.iter().zip(&picks) {
                            prop_assert_eq!(p.len(), r.count as usize);
                            let mut idx: Vec<usize> = p.iter().map(|k| k.card).collect();
                            idx.sort();
                            idx.dedup();
                            prop_assert_eq!(idx.len(), p.len(), "distinct cards");
                            for k in p {
                                prop_assert!(before[k.card].info.healthy);
                                prop_assert_eq!(k.memory_mib, r.memory_on(before[k.card].info.memory_mib));
                            }
                            if pod.len() == 1 && r.count == 1 {
                                // Policy order: no usable card was preferable to the pick.
                                let k = p[0].card;
                                for (j, c) in before.iter().enumerate() {
                                    if j == k || !c.fits(r, 1.0) || !c.allowed(&policy) {
                                        continue;
                                    }
                                    if spread {
                                        prop_assert!(c.load() >= before[k].load(), "spread took a fuller card");
                                    } else {
                                        prop_assert!(c.load() <= before[k].load(), "binpack took an emptier card");
                                    }
                                }
                            }
                            if numa && r.count > 1 {
                                let n0 = before[p[0].card].info.numa;
                                prop_assert!(p.iter().all(|k| before[k.card].info.numa == n0));
                            }
                        }
                    }
                    None => prop_assert_eq!(&cards, &before),
                }
                for c in &cards {
                    prop_assert!(c.used_mib <= c.info.memory_mib);
                    prop_assert!(c.used_cores <= 100);
                    prop_assert!(c.used_slots <= c.info.slots);
                }
            }
        }
    }
}
