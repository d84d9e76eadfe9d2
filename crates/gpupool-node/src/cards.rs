//! The node's cards as the agent sees them, where they come from (NVML, or the simulated
//! driver's NVML), and the vGPU slots the kubelet is told about.

use crate::proto;
use gpupool_sched::protocol::{CardInfo, Inventory, VERSION};

/// One physical card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// NVML index.
    pub index: u32,
    /// `GPU-…` UUID.
    pub uuid: String,
    /// Model name.
    pub model: String,
    /// Device memory, MiB.
    pub memory_mib: u64,
    /// Streaming multiprocessors (0 when unknown).
    pub sms: u32,
    /// NUMA node (-1 when unknown).
    pub numa: i32,
    /// False after an NVML failure or an XID error on this card.
    pub healthy: bool,
}

/// Where the agent reads its cards from; read again every health interval.
pub trait CardSource: Send + Sync + 'static {
    /// Every card of the node with its current health; `Err` when the source as a whole
    /// cannot be read (the agent then keeps its last view and marks every card unhealthy).
    fn cards(&self) -> Result<Vec<Card>, String>;

    /// Device memory per process and card, from the driver (for the audit); none by default.
    fn processes(&self) -> Result<Vec<crate::audit::ProcessMemory>, String> {
        Ok(Vec::new())
    }

    /// What a context costs on each card (UUID to bytes), as NVML counts it for a process that
    /// just created one; none by default.
    fn context_sizes(&self) -> Result<std::collections::BTreeMap<String, u64>, String> {
        Ok(Default::default())
    }
}

/// Separates a card's UUID from the slot number in a kubelet device ID.
const SLOT_SEPARATOR: &str = "::";

/// The kubelet device ID of slot `slot` of card `uuid`.
pub fn slot_id(uuid: &str, slot: u32) -> String {
    format!("{uuid}{SLOT_SEPARATOR}{slot}")
}

/// The card UUID of a kubelet device ID (`None` when it is not one of ours).
pub fn card_of_slot(id: &str) -> Option<&str> {
    let (uuid, slot) = id.rsplit_once(SLOT_SEPARATOR)?;
    (!uuid.is_empty() && slot.parse::<u32>().is_ok()).then_some(uuid)
}

/// The devices advertised through `ListAndWatch`: `split` slots per card, with the card's health
/// and NUMA node.
pub fn slots(cards: &[Card], split: u32) -> Vec<proto::Device> {
    cards
        .iter()
        .flat_map(|c| {
            (0..split).map(move |s| proto::Device {
                id: slot_id(&c.uuid, s),
                health: if c.healthy { "Healthy" } else { "Unhealthy" }.into(),
                topology: (c.numa >= 0).then(|| proto::TopologyInfo {
                    nodes: vec![proto::NumaNode { id: c.numa as i64 }],
                }),
            })
        })
        .collect()
}

/// The node's inventory annotation for these cards and `spill_mib` of host memory offered
/// for spill (`updated` is the caller's RFC 3339 time).
pub fn inventory(cards: &[Card], split: u32, spill_mib: u64, updated: String) -> Inventory {
    Inventory {
        version: VERSION,
        updated,
        spill_mib: Some(spill_mib),
        cards: cards
            .iter()
            .map(|c| CardInfo {
                uuid: c.uuid.clone(),
                model: c.model.clone(),
                memory_mib: c.memory_mib,
                sms: c.sms,
                numa: c.numa,
                healthy: c.healthy,
                slots: split,
                group: None,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(uuid: &str, healthy: bool) -> Card {
        Card {
            index: 0,
            uuid: uuid.into(),
            model: "NVIDIA H100 80GB HBM3".into(),
            memory_mib: 81559,
            sms: 132,
            numa: 1,
            healthy,
        }
    }

    #[test]
    fn slots_name_their_card_and_carry_its_health() {
        let s = slots(&[card("GPU-a", true), card("GPU-b", false)], 3);
        assert_eq!(s.len(), 6);
        assert_eq!(s[0].id, "GPU-a::0");
        assert_eq!(card_of_slot(&s[5].id), Some("GPU-b"));
        assert_eq!(s[5].health, "Unhealthy");
        assert_eq!(s[0].topology.as_ref().unwrap().nodes[0].id, 1);
        assert_eq!(card_of_slot("GPU-a"), None);
        assert_eq!(card_of_slot("GPU-a::x"), None);
        assert_eq!(card_of_slot("::1"), None);
    }

    #[test]
    fn inventory_round_trips_through_the_protocol() {
        let inv = inventory(
            &[card("GPU-a", true)],
            4,
            2048,
            "2026-11-26T00:00:00Z".into(),
        );
        let back = Inventory::parse(&inv.to_annotation()).unwrap();
        assert_eq!(back.cards[0].slots, 4);
        assert_eq!(back.cards[0].memory_mib, 81559);
        assert_eq!(back.spill_mib, Some(2048));
    }
}
