//! The node agent against a kubelet harness over real unix sockets (registration server,
//! `ListAndWatch` stream, `GetPreferredAllocation` and `Allocate` calls) and the Kubernetes API
//! through `kube` on an in-memory fake behind `tower-test`: allocation from the scheduler's
//! assignment, equal requests, malformed annotations, an unhealthy card, a kubelet restart, an
//! agent restart, reaping.

use gpupool_fakekube as fake_api;
use gpupool_node::agent::Agent;
use gpupool_node::cards::{Card, CardSource};
use gpupool_node::config::NodeConfig;
use gpupool_node::fake_kubelet::FakeKubelet;
use gpupool_node::proto;
use gpupool_node::proto::device_plugin_client::DevicePluginClient;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Cards whose health (and readability) the test controls.
#[derive(Clone)]
struct TestCards(Arc<Mutex<Vec<Card>>>);

impl CardSource for TestCards {
    fn cards(&self) -> Result<Vec<Card>, String> {
        Ok(self.0.lock().unwrap().clone())
    }
}

fn two_cards() -> TestCards {
    let card = |i: u32| Card {
        index: i,
        uuid: format!("GPU-{i}0000000-0000-0000-0000-000000000000"),
        model: "NVIDIA H100 80GB HBM3".into(),
        memory_mib: 81559,
        sms: 132,
        numa: 0,
        healthy: true,
    };
    TestCards(Arc::new(Mutex::new(vec![card(0), card(1)])))
}

fn uuid(i: u32) -> String {
    format!("GPU-{i}0000000-0000-0000-0000-000000000000")
}

/// The stand-in kubelet, with the test's timeouts.
struct Kubelet(FakeKubelet);

impl Kubelet {
    fn start(dir: &Path) -> Kubelet {
        Kubelet(FakeKubelet::start(dir).unwrap())
    }

    async fn restart(&mut self) {
        self.0.restart().await.unwrap()
    }

    async fn next_registration(&mut self) -> proto::RegisterRequest {
        self.0
            .next_registration(Duration::from_secs(5))
            .await
            .expect("registration within 5 s")
    }

    async fn plugin(
        &self,
        r: &proto::RegisterRequest,
    ) -> DevicePluginClient<tonic::transport::Channel> {
        self.0.plugin(r).await.unwrap()
    }
}

struct Node {
    dir: PathBuf,
    cluster: fake_api::Shared,
    cards: TestCards,
    kubelet: Kubelet,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<gpupool_node::error::Result<()>>,
    agent: Arc<Agent>,
}

fn test_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gpupool-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(dir: &Path) -> NodeConfig {
    let mut c = NodeConfig::defaults("n1");
    c.kubelet_dir = dir.join("device-plugins");
    c.state_dir = dir.join("state");
    c.split = 4;
    c.health_interval = Duration::from_millis(100);
    c.inventory_refresh = Duration::from_millis(200);
    c
}

type Started = (
    watch::Sender<bool>,
    tokio::task::JoinHandle<gpupool_node::error::Result<()>>,
    Arc<Agent>,
);

fn start_agent(dir: &Path, cluster: &fake_api::Shared, cards: &TestCards) -> Started {
    start_agent_with(config(dir), cluster, cards)
}

fn start_agent_with(config: NodeConfig, cluster: &fake_api::Shared, cards: &TestCards) -> Started {
    let agent = Agent::new(
        config,
        fake_api::client(cluster.clone()),
        Arc::new(cards.clone()),
    )
    .unwrap();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(gpupool_node::run(agent.clone(), rx));
    (stop, task, agent)
}

