//! NVML as NVIDIA's Python client (nvidia-ml-py) sees it: on the bare simulated card, and as a
//! tenant: the limit as total, the tenant's usage, only the tenant's processes and devices.

use crate::common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn python_args() -> Vec<String> {
    vec![
        "python3".into(),
        root()
            .join("tests/python/nvml_view.py")
            .display()
            .to_string(),
    ]
}

fn parse(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "nvml_view failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn nvml_bare(m: &Machine) -> serde_json::Value {
    let args = python_args();
    parse(
        &Command::new(&args[0])
            .arg(&args[1])
            .envs(m.sim_env())
            .env("PYTHONPATH", cuda_cache().join("py"))
            .output()
            .unwrap(),
    )
}

fn nvml_as_tenant(m: &Machine, run_args: &[&str]) -> serde_json::Value {
    let args = python_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    parse(
        &m.run_cmd(run_args, &args)
            .env("PYTHONPATH", cuda_cache().join("py"))
            .output()
            .unwrap(),
    )
}

/// Starts a probe (`gpupool run ARGS`) holding `chunks` × 512 MiB for 4 s, and waits until the
/// card lists `processes` processes.
fn holder(m: &Machine, args: &[&str], chunks: u32, processes: usize) -> std::process::Child {
    let c = m
        .run_cmd(
            args,
            &[
                gpupool().to_str().unwrap(),
                "probe",
                "--chunk",
                "512MiB",
                "--max-chunks",
                &chunks.to_string(),
                "--hold-ms",
                "4000",
            ],
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while m.info()["devices"][0]["processes"]
        .as_array()
        .map_or(0, |p| p.len())
        < processes
    {
        assert!(Instant::now() < deadline, "holder did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    c
}

#[test]
fn bare_card_lists_processes_with_their_memory() {
    let m = Machine::new("nvml-bare", "1x16GiB");
    let mut h = holder(&m, &[], 2, 1);
    let v = nvml_bare(&m);
    let d = &v["devices"][0];
    assert_eq!(d["total"], 16 * GIB);
    assert_eq!(
        d["used"],
        GIB + 256 * MIB,
        "two 512 MiB chunks and a context"
    );
    assert_eq!(d["free_v2"], d["free"]);
    assert_eq!(d["processes"].as_array().unwrap().len(), 1);
    assert_eq!(d["processes"][0]["used"], GIB + 256 * MIB);
    assert_eq!(d["found_by_pci"], true, "{d}");
    assert_eq!(d["nvlink_remote_type"], "Not Supported");
    assert_eq!(d["fabric_state"], 0, "NVML_GPU_FABRIC_STATE_NOT_SUPPORTED");
    h.wait().unwrap();
    assert_eq!(nvml_bare(&m)["devices"][0]["used"], 0);
}

#[test]
fn tenant_sees_its_limit_usage_and_processes_only() {
    let m = Machine::new("nvml-tenant", "1x16GiB");
    let mut mine = holder(&m, &["--memory", "4GiB", "--tenant", "mine"], 2, 1);
    let mut theirs = holder(&m, &["--memory", "2GiB", "--tenant", "theirs"], 1, 2);
    let v = nvml_as_tenant(&m, &["--memory", "4GiB", "--tenant", "mine"]);
    let d = &v["devices"][0];
    assert_eq!(d["total"], 4 * GIB);
    assert_eq!(
        d["used"],
        GIB + 256 * MIB,
        "the tenant's own usage, not the card's"
    );
    assert_eq!(d["free"], 4 * GIB - GIB - 256 * MIB);
    assert_eq!(
        (d["total_v2"].clone(), d["used_v2"].clone()),
        (d["total"].clone(), d["used"].clone())
    );
    let procs = d["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 1, "only the tenant's process: {procs:?}");
    let bare = nvml_bare(&m);
    assert_eq!(
        bare["devices"][0]["processes"].as_array().unwrap().len(),
        2,
        "the card has both"
    );
    mine.wait().unwrap();
    theirs.wait().unwrap();
}

#[test]
fn tenant_sees_only_its_devices_in_cuda_order() {
    let m = Machine::new("nvml-devices", "2x16GiB:name=Card");
    let all = nvml_bare(&m);
    assert_eq!(all["devices"].as_array().unwrap().len(), 2);
    let second = all["devices"][1]["uuid"].clone();
    let v = nvml_as_tenant(&m, &["--memory", "1GiB", "--devices", "1"]);
    let devs = v["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 1);
    assert_eq!(
        devs[0]["uuid"], second,
        "NVML index 0 is CUDA ordinal 0 = physical card 1"
    );
    assert_eq!(devs[0]["total"], GIB);
}

#[test]
fn nvml_1_entry_points_and_lookups_show_the_tenants_devices_and_processes_only() {
    let m = Machine::new("nvml-v1", "2x16GiB");
    let prog = c_program("nvml_v1", "driver");
    let text = String::from_utf8_lossy(
        &Command::new(&prog)
            .arg("list")
            .envs(m.sim_env())
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    let devices: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().skip(2).collect())
        .collect();
    assert_eq!(devices.len(), 2, "{text}");
    let (card0, hidden_uuid, hidden_bus) = (devices[0][0], devices[1][0], devices[1][1]);
    // Another tenant's process on the tenant's own card.
    let mut theirs = holder(
        &m,
        &["--memory", "2GiB", "--tenant", "theirs", "--devices", "0"],
        1,
        1,
    );
    let kv = key_values(&m.run(
        &["--memory", "1GiB", "--devices", "0"],
        &[prog.to_str().unwrap(), "view", hidden_uuid, hidden_bus],
    ));
    assert_eq!(num(&kv, "count_v1_rc"), 0);
    assert_eq!(num(&kv, "count_v1"), 1, "one device: {kv:?}");
    assert_eq!(kv["handle_v1_0"], card0);
    assert_eq!(num(&kv, "handle_v1_1_rc"), 2, "NVML_ERROR_INVALID_ARGUMENT");
    assert_eq!(num(&kv, "hidden_by_uuid_rc"), 6, "NVML_ERROR_NOT_FOUND");
    assert_eq!(num(&kv, "hidden_by_pci_rc"), 6, "NVML_ERROR_NOT_FOUND");
    assert_eq!(num(&kv, "procs_v1_0_rc"), 0);
    assert_eq!(
        num(&kv, "procs_v1_0"),
        0,
        "not the other tenant's process: {kv:?}"
    );
    assert_eq!(num(&kv, "procs_v3_0"), 0, "{kv:?}");
    theirs.wait().unwrap();
}
