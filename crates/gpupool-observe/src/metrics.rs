//! Prometheus metrics from a snapshot (`gpupool exporter`): per card and per tenant and card.
//! Names, units and labels are documented in `docs/metrics.md`; the card and pod labels are
//! DCGM exporter's (`gpu`, `UUID`, `modelName`, `Hostname`, `namespace`, `pod`, `container`) so
//! that queries can join the two. Each scrape builds a fresh registry from a fresh snapshot
//! (nothing is kept between scrapes).

use crate::nvml::DeviceEntry;
use crate::snapshot::InfoSnapshot;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

type Labels = Vec<(String, String)>;
type GaugeF = Family<Labels, Gauge<f64, AtomicU64>>;
type CounterF = Family<Labels, Counter<f64, AtomicU64>>;

/// The metric families, registered once per scrape.
struct Families {
    card_memory_used: GaugeF,
    card_memory_total: GaugeF,
    card_utilization: GaugeF,
    card_healthy: GaugeF,
    card_processes: GaugeF,
    tenant_memory_used: GaugeF,
    tenant_memory_limit: GaugeF,
    tenant_memory_spilled: GaugeF,
    tenant_compute: GaugeF,
    tenant_compute_limit: GaugeF,
    tenant_compute_request: GaugeF,
    tenant_throttled: CounterF,
    tenant_denied: CounterF,
    tenant_processes: GaugeF,
    tenant_checkpoints: CounterF,
    tenant_checkpointed: GaugeF,
    container_over_limit: CounterF,
}

/// Registers a gauge family. `help` has no final period: the registry adds one.
fn gauge(r: &mut Registry, name: &str, help: &str, unit: Option<Unit>) -> GaugeF {
    let f = GaugeF::default();
    match unit {
        Some(u) => r.register_with_unit(name, help, u, f.clone()),
        None => r.register(name, help, f.clone()),
    }
    f
}

/// Registers a counter family. `help` has no final period: the registry adds one.
fn counter(r: &mut Registry, name: &str, help: &str, unit: Option<Unit>) -> CounterF {
    let f = CounterF::default();
    match unit {
        Some(u) => r.register_with_unit(name, help, u, f.clone()),
        None => r.register(name, help, f.clone()),
    }
    f
}

impl Families {
    fn register(r: &mut Registry) -> Families {
        use Unit::{Bytes, Seconds};
        let ratio = || Some(Unit::Other("ratio".into()));
        Families {
            card_memory_used: gauge(r, "gpupool_card_memory_used", "Device memory in use on the card (all processes, from NVML)", Some(Bytes)),
            card_memory_total: gauge(r, "gpupool_card_memory_total", "Device memory of the card", Some(Bytes)),
            card_utilization: gauge(r, "gpupool_card_utilization", "Share of recent time the card ran kernels (NVML)", ratio()),
            card_healthy: gauge(r, "gpupool_card_healthy", "1 when NVML answers for the card, else 0", None),
            card_processes: gauge(r, "gpupool_card_processes", "Processes with memory on the card", None),
            tenant_memory_used: gauge(r, "gpupool_tenant_memory_used", "Device memory the tenant's processes hold on the card, as the library counts it", Some(Bytes)),
            tenant_memory_limit: gauge(r, "gpupool_tenant_memory_limit", "The tenant's hard memory limit on the card", Some(Bytes)),
            tenant_memory_spilled: gauge(r, "gpupool_tenant_memory_spilled", "Host memory standing in for the tenant's device memory past its limit on the card (spill)", Some(Bytes)),
            tenant_compute: gauge(r, "gpupool_tenant_compute", "Share of the card's time the tenant's kernels ran recently (NVML process samples)", ratio()),
            tenant_compute_limit: gauge(r, "gpupool_tenant_compute_limit", "The tenant's compute cap on the card", ratio()),
            tenant_compute_request: gauge(r, "gpupool_tenant_compute_request", "The tenant's guaranteed compute share on the card", ratio()),
            tenant_throttled: counter(r, "gpupool_tenant_throttled", "Time the tenant's launches waited for their turn under the compute limit", Some(Seconds)),
            tenant_denied: counter(r, "gpupool_tenant_allocations_denied", "Allocations refused because of the memory limit", None),
            tenant_processes: gauge(r, "gpupool_tenant_processes", "Live processes of the tenant", None),
            tenant_checkpoints: counter(r, "gpupool_tenant_checkpoints", "Times one of the tenant's idle processes was checkpointed to make room on a full card", None),
            tenant_checkpointed: gauge(r, "gpupool_tenant_checkpointed_processes", "The tenant's processes now checkpointed (device memory on the host until their next CUDA call)", None),
            container_over_limit: counter(r, "gpupool_container_over_limit", "Audit rounds (node agent) in which NVML showed the container's processes above its memory limit on the card", None),
        }
    }
}