impl Node {
    /// Stops the agent (which must exit cleanly, removing its socket) and removes the test's
    /// folder.
    async fn finish(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
        let socket = self.kubelet.0.dir.join("gpupool-nvidia.com-gpu.sock");
        assert!(!socket.exists(), "the socket is removed at exit");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn node(name: &str) -> Node {
    node_with(name, |_| {}).await
}

/// A node whose agent's settings `adjust` changes.
async fn node_with(name: &str, adjust: impl FnOnce(&mut NodeConfig)) -> Node {
    let dir = test_dir(name);
    let cluster: fake_api::Shared = Default::default();
    cluster.lock().unwrap().add_node("n1", &[]);
    let cards = two_cards();
    let kubelet = Kubelet::start(&dir.join("device-plugins"));
    let mut c = config(&dir);
    adjust(&mut c);
    let (stop, task, agent) = start_agent_with(c, &cluster, &cards);
    Node {
        dir,
        cluster,
        cards,
        kubelet,
        stop,
        task,
        agent,
    }
}

/// A pod bound to n1 whose container `main` was assigned card `card` at time `at`.
fn add_pod(cluster: &fake_api::Shared, name: &str, card: u32, at: u64) {
    let assignment = json!({"version": 1, "node": "n1", "assignedNs": at, "containers": [
        {"name": "main", "devices": [{"uuid": uuid(card), "memoryMiB": 4096, "cores": 30}]}]});
    cluster.lock().unwrap().add_bound_pod(
        "team",
        name,
        "n1",
        json!({"gpupool.io/assignment": assignment.to_string()}),
        json!([{"name": "main", "image": "cuda"}]),
    );
}

async fn allocate(
    plugin: &mut DevicePluginClient<tonic::transport::Channel>,
    ids: &[&str],
) -> Result<proto::ContainerAllocateResponse, tonic::Status> {
    let r = plugin
        .allocate(proto::AllocateRequest {
            container_requests: vec![proto::ContainerAllocateRequest {
                devices_ids: ids.iter().map(|s| s.to_string()).collect(),
            }],
        })
        .await?;
    Ok(r.into_inner().container_responses.remove(0))
}

fn limits_of(r: &proto::ContainerAllocateResponse) -> String {
    let m = r
        .mounts
        .iter()
        .find(|m| m.container_path == "/etc/gpupool/limits.conf")
        .expect("a limits file mount");
    assert!(m.read_only, "the limits file is read-only in the container");
    std::fs::read_to_string(&m.host_path).unwrap()
}

fn annotation(cluster: &fake_api::Shared, pod: &str, key: &str) -> Option<String> {
    cluster.lock().unwrap().pod("team", pod)["metadata"]["annotations"][key]
        .as_str()
        .map(String::from)
}

/// The inventory annotation of node n1, when there is one that parses.
fn inventory(cluster: &fake_api::Shared) -> Option<gpupool_sched::protocol::Inventory> {
    let node = cluster.lock().unwrap().nodes["n1"].clone();
    node["metadata"]["annotations"]["gpupool.io/inventory"]
        .as_str()
        .and_then(|t| gpupool_sched::protocol::Inventory::parse(t).ok())
}

async fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..100 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_lists_slots_and_allocates_from_the_assignment() {
    let mut n = node("allocate").await;
    let reg = n.kubelet.next_registration().await;
    assert_eq!(reg.version, "v1beta1");
    assert_eq!(reg.resource_name, "nvidia.com/gpu");
    assert!(reg.options.unwrap().get_preferred_allocation_available);
    let mut plugin = n.kubelet.plugin(&reg).await;

    let mut stream = plugin
        .list_and_watch(proto::Empty {})
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.devices.len(), 8, "2 cards x 4 slots");
    assert!(first.devices.iter().all(|d| d.health == "Healthy"));

    add_pod(&n.cluster, "infer", 1, 100);
    let available: Vec<String> = first.devices.iter().map(|d| d.id.clone()).collect();
    let preferred = plugin
        .get_preferred_allocation(proto::PreferredAllocationRequest {
            container_requests: vec![proto::ContainerPreferredAllocationRequest {
                available_device_i_ds: available,
                must_include_device_i_ds: vec![],
                allocation_size: 1,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let chosen = &preferred.container_responses[0].device_i_ds;
    assert_eq!(chosen.len(), 1);
    assert!(
        chosen[0].starts_with(&uuid(1)),
        "a slot of the assigned card: {chosen:?}"
    );

    let r = allocate(&mut plugin, &[&chosen[0]]).await.unwrap();
    assert_eq!(r.envs["CUDA_VISIBLE_DEVICES"], uuid(1));
    assert_eq!(r.envs["NVIDIA_VISIBLE_DEVICES"], uuid(1));
    let limits = limits_of(&r);
    // Keyed by the card, which the container cannot reorder.
    assert!(
        limits.contains(&format!("memory.{} = 4096MiB", uuid(1))),
        "{limits}"
    );
    assert!(
        limits.contains(&format!("compute.{} = 30", uuid(1))),
        "{limits}"
    );
    let paths: Vec<&str> = r.mounts.iter().map(|m| m.container_path.as_str()).collect();
    for p in [
        "/etc/ld.so.preload",
        "/usr/local/gpupool/lib/libgpupool.so",
        "/run/gpupool/tenant",
    ] {
        assert!(paths.contains(&p), "{p} in {paths:?}");
    }
    assert_eq!(
        annotation(&n.cluster, "infer", "gpupool.io/allocated").as_deref(),
        Some("main")
    );

    // Nothing else is pending: a second call is refused with a reason.
    let e = allocate(&mut plugin, &[&format!("{}::2", uuid(0))])
        .await
        .unwrap_err();
    assert!(e.message().contains("no pending pod"), "{}", e.message());
    // Slots that are not ours are refused.
    let e = allocate(&mut plugin, &["nvidia0"]).await.unwrap_err();
    assert!(e.message().contains("nvidia0"), "{}", e.message());

    // The inventory annotation is published.
    let cluster = n.cluster.clone();
    eventually("inventory", || {
        inventory(&cluster).is_some_and(|inv| {
            inv.cards.len() == 2 && inv.cards[0].slots == 4 && inv.spill_mib.is_some_and(|s| s > 0)
        })
    })
    .await;
    n.finish().await;
}

/// A driver whose checkpoints always succeed.
struct NoDriver;

impl gpupool_node::checkpoint::CheckpointDriver for NoDriver {
    fn lock(&self, _: u32, _: u32) -> Result<(), u32> {
        Ok(())
    }
    fn checkpoint(&self, _: u32) -> Result<(), u32> {
        Ok(())
    }
    fn restore(&self, _: u32) -> Result<(), u32> {
        Ok(())
    }
    fn unlock(&self, _: u32) -> Result<(), u32> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_checkpoints_on_containers_wait_for_room_and_checkpoints_become_pod_events() {
    use gpupool_node::checkpoint::Event;
    let n = node_with("checkpoints", |c| {
        c.checkpoint_idle_after = Some(Duration::from_secs(60));
        c.room_wait = Duration::from_secs(45);
    })
    .await;
    assert!(
        n.agent.checkpoint_controller().is_none(),
        "no controller without the driver's checkpointing"
    );
    n.agent.set_checkpoint_driver(Arc::new(NoDriver));
    assert!(n.agent.checkpoint_controller().is_some());
    let mut kubelet = n.kubelet;
    let reg = kubelet.next_registration().await;
    let mut plugin = kubelet.plugin(&reg).await;
    add_pod(&n.cluster, "idle", 0, 100);
    let r = allocate(&mut plugin, &[&format!("{}::0", uuid(0))])
        .await
        .unwrap();
    assert!(
        limits_of(&r).contains("room_wait = 45000ms"),
        "{}",
        limits_of(&r)
    );
    // The tenant folder of the container is named in the controller's events.
    let tenant = n.agent.allocations().await[0]
        .tenant_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    for (e, reason, type_) in [
        (
            Event::Checkpointed {
                tenant: tenant.clone(),
                pid: 4242,
                card: [0; 16],
                bytes: 2 << 30,
                for_tenant: "k8s-other".into(),
            },
            "GpupoolCheckpointed",
            "Normal",
        ),
        (
            Event::Restored {
                tenant: tenant.clone(),
                pid: 4242,
                asked: true,
            },
            "GpupoolRestored",
            "Normal",
        ),
        (
            Event::Failed {
                tenant: tenant.clone(),
                pid: 4242,
                step: "lock",
                code: 999,
            },
            "GpupoolCheckpointFailed",
            "Warning",
        ),
    ] {
        n.agent.report_checkpoint(&e).await;
        let events = n.cluster.lock().unwrap().events.clone();
        let last = events.last().expect("an event");
        assert_eq!(
            (last["reason"].as_str(), last["type"].as_str()),
            (Some(reason), Some(type_)),
            "{last}"
        );
        assert_eq!(last["involvedObject"]["name"], "idle");
        assert!(
            last["message"].as_str().unwrap().contains("process 4242"),
            "{last}"
        );
    }
    // A tenant no container owns raises nothing.
    let before = n.cluster.lock().unwrap().events.len();
    n.agent
        .report_checkpoint(&Event::Restored {
            tenant: "unknown".into(),
            pid: 1,
            asked: false,
        })
        .await;
    assert_eq!(n.cluster.lock().unwrap().events.len(), before);
    n.stop.send(true).unwrap();
    n.task.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&n.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_requests_are_served_in_assignment_order_and_bad_annotations_reported() {
    let mut n = node("equal").await;
    let reg = n.kubelet.next_registration().await;
    let mut plugin = n.kubelet.plugin(&reg).await;
    add_pod(&n.cluster, "second", 1, 200);
    add_pod(&n.cluster, "first", 0, 100);
    n.cluster.lock().unwrap().add_bound_pod(
        "team",
        "broken",
        "n1",
        json!({"gpupool.io/assignment": "{\"version\": 1, \"node\": "}),
        json!([{"name": "main", "image": "cuda"}]),
    );
    let a = allocate(&mut plugin, &[&format!("{}::0", uuid(0))])
        .await
        .unwrap();
    let b = allocate(&mut plugin, &[&format!("{}::1", uuid(0))])
        .await
        .unwrap();
    assert_eq!(
        a.envs["CUDA_VISIBLE_DEVICES"],
        uuid(0),
        "first assigned, first served"
    );
    assert_eq!(b.envs["CUDA_VISIBLE_DEVICES"], uuid(1));
    assert_eq!(a.envs["GPUPOOL_TENANT"], "team/first/main");
    assert_eq!(b.envs["GPUPOOL_TENANT"], "team/second/main");
    assert!(allocate(&mut plugin, &[&format!("{}::2", uuid(0))])
        .await
        .is_err());
    // A pod another scheduler placed here: no assignment, so the call fails naming it, and the
    // pod gets an event that says what to change.
    n.cluster.lock().unwrap().add_bound_pod(
        "team",
        "by-volcano",
        "n1",
        json!({}),
        json!([{"name": "main", "image": "cuda",
                "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "2000"}}}]),
    );
    let e = allocate(&mut plugin, &[&format!("{}::2", uuid(0))])
        .await
        .unwrap_err();
    let e = e.message();
    assert!(
        e.contains("team/by-volcano") && e.contains("schedulerName"),
        "{e}"
    );
    let events = n.cluster.lock().unwrap().events.clone();
    let not_scheduled: Vec<_> = events
        .iter()
        .filter(|e| e["reason"] == "GpupoolNotScheduled")
        .collect();
    assert!(
        !not_scheduled.is_empty()
            && not_scheduled
                .iter()
                .all(|e| e["involvedObject"]["name"] == "by-volcano"),
        "{events:?}"
    );
    assert!(not_scheduled[0]["message"]
        .as_str()
        .unwrap()
        .contains("not by the gpupool scheduler"));
    assert!(
        events
            .iter()
            .any(|e| e["involvedObject"]["name"] == "broken"
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("gpupool.io/assignment")),
        "an event names the malformed annotation: {events:?}"
    );
    n.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_card_is_reported_through_list_and_watch_and_the_inventory() {
    let mut n = node("health").await;
    let reg = n.kubelet.next_registration().await;
    let mut plugin = n.kubelet.plugin(&reg).await;
    let mut stream = plugin
        .list_and_watch(proto::Empty {})
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    n.cards.0.lock().unwrap()[1].healthy = false;
    let update = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an update within 5 s")
        .unwrap()
        .unwrap();
    for d in &update.devices {
        let want = if d.id.starts_with(&uuid(1)) {
            "Unhealthy"
        } else {
            "Healthy"
        };
        assert_eq!(d.health, want, "{}", d.id);
    }
    let cluster = n.cluster.clone();
    eventually("inventory shows the card unhealthy", || {
        inventory(&cluster).is_some_and(|inv| {
            inv.cards.len() == 2 && !inv.cards[1].healthy && inv.cards[0].healthy
        })
    })
    .await;
    n.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_restart_leads_to_registration_again() {
    let mut n = node("kubelet-restart").await;
    let reg = n.kubelet.next_registration().await;
    n.kubelet.restart().await;
    let again = n.kubelet.next_registration().await;
    assert_eq!(again.endpoint, reg.endpoint);
    // The new socket serves.
    let mut plugin = n.kubelet.plugin(&again).await;
    let mut stream = plugin
        .list_and_watch(proto::Empty {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().devices.len(), 8);
    n.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restart_keeps_every_allocation_and_reaps_gone_pods() {
    let mut n = node("agent-restart").await;
    let reg = n.kubelet.next_registration().await;
    let mut plugin = n.kubelet.plugin(&reg).await;
    add_pod(&n.cluster, "a", 0, 100);
    add_pod(&n.cluster, "b", 1, 200);
    let ra = allocate(&mut plugin, &[&format!("{}::0", uuid(0))])
        .await
        .unwrap();
    let tenant_a = ra
        .mounts
        .iter()
        .find(|m| m.container_path == "/run/gpupool/tenant")
        .unwrap()
        .host_path
        .clone();
    drop(plugin);
    n.stop.send(true).unwrap();
    n.task.await.unwrap().unwrap();
    assert_eq!(n.agent.allocations().await.len(), 1);

    // Lose the annotation on purpose: the record on disk alone must keep "a" from being
    // served twice.
    {
        let mut c = n.cluster.lock().unwrap();
        let pod = c.pods.get_mut("team/a").unwrap();
        pod["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("gpupool.io/allocated");
    }
    let (stop, task, agent) = start_agent(&n.dir, &n.cluster, &n.cards);
    assert_eq!(agent.allocations().await.len(), 1, "recovered from disk");
    let reg = n.kubelet.next_registration().await;
    let mut plugin = n.kubelet.plugin(&reg).await;
    let rb = allocate(&mut plugin, &[&format!("{}::1", uuid(0))])
        .await
        .unwrap();
    assert_eq!(rb.envs["GPUPOOL_TENANT"], "team/b/main");
    assert_eq!(agent.allocations().await.len(), 2);

    // Pod "a" ends: its record and tenant folder go, "b" stays.
    n.cluster.lock().unwrap().pods.remove("team/a");
    for _ in 0..100 {
        if agent.allocations().await.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = agent.allocations().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].pod, "b");
    assert!(!Path::new(&tenant_a).exists(), "tenant folder of a reaped");
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&n.dir);
}
