//! What a container gets from `Allocate`: its tenant folder (region, `owner.json`), its limits
//! file (mounted read-only where the library trusts it), the library and an `ld.so.preload`
//! mounted over the image's, and the env naming its cards.

use crate::config::NodeConfig;
use crate::error::{NodeError, Result};
use crate::matching::Match;
use crate::proto;
use crate::store::Allocation;
use gpupool_config::limits::{parse_gpu_uuid, DEFAULT_LIMITS_FILE};
use gpupool_config::{DeviceLimits, LimitsFile};
use std::collections::HashMap;
use std::path::Path;

/// Where the library is mounted in containers.
pub const CONTAINER_LIBRARY: &str = "/usr/local/gpupool/lib/libgpupool.so";
/// The preload list mounted over the container's.
pub const CONTAINER_PRELOAD: &str = "/etc/ld.so.preload";
/// The tenant folder (its accounting region) in the container.
pub const CONTAINER_TENANT: &str = "/run/gpupool/tenant";
/// The node's card coordination folder in the container (read-only; the container's own
/// folder in it is mounted read-write).
pub const CONTAINER_CARDS: &str = "/run/gpupool/cards";

/// A container's name on the node: its tenant folder, limits file and card folder
/// (`k8s-<pod uid>-<container>`).
pub fn tenant_name(pod_uid: &str, container: &str) -> String {
    format!("k8s-{pod_uid}-{container}")
}

/// The container's own folder in the node's card folder.
pub fn card_folder(config: &NodeConfig, a: &Allocation) -> std::path::PathBuf {
    let name = a.tenant_dir.file_name().unwrap_or_default();
    config.cards_dir().join(name)
}

/// Writes each card's grants file (what every container allocated there may request): the
/// library caps every tenant's published request and limit at it, and ignores tenants without
/// a grant. Cards without containers lose theirs.
pub fn write_grants<'a>(
    config: &NodeConfig,
    allocations: impl Iterator<Item = &'a Allocation>,
) -> Result<()> {
    use gpupool_region::card_peers::{grants_path, grants_text, Grant};
    let mut per_card: std::collections::BTreeMap<String, Vec<(String, Grant)>> = Default::default();
    for a in allocations {
        let name = a
            .tenant_dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for d in &a.devices {
            per_card.entry(d.uuid.clone()).or_default().push((
                name.clone(),
                Grant {
                    request: d.cores.min(100),
                    limit: d.compute_cap().unwrap_or(100),
                    low: d.priority > 0,
                },
            ));
        }
    }
    let dir = config.cards_dir();
    std::fs::create_dir_all(&dir).map_err(|e| NodeError::file("card folder", &dir, e))?;
    if let Ok(list) = std::fs::read_dir(&dir) {
        for item in list.flatten() {
            let file = item.file_name().to_string_lossy().into_owned();
            if let Some(uuid) = file.strip_suffix(".grants") {
                if !per_card.contains_key(uuid) {
                    let _ = std::fs::remove_file(item.path());
                }
            }
        }
    }
    for (uuid, grants) in per_card {
        write(
            "grants file",
            &grants_path(&dir, &uuid),
            &grants_text(&grants),
        )?;
    }
    Ok(())
}

pub use gpupool_sched::request::split_promise;