fn pair(k: &str, v: impl ToString) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// The labels of a card, as DCGM exporter names them.
fn card_labels(d: &DeviceEntry, host: &str) -> Labels {
    vec![
        pair("gpu", d.index),
        pair("UUID", &d.uuid),
        pair("modelName", &d.name),
        pair("Hostname", host),
    ]
}

/// The labels of the card `uuid`: what the snapshot knows of it (a card NVML does not list
/// has its UUID only).
fn card_labels_of(snap: &InfoSnapshot, uuid: &str, host: &str) -> Labels {
    match snap.devices.iter().find(|d| d.uuid == uuid) {
        Some(d) => card_labels(d, host),
        None => vec![pair("UUID", uuid), pair("Hostname", host)],
    }
}

/// The snapshot in the Prometheus / OpenMetrics text format; `host` is the `Hostname` label
/// (the node's name under the node agent).
pub fn render(snap: &InfoSnapshot, host: &str) -> String {
    let mut registry = Registry::default();
    let f = Families::register(&mut registry);
    // A card NVML cannot read has only its health (0): no name, UUID or values to show.
    for d in snap.devices.iter().filter(|d| d.error.is_some()) {
        let l = vec![
            pair("gpu", d.index),
            pair("UUID", ""),
            pair("modelName", ""),
            pair("Hostname", host),
        ];
        f.card_healthy.get_or_create(&l).set(0.0);
    }
    for d in snap.devices.iter().filter(|d| d.error.is_none()) {
        let l = card_labels(d, host);
        f.card_memory_used
            .get_or_create(&l)
            .set(d.used_bytes as f64);
        f.card_memory_total
            .get_or_create(&l)
            .set(d.total_bytes as f64);
        if let Some(u) = d.utilization_percent {
            f.card_utilization.get_or_create(&l).set(u as f64 / 100.0);
        }
        f.card_healthy.get_or_create(&l).set(1.0);
        f.card_processes
            .get_or_create(&l)
            .set(d.processes.len() as f64);
    }
    for t in &snap.tenants {
        let mut tl = vec![pair("tenant", &t.name), pair("Hostname", host)];
        if let Some(o) = &t.owner {
            tl.push(pair("namespace", &o.namespace));
            tl.push(pair("pod", &o.pod));
            tl.push(pair("container", &o.container));
        }
        f.tenant_checkpoints
            .get_or_create(&tl)
            .inc_by(t.checkpoints as f64);
        f.tenant_checkpointed
            .get_or_create(&tl)
            .set(t.checkpointed_pids.len() as f64);
        for td in &t.devices {
            let mut l = card_labels_of(snap, &td.uuid, host);
            l.extend(tl.iter().filter(|(k, _)| k != "Hostname").cloned());
            f.tenant_memory_used
                .get_or_create(&l)
                .set(td.used_bytes as f64);
            if let Some(limit) = td.limit_bytes {
                f.tenant_memory_limit.get_or_create(&l).set(limit as f64);
            }
            f.tenant_memory_spilled
                .get_or_create(&l)
                .set(td.spilled_bytes as f64);
            if let Some(c) = td.compute_percent {
                f.tenant_compute.get_or_create(&l).set(c as f64 / 100.0);
            }
            if let Some(c) = td.compute_limit_percent {
                f.tenant_compute_limit
                    .get_or_create(&l)
                    .set(c as f64 / 100.0);
            }
            if let Some(c) = td.compute_request_percent {
                f.tenant_compute_request
                    .get_or_create(&l)
                    .set(c as f64 / 100.0);
            }
            f.tenant_throttled
                .get_or_create(&l)
                .inc_by(td.throttled_ms as f64 / 1000.0);
            f.tenant_denied.get_or_create(&l).inc_by(td.denied as f64);
            f.tenant_processes
                .get_or_create(&l)
                .set(t.pids.len() as f64);
        }
    }
    for o in &snap.over_limit {
        let mut l = card_labels_of(snap, &o.uuid, host);
        l.push(pair("namespace", &o.owner.namespace));
        l.push(pair("pod", &o.owner.pod));
        l.push(pair("container", &o.owner.container));
        f.container_over_limit
            .get_or_create(&l)
            .inc_by(o.rounds as f64);
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

/// This machine's host name (the `Hostname` label of `gpupool exporter`).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer and its length are ours; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match rc {
        0 => String::from_utf8_lossy(&buf[..end]).into_owned(),
        _ => "localhost".to_string(),
    }
}
