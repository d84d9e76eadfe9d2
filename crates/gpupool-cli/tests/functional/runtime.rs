//! NVIDIA's real CUDA runtime (11.8, 12.9 and 13.0) on the simulated GPU, bare and under
//! `libgpupool.so`: device queries, data movement, and the memory limit on every runtime
//! allocation path.

use crate::common;
use common::*;
use std::process::Command;

const RUNTIMES: [&str; 3] = ["11.8", "12.9", "13.0"];

#[test]
fn runtime_runs_on_the_simulated_gpu() {
    for v in RUNTIMES {
        let m = Machine::new(&format!("bare-{v}"), "1xH100");
        let prog = c_program("rt_basic", v);
        let out = Command::new(&prog).envs(m.sim_env()).output().unwrap();
        let kv = key_values(&out);
        assert_eq!(kv["name"], "NVIDIA H100 80GB HBM3", "runtime {v}");
        assert_eq!(num(&kv, "sms"), 132);
        assert_eq!(num(&kv, "meminfo_total"), 81_559 * MIB);
        assert_eq!(
            num(&kv, "meminfo_free"),
            81_559 * MIB - 256 * MIB,
            "the context costs 256 MiB"
        );
        assert_eq!(
            num(&kv, "meminfo_free") - num(&kv, "meminfo_free_after_2MiB"),
            4 * MIB,
            "two 1 MiB buffers at 2 MiB granularity"
        );
        assert!(String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l == "OK"));
    }
}

#[test]
fn kernels_registered_with_the_runtime_run_on_the_simulated_gpu() {
    // What nvcc-compiled programs do: a fat binary registered at start, launched through
    // `cudaLaunchKernel` (runtime 12 and 13 load it with `cuLibraryLoadData`, 11.8 through
    // its private interface table). Each 2 ms kernel takes its time on the device.
    for v in RUNTIMES {
        let m = Machine::new(&format!("kernels-{v}"), "1xH100");
        let prog = c_program("rt_kernel", v);
        let out = Command::new(&prog)
            .args(["2ms", "0.2"])
            .envs(m.sim_env())
            .output()
            .unwrap();
        assert!(out.status.success(), "runtime {v}: {out:?}");
        let kv = key_values(&out);
        let (launches, seconds) = (num(&kv, "launches"), kv["seconds"].parse::<f64>().unwrap());
        assert!(
            seconds >= launches as f64 * 0.002 * 0.95,
            "runtime {v}: {launches} launches of 2 ms done in {seconds} s"
        );
        assert_ne!(
            num(&kv, "unregistered"),
            0,
            "runtime {v}: a stray pointer launched"
        );
    }
}

#[test]
fn graphs_captured_through_the_runtime_replay_on_the_simulated_gpu() {
    // `cudaStreamBeginCapture` … `cudaGraphLaunch`, as `torch.cuda.graph` uses them: four
    // 2 ms kernels and a memset captured (nothing runs then), replayed twice (16 ms of device
    // work), under every runtime, locally and through a server.
    let m = Machine::new("graph-remote", "1xH100");
    let server = common::remote_server::Server::start(
        &m,
        "127.0.0.1:0",
        &format!("alpha {}\n", common::remote_server::TOKEN),
    );
    for v in RUNTIMES {
        let prog = c_program("rt_kernel", v);
        let args = [prog.to_str().unwrap(), "2ms", "0", "graph"];
        let local = Machine::new(&format!("graph-{v}"), "1xH100");
        let runs = [
            (
                "local",
                Command::new(args[0])
                    .args(&args[1..])
                    .envs(local.sim_env())
                    .output(),
            ),
            ("remote", server.client(&args).output()),
        ];
        for (via, out) in runs {
            let out = out.unwrap();
            assert!(out.status.success(), "runtime {v} {via}: {out:?}");
            let kv = key_values(&out);
            assert_eq!(kv["graph_nodes"], "5", "runtime {v} {via}: {kv:?}");
            assert_eq!(kv["nothing_ran_in_capture"], "1", "runtime {v} {via}");
            assert_eq!(kv["memset_ok"], "1", "runtime {v} {via}");
            let ms: f64 = kv["replays_ms"].parse().unwrap();
            assert!(
                (15.9..200.0).contains(&ms),
                "runtime {v} {via}: replays took {ms} ms"
            );
        }
    }
}