/// The limits file's text for a container's devices, keyed by card UUID (a container that
/// reorders `CUDA_VISIBLE_DEVICES` cannot swap its cards' limits; an identifier that is not a
/// card UUID falls back to its CUDA ordinal in assignment order). Under memory
/// oversubscription each promise is split into a device limit and a spill allowance.
pub fn limits_text(
    m: &Match,
    context_memory: u64,
    oversubscription: f64,
    room_wait_ns: u64,
) -> String {
    let devices = m
        .container
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let (memory_mib, over) = split_promise(d.memory_mib, oversubscription);
            DeviceLimits {
                key: match parse_gpu_uuid(&d.uuid) {
                    Some(_) => d.uuid.clone(),
                    None => i.to_string(),
                },
                memory_mib,
                spill_mib: over.saturating_add(d.spill_mib),
                compute: d.compute_cap(),
            }
        })
        .collect();
    LimitsFile {
        comment: format!(
            "written by gpupool node for pod {}/{} container {}; do not edit",
            m.namespace, m.pod, m.container.name
        ),
        region: Some(format!("{CONTAINER_TENANT}/region").into()),
        card_dir: Some(CONTAINER_CARDS.into()),
        card_tenant: Some(tenant_name(&m.uid, &m.container.name)),
        context_memory,
        devices,
        low_priority: m.container.devices.iter().any(|d| d.priority > 0),
        room_wait_ns,
    }
    .to_text()
}

pub use gpupool_observe::snapshot::owner_file;

fn write(what: &'static str, path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| NodeError::file(what, path, e))
}

/// Creates the container's tenant folder and limits file on the host; returns its record.
pub fn prepare(config: &NodeConfig, m: &Match, device_ids: &[String]) -> Result<Allocation> {
    let name = tenant_name(&m.uid, &m.container.name);
    let tenant_dir = config.tenants_dir().join(&name);
    let limits_dir = config.state_dir.join("limits");
    for dir in [&tenant_dir, &limits_dir, &config.cards_dir().join(&name)] {
        std::fs::create_dir_all(dir).map_err(|e| NodeError::file("tenant folder", dir, e))?;
    }
    let owner = serde_json::json!({
        "namespace": m.namespace, "pod": m.pod, "container": m.container.name,
    });
    // Beside the tenant folder, never in it: the container writes there.
    write("owner record", &owner_file(&tenant_dir), &owner.to_string())?;
    let limits_file = limits_dir.join(format!("{name}.conf"));
    write(
        "limits file",
        &limits_file,
        &limits_text(
            m,
            config.context_memory,
            config.memory_oversubscription,
            config.room_wait_ns(),
        ),
    )?;
    let preload = config.preload_file();
    write("preload file", &preload, &format!("{CONTAINER_LIBRARY}\n"))?;
    Ok(Allocation {
        pod_uid: m.uid.clone(),
        namespace: m.namespace.clone(),
        pod: m.pod.clone(),
        container: m.container.name.clone(),
        device_ids: device_ids.to_vec(),
        devices: m.container.devices.clone(),
        tenant_dir,
        limits_file,
    })
}

fn mount(container: &str, host: &Path, read_only: bool) -> proto::Mount {
    proto::Mount {
        container_path: container.into(),
        host_path: host.display().to_string(),
        read_only,
    }
}

/// The kubelet's answer for one allocated container.
pub fn response(config: &NodeConfig, a: &Allocation) -> proto::ContainerAllocateResponse {
    let uuids: Vec<&str> = a.devices.iter().map(|d| d.uuid.as_str()).collect();
    let list = uuids.join(",");
    let mut envs = HashMap::new();
    // The container toolkit exposes these cards; CUDA numbers them in this order.
    envs.insert("NVIDIA_VISIBLE_DEVICES".to_string(), list.clone());
    envs.insert("CUDA_VISIBLE_DEVICES".to_string(), list);
    envs.insert(
        "GPUPOOL_TENANT".to_string(),
        format!("{}/{}/{}", a.namespace, a.pod, a.container),
    );
    let mounts = vec![
        mount(CONTAINER_LIBRARY, &config.library, true),
        mount(CONTAINER_PRELOAD, &config.preload_file(), true),
        mount(DEFAULT_LIMITS_FILE, &a.limits_file, true),
        mount(CONTAINER_TENANT, &a.tenant_dir, false),
        // The node's card folder read-only, the container's own folder in it read-write (the
        // runtime mounts the parent first): a tenant writes only its own card files.
        mount(CONTAINER_CARDS, &config.cards_dir(), true),
        mount(
            &format!(
                "{CONTAINER_CARDS}/{}",
                a.tenant_dir
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
            ),
            &card_folder(config, a),
            false,
        ),
    ];
    let cdi_devices = if config.cdi {
        uuids
            .iter()
            .map(|u| proto::CdiDevice {
                name: format!("{}/gpu={u}", config.resource_domain),
            })
            .collect()
    } else {
        Vec::new()
    };
    proto::ContainerAllocateResponse {
        envs,
        mounts,
        devices: Vec::new(),
        annotations: HashMap::new(),
        cdi_devices,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpupool_config::limits::MemoryLimit;
    use gpupool_sched::protocol::{AssignedContainer, AssignedDevice};

    const UUID_A: &str = "GPU-0a0a0a0a-0000-4000-8000-000000000001";
    const UUID_B: &str = "GPU-0b0b0b0b-0000-4000-8000-000000000002";

    fn matched(cores: u32, priority: u32) -> Match {
        Match {
            namespace: "ns".into(),
            pod: "p".into(),
            uid: "u1".into(),
            container: AssignedContainer {
                name: "main".into(),
                devices: vec![
                    AssignedDevice {
                        uuid: UUID_A.into(),
                        memory_mib: 4096,
                        cores,
                        priority,
                        spill_mib: 0,
                    },
                    AssignedDevice {
                        uuid: UUID_B.into(),
                        memory_mib: 2048,
                        cores: 100,
                        priority,
                        spill_mib: 0,
                    },
                ],
            },
            allocated: vec![],
        }
    }

    #[test]
    fn oversubscribed_promises_are_device_memory_plus_spill() {
        assert_eq!(split_promise(4096, 1.0), (4096, 0));
        assert_eq!(split_promise(4096, 2.0), (2048, 2048));
        assert_eq!(split_promise(3000, 1.5), (2000, 1000));
        assert_eq!(
            split_promise(1, 16.0),
            (1, 0),
            "never 0 MiB of device memory"
        );
        let text = limits_text(&matched(30, 1), 0, 2.0, 0);
        let cfg = gpupool_config::TenantConfig::from_sources(
            &[],
            Some((Path::new(DEFAULT_LIMITS_FILE), &text)),
        )
        .unwrap();
        let a = parse_gpu_uuid(UUID_A).unwrap();
        assert_eq!(
            cfg.memory_limit_of(0, Some(&a)),
            MemoryLimit::Bytes(2048 << 20)
        );
        assert_eq!(cfg.spill_of(0, Some(&a)), 2048 << 20, "{text}");
        // A container's own spill resource adds to it.
        let mut m = matched(30, 1);
        m.container.devices[0].spill_mib = 1000;
        let text = limits_text(&m, 0, 2.0, 0);
        assert!(
            text.contains(&format!("spill.{UUID_A} = 3048MiB")),
            "{text}"
        );
    }

    #[test]
    fn the_limits_file_is_what_the_library_reads() {
        let text = limits_text(&matched(30, 1), 256 << 20, 1.0, 0);
        let cfg = gpupool_config::TenantConfig::from_sources(
            &[],
            Some((Path::new(DEFAULT_LIMITS_FILE), &text)),
        )
        .unwrap();
        let (a, b) = (
            parse_gpu_uuid(UUID_A).unwrap(),
            parse_gpu_uuid(UUID_B).unwrap(),
        );
        // By card, whatever order the container gives its devices.
        for (ordinal_a, ordinal_b) in [(0, 1), (1, 0)] {
            assert_eq!(
                cfg.memory_limit_of(ordinal_a, Some(&a)),
                MemoryLimit::Bytes(4096 << 20)
            );
            assert_eq!(
                cfg.memory_limit_of(ordinal_b, Some(&b)),
                MemoryLimit::Bytes(2048 << 20)
            );
        }
        assert_eq!(cfg.compute.get(1, Some(&a)), Some(30));
        assert_eq!(
            cfg.compute.get(0, Some(&b)),
            None,
            "100 % is no compute limit"
        );
        // 0 cores (HAMi's default): no compute limit either.
        let text = limits_text(&matched(0, 0), 0, 1.0, 0);
        assert!(!text.contains("compute."), "{text}");
        let other = [9u8; 16];
        assert_eq!(
            cfg.memory_limit_of(0, Some(&other)),
            MemoryLimit::NotListed,
            "a card that is not the container's gets nothing"
        );
        assert_eq!(cfg.priority, gpupool_config::Priority::Low);
        assert_eq!(cfg.context_memory, 256 << 20);
        assert_eq!(
            cfg.region.as_deref(),
            Some(Path::new("/run/gpupool/tenant/region"))
        );
    }

    #[test]
    fn the_response_mounts_limits_read_only_and_names_the_cards() {
        let dir = std::env::temp_dir().join(format!("gpupool-tenant-{}", std::process::id()));
        let mut config = NodeConfig::defaults("n1");
        config.state_dir = dir.clone();
        config.cdi = true;
        let a = prepare(
            &config,
            &matched(30, 0),
            &["GPU-a::0".into(), "GPU-b::3".into()],
        )
        .unwrap();
        let r = response(&config, &a);
        assert_eq!(r.envs["CUDA_VISIBLE_DEVICES"], format!("{UUID_A},{UUID_B}"));
        let limits = r
            .mounts
            .iter()
            .find(|m| m.container_path == DEFAULT_LIMITS_FILE)
            .unwrap();
        assert!(limits.read_only);
        assert!(std::fs::read_to_string(&limits.host_path)
            .unwrap()
            .contains(&format!("memory.{UUID_A} = 4096MiB")));
        assert_eq!(r.cdi_devices[1].name, format!("nvidia.com/gpu={UUID_B}"));
        assert!(
            !a.tenant_dir.join("owner.json").exists(),
            "never in the tenant's folder"
        );
        let owner: serde_json::Value =
            serde_json::from_slice(&std::fs::read(owner_file(&a.tenant_dir)).unwrap()).unwrap();
        assert_eq!(owner["container"], "main");
        // The card folder is read-only but for the container's own folder in it.
        let cards: Vec<(&str, bool)> = r
            .mounts
            .iter()
            .filter(|m| m.container_path.starts_with(CONTAINER_CARDS))
            .map(|m| (m.container_path.as_str(), m.read_only))
            .collect();
        let own = format!("{CONTAINER_CARDS}/{}", tenant_name(&a.pod_uid, "main"));
        assert_eq!(cards, [(CONTAINER_CARDS, true), (own.as_str(), false)]);
        assert!(card_folder(&config, &a).is_dir());
        let limits_text = std::fs::read_to_string(&limits.host_path).unwrap();
        assert!(limits_text.contains(&format!(
            "card_tenant = {}",
            tenant_name(&a.pod_uid, "main")
        )));
        // Grants: every container's cores on each of its cards.
        write_grants(&config, [&a].into_iter()).unwrap();
        let grants = std::fs::read_to_string(gpupool_region::card_peers::grants_path(
            &config.cards_dir(),
            UUID_A,
        ))
        .unwrap();
        let parsed = gpupool_region::card_peers::parse_grants(&grants);
        assert_eq!(parsed[&tenant_name(&a.pod_uid, "main")].limit, 30);
        // 0 cores: nothing guaranteed, nothing capped.
        let mut best_effort = a.clone();
        best_effort.devices[0].cores = 0;
        write_grants(&config, [&best_effort].into_iter()).unwrap();
        let grants = std::fs::read_to_string(gpupool_region::card_peers::grants_path(
            &config.cards_dir(),
            UUID_A,
        ))
        .unwrap();
        let g = gpupool_region::card_peers::parse_grants(&grants)[&tenant_name(&a.pod_uid, "main")];
        assert_eq!((g.request, g.limit), (0, 100));
        write_grants(&config, std::iter::empty()).unwrap();
        assert!(!gpupool_region::card_peers::grants_path(&config.cards_dir(), UUID_A).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