#[test]
fn runtime_sees_the_limit_as_its_card() {
    for v in RUNTIMES {
        let m = Machine::new(&format!("view-{v}"), "1xH100");
        let prog = c_program("rt_basic", v);
        let out = m.run(&["--memory", "3GiB"], &[prog.to_str().unwrap()]);
        let kv = key_values(&out);
        assert_eq!(
            num(&kv, "total_global"),
            3 * GIB,
            "cudaGetDeviceProperties under {v}"
        );
        assert_eq!(num(&kv, "meminfo_total"), 3 * GIB);
        assert_eq!(num(&kv, "meminfo_free"), 3 * GIB - 256 * MIB);
    }
}

fn check_path(v: &str, path: &str, limit_mib: u64, chunk_mib: u64) {
    let m = Machine::new(&format!("path-{v}-{path}"), "1x16GiB");
    let budget = (limit_mib - 256) * MIB;
    let view = View {
        total: limit_mib * MIB,
        free: budget,
    };
    let limit = format!("{limit_mib}MiB");
    check_budget(&m, v, path, &["--memory", &limit], chunk_mib, budget, view);
}

/// What `cudaMemGetInfo` shows before allocating.
#[derive(Clone, Copy)]
struct View {
    total: u64,
    free: u64,
}

/// Runs `rt_limits PATH CHUNK` with `args`: it allocates up to `budget` (within a chunk) and is
/// then refused, seeing `view` before and after.
fn check_budget(
    m: &Machine,
    v: &str,
    path: &str,
    args: &[&str],
    chunk_mib: u64,
    budget: u64,
    view: View,
) {
    let prog = c_program("rt_limits", v);
    let out = m.run(
        args,
        &[prog.to_str().unwrap(), path, &chunk_mib.to_string()],
    );
    let kv = key_values(&out);
    let got = num(&kv, "allocated");
    assert!(
        got <= budget,
        "{v}/{path}: allocated {got} over the budget {budget}"
    );
    assert!(
        got + chunk_mib * MIB > budget,
        "{v}/{path}: refused early at {got} of {budget}"
    );
    assert_eq!(
        num(&kv, "error"),
        2,
        "{v}/{path}: expected cudaErrorMemoryAllocation"
    );
    assert_eq!(num(&kv, "total"), view.total);
    assert_eq!(num(&kv, "free_before"), view.free);
    assert_eq!(num(&kv, "free_holding"), view.free - got);
    assert_eq!(
        num(&kv, "free_after"),
        view.free,
        "{v}/{path}: everything given back"
    );
}

#[test]
fn kernels_reading_spilled_memory_run_at_the_bus_s_bandwidth() {
    // 512 MiB buffers: the first fits the limit (1 GiB - 256 MiB context), the second spills.
    // The simulator reads device memory at 2000 GB/s (0.27 ms) and host memory at 25 GB/s
    // (21 ms).
    let m = Machine::new("spill-read", "1x16GiB");
    let prog = c_program("spill_read", "driver");
    let out = m.run(
        &["--memory", "1GiB", "--spill", "1GiB"],
        &[prog.to_str().unwrap(), "512"],
    );
    let kv = key_values(&out);
    assert_eq!(
        (num(&kv, "spilled_first"), num(&kv, "spilled_second")),
        (0, 1),
        "{kv:?}"
    );
    let (first, second): (f64, f64) = (
        kv["first_ms"].parse().unwrap(),
        kv["second_ms"].parse().unwrap(),
    );
    assert!(
        second >= 20.0,
        "reading spilled memory took {second} ms: {kv:?}"
    );
    assert!(
        second > 10.0 * first,
        "device {first} ms, spilled {second} ms"
    );
}

#[test]
fn managed_spill_moves_back_onto_the_device_when_device_memory_frees_up() {
    // 768 MiB usable (1 GiB less the context): the first 512 MiB buffer on the device, the
    // second spilled; once the first is freed the second fits the limit again.
    let m = Machine::new("spill-back", "1x16GiB");
    let prog = c_program("spill_read", "driver");
    let run = |mode: &str| {
        let flags = ["--memory", "1GiB", "--spill", "1GiB", "--spill-mode", mode];
        let kv = key_values(&m.run(&flags, &[prog.to_str().unwrap(), "512", "free"]));
        let ms = |k: &str| kv[k].parse::<f64>().unwrap();
        let managed = num(&kv, "managed_second");
        (managed, ms("second_ms"), ms("again_ms"))
    };
    // Managed: read over the bus while spilled, at device speed once moved back.
    let (managed, spilled, again) = run("managed");
    assert_eq!(managed, 1);
    assert!(spilled >= 20.0, "spilled read {spilled} ms");
    assert!(
        again * 10.0 < spilled,
        "after the free: {again} ms, before {spilled} ms"
    );
    // Pinned: stays on the host.
    let (managed, spilled, again) = run("pinned");
    assert_eq!(managed, 0);
    assert!(
        spilled >= 20.0 && again >= 20.0,
        "{spilled} ms, then {again} ms"
    );
}

/// Runs `checkpoint PID ACTION...` on the machine: its "key value" lines.
fn checkpoint(
    m: &Machine,
    pid: u64,
    actions: &[&str],
) -> std::collections::HashMap<String, String> {
    let prog = c_program("checkpoint", "driver");
    let pid = pid.to_string();
    let mut args = vec![pid.as_str()];
    args.extend(actions);
    let out = Command::new(&prog)
        .args(&args)
        .envs(m.sim_env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    key_values(&out)
}

#[test]
fn a_checkpointed_tenant_leaves_the_card_to_others_and_comes_back() {
    // a holds 2 GiB (and its 256 MiB context) of a 4 GiB card.
    let m = Machine::new("checkpoint", "1x4GiB");
    let hold = c_program("remote_hold", "12.9");
    let a = Holder::start(m.run_cmd(&["--tenant", "a"], &[hold.to_str().unwrap(), "2048"]));
    let held = m.card_used();
    assert_eq!(held, (2048 + 256) * MIB);
    let pid = m.tenant("a")["pids"][0].as_u64().unwrap();
    // Locked and checkpointed: its memory leaves the card.
    let kv = checkpoint(&m, pid, &["lock", "checkpoint"]);
    assert_eq!(
        (
            kv["lock"].as_str(),
            kv["checkpoint"].as_str(),
            kv["state"].as_str()
        ),
        ("0", "0", "2")
    );
    assert_eq!(m.card_used(), 0, "checkpointed memory is off the card");
    // Its next CUDA call waits while it is checkpointed.
    let a = a.go_on_and_wait("checkpointed");
    // Another tenant takes 3 GiB of the freed card; a cannot come back while it holds them.
    let mut b = Holder::start(m.run_cmd(&["--tenant", "b"], &[hold.to_str().unwrap(), "3072"]));
    let kv = checkpoint(&m, pid, &["restore"]);
    assert_eq!(
        (kv["restore"].as_str(), kv["state"].as_str()),
        ("2", "2"),
        "out of memory: {kv:?}"
    );
    b.go_on();
    assert_eq!(b.finish(), "after 0");
    // Restored: its memory is back on the card; unlocked: its call returns.
    let kv = checkpoint(&m, pid, &["restore"]);
    assert_eq!((kv["restore"].as_str(), kv["state"].as_str()), ("0", "1"));
    assert_eq!(m.card_used(), held);
    let kv = checkpoint(&m, pid, &["unlock"]);
    assert_eq!((kv["unlock"].as_str(), kv["state"].as_str()), ("0", "0"));
    assert_eq!(a.finish("restored and unlocked"), "after 0");
    // A pid the machine does not know.
    let kv = checkpoint(&m, 999_999, &["lock"]);
    assert_eq!(kv["lock"], "500", "CUDA_ERROR_NOT_FOUND");
}

/// Polls `f` every 20 ms for up to 5 s until it gives something.
fn wait_for<T>(f: impl Fn() -> Option<T>) -> T {
    for _ in 0..250 {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("waited 5 s in vain")
}

/// `gpupool checkpointer` on a machine, killed when dropped; its output goes to a file.
struct Checkpointer {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Checkpointer {
    fn start(m: &Machine, idle_after: &str) -> Checkpointer {
        std::fs::create_dir_all(&m.state).unwrap();
        let log = m.state.join("checkpointer.log");
        let child = Command::new(gpupool())
            .args(["checkpointer", "--sim", &m.spec, "--state"])
            .arg(&m.state)
            .args(["--idle-after", idle_after, "--interval", "50ms"])
            .env("GPUPOOL_LIB_DIR", lib_dir())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Checkpointer { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_idle_tenant_is_checkpointed_to_admit_another_and_restored_at_its_next_call() {
    // a (low priority) holds 2 GiB + its 256 MiB context of a 4 GiB card and goes idle.
    let m = Machine::new("idle-checkpoint", "1x4GiB");
    let hold = c_program("remote_hold", "12.9");
    let hold = hold.to_str().unwrap();
    let ctl = Checkpointer::start(&m, "300ms");
    let low = ["--memory", "3GiB", "--priority", "low"];
    let a_cmd = m.run_cmd(
        &[&low[..], &["--tenant", "a"]].concat(),
        &[hold, "2048", "copy"],
    );
    let a = Holder::start(a_cmd);
    let a_pid = m.tenant("a")["pids"][0].as_u64().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    // b (high priority) needs 2 GiB where 1.25 GiB is free: it waits, a is checkpointed.
    let started = std::time::Instant::now();
    let high = [
        "--memory",
        "3GiB",
        "--wait-for-room",
        "20s",
        "--tenant",
        "b",
    ];
    let mut b = Holder::start(m.run_cmd(&high, &[hold, "2048"]));
    let waited = started.elapsed();
    // (b may get its memory a moment before the controller records the checkpoint.)
    let a_info = wait_for(|| Some(m.tenant("a")).filter(|t| t["checkpoints"] == 1));
    assert_eq!(
        a_info["checkpointed_pids"][0].as_u64(),
        Some(a_pid),
        "{a_info}"
    );
    assert_eq!(m.card_used(), (2048 + 256) * MIB, "only b is on the card");
    // a's next CUDA call (a copy) asks for its memory back; there is no room while b holds
    // its 2 GiB.
    let a = a.go_on_and_wait("checkpointed, without room to come back");
    b.go_on();
    assert_eq!(b.finish(), "after 0");
    assert_eq!(a.finish("b left room"), "after 0");
    let log = ctl.log();
    assert!(
        log.contains(&format!(
            "checkpointed idle process {a_pid} of a (2.25 GiB on GPU-"
        )) && log.contains("to make room for b")
            && log.contains(&format!(
                "restored process {a_pid} of a (at its next CUDA call)"
            )),
        "{log}"
    );
    eprintln!("b waited {waited:?} for room");

    // A low-priority tenant never displaces an idle high-priority one: it fails after its wait.
    let mut c = Holder::start(m.run_cmd(&["--memory", "3GiB", "--tenant", "c"], &[hold, "2048"]));
    std::thread::sleep(std::time::Duration::from_millis(600));
    let d = m.run(
        &[&low[..], &["--wait-for-room", "1s", "--tenant", "d"]].concat(),
        &[hold, "2048"],
    );
    assert_eq!(
        String::from_utf8_lossy(&d.stdout).trim(),
        "FAIL cudaMalloc 2"
    );
    assert_eq!(m.tenant("c")["checkpoints"], 0);
    c.go_on();
    assert_eq!(c.finish(), "after 0");
}

#[test]
fn past_its_limit_a_tenant_spills_to_host_memory_not_into_its_neighbours() {
    // 1 GiB of device memory (768 MiB after the context) and 2 GiB of spill on a 4 GiB card.
    let m = Machine::new("spill", "1x4GiB");
    let spill = ["--memory", "1GiB", "--spill", "2GiB"];
    let view = View {
        total: 3 * GIB,
        free: (768 + 2048) * MIB,
    };
    for path in ["malloc", "pitch"] {
        check_budget(&m, "12.9", path, &spill, 96, (768 + 2048) * MIB, view);
    }
    // Stream-ordered allocations need device memory: they stop at the limit.
    check_budget(&m, "12.9", "async", &spill, 96, 768 * MIB, view);
    // 1.5 GiB held past the limit by one tenant: another still gets its whole 3 GiB limit of
    // the 4 GiB card, which it could not if the spill had taken device memory.
    let hold = c_program("remote_hold", "12.9");
    let mut args = spill.to_vec();
    args.extend(["--tenant", "a"]);
    let a = Holder::start(m.run_cmd(&args, &[hold.to_str().unwrap(), "1536"]));
    let a_info = m.tenant("a");
    assert_eq!(a_info["devices"][0]["spilled_bytes"], 1536 * MIB);
    assert_eq!(
        a_info["devices"][0]["used_bytes"],
        256 * MIB,
        "its context only"
    );
    let neighbour = View {
        total: 3 * GIB,
        free: (3072 - 256) * MIB,
    };
    check_budget(
        &m,
        "12.9",
        "malloc",
        &["--memory", "3GiB", "--tenant", "b"],
        96,
        (3072 - 256) * MIB,
        neighbour,
    );
    a.finish();
}

#[test]
fn limit_holds_on_every_runtime_allocation_path() {
    for v in RUNTIMES {
        for path in [
            "malloc", "pitch", "managed", "async", "pool", "array", "array3d", "mipmap",
        ] {
            check_path(v, path, 1280, 96);
        }
    }
}

#[test]
fn odd_sizes_are_charged_at_the_granularity() {
    // 3 MiB chunks cost 4 MiB each (2 MiB granularity): 1024 - 256 = 768 MiB holds 192 of them.
    let m = Machine::new("granularity", "1x16GiB");
    let prog = c_program("rt_limits", "12.9");
    let kv = key_values(&m.run(
        &["--memory", "1GiB"],
        &[prog.to_str().unwrap(), "malloc", "3"],
    ));
    assert_eq!(num(&kv, "chunks"), 192);
    assert_eq!(num(&kv, "free_holding"), 0);
}

#[test]
fn a_limit_smaller_than_a_context_still_gives_a_sane_view() {
    // HAMi-core answered cuMemGetInfo with an error here, breaking frameworks at start-up.
    let m = Machine::new("tiny", "1x16GiB");
    let prog = c_program("rt_limits", "12.9");
    let kv = key_values(&m.run(
        &["--memory", "128MiB"],
        &[prog.to_str().unwrap(), "malloc", "2"],
    ));
    assert_eq!(num(&kv, "total"), 128 * MIB);
    assert_eq!(num(&kv, "free_before"), 0, "free never underflows");
    assert_eq!(num(&kv, "chunks"), 0);
    assert_eq!(num(&kv, "error"), 2);
}
