//! The driver API as NVIDIA's runtime uses it (every function through `cuGetProcAddress_v2`):
//! symbol versions and per-thread-stream flags, VMM, extra contexts, pitch and `_ptsz` paths.
//! Each path runs twice: under the interception library, and through a remote GPU server whose
//! client has the same limit.

use crate::common;
use common::remote_server::*;
use common::*;
use std::collections::HashMap;

/// Where the program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// As a tenant on this host, with the interception library.
    Local,
    /// Through `gpupool run --remote` and `gpupool serve` on the machine.
    Remote,
}

const BOTH: [Via; 2] = [Via::Local, Via::Remote];

/// Runs `drv_paths PATH CHUNK_MIB` with device memory limit `limit` (one size per device) on a
/// fresh `spec` machine.
fn run_on(
    via: Via,
    spec: &str,
    path: &str,
    limit: &str,
    chunk_mib: u64,
) -> HashMap<String, String> {
    let m = Machine::new(&format!("drv-{path}-{via:?}"), spec);
    let prog = c_program("drv_paths", "driver");
    let args = [prog.to_str().unwrap(), path, &chunk_mib.to_string()];
    let out = match via {
        Via::Local => m.run(&["--memory", limit], &args),
        Via::Remote => {
            let server = Server::start(&m, "127.0.0.1:0", &format!("t {TOKEN} memory={limit}\n"));
            server.client(&args).output().unwrap()
        }
    };
    key_values(&out)
}

fn run_path(via: Via, path: &str, limit: &str, chunk_mib: u64) -> HashMap<String, String> {
    run_on(via, "1x16GiB", path, limit, chunk_mib)
}

/// Asserts that the program printed each `key value` pair.
fn expect_values(kv: &HashMap<String, String>, pairs: &[(&str, &str)]) {
    for (key, want) in pairs {
        assert_eq!(
            kv.get(*key).map(String::as_str),
            Some(*want),
            "{key}: {kv:?}"
        );
    }
}

/// Runs `path` locally and through a server (1 GiB limit on a 16 GiB card) and asserts that
/// both printed each `key value` pair.
fn expect_both(path: &str, pairs: &[(&str, &str)]) {
    for via in BOTH {
        let kv = run_path(via, path, "1GiB", 64);
        eprintln!("{via:?}: {kv:?}");
        expect_values(&kv, pairs);
    }
}

#[test]
fn lookups_honour_version_and_per_thread_flags() {
    let kv = run_path(Via::Local, "lookup", "1GiB", 64);
    for key in [
        "alloc_is_default",
        "async_ptsz_is_default",
        "async_variants_differ",
        "htod_ptds_is_driver",
        "probe_not_found",
    ] {
        assert_eq!(kv[key], "1", "{key}: {kv:?}");
    }
    // As driver 580 on an H100 (bench/gpu): success, no function, SYMBOL_NOT_FOUND.
    assert_eq!(kv["unknown_name_rc"], "0");
    assert_eq!(kv["unknown_name_status"], "1");
    // The remote client answers lookups itself, the same way for unknown names.
    let kv = run_path(Via::Remote, "lookup", "1GiB", 64);
    eprintln!("Remote: {kv:?}");
    assert_eq!(kv["probe_not_found"], "1");
    assert_eq!(kv["unknown_name_rc"], "0");
    assert_eq!(kv["unknown_name_status"], "1");
}

#[test]
fn stream_queries_and_host_work_as_pytorch_uses_them() {
    expect_both(
        "streams",
        &[
            ("capture_status", "0"),
            ("capture_empty", "1"),
            ("capture_ptsz_status", "0"),
            ("host_calls", "2"),
            ("stream_ctx_is_primary", "1"),
            ("green_ctx_null", "1"),
            ("flush_rc", "0"),
            ("capture_mode_was", "0"),
            ("capture_mode_kept", "2"),
        ],
    );
}

/// Runs `drv_paths PATH` through a server with call counting on; what the client printed on
/// stderr (a line per call number: how many were waited for, how many sent without waiting).
fn remote_call_counts(path: &str) -> String {
    let m = Machine::new(&format!("drv-{path}-round-trips"), "1x16GiB");
    let prog = c_program("drv_paths", "driver");
    let server = Server::start(&m, "127.0.0.1:0", &format!("t {TOKEN} memory=1GiB\n"));
    let out = server
        .client(&[prog.to_str().unwrap(), path, "64"])
        .env("GPUPOOL_REMOTE_STATS", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{path}: {err}");
    err
}

#[test]
fn many_streams_and_events_work_together_and_bad_flags_are_refused() {
    expect_both(
        "stream_names",
        &[
            ("streams_flags_kept", "1"),
            ("handles_distinct", "1"),
            ("events_done", "1"),
            ("elapsed_ok", "1"),
            ("untimed_elapsed_rc", "400"),
            ("bad_stream_flags_rc", "1"),
            ("bad_event_flags_rc", "1"),
            ("interprocess_timed_rc", "1"),
            ("null_stream_out_rc", "1"),
            ("null_event_out_rc", "1"),
            ("after_refusals_ok", "1"),
        ],
    );
}

#[test]
fn streams_and_events_are_created_and_destroyed_without_waiting_for_the_server() {
    // 32 streams and 32 events: their creations and destructions are all sent without
    // waiting; the refused flags and null out pointers are never sent.
    let err = remote_call_counts("stream_names");
    for (call, sent) in [(80, 25), (81, 8), (82, 32), (92, 32), (93, 32)] {
        assert!(
            err.contains(&format!("call {call}: waited 0, sent {sent}")),
            "call {call}: {err}"
        );
    }
}

#[test]
fn device_attributes_are_answered_alike_and_fetched_in_one_round_trip() {
    let local = run_path(Via::Local, "attributes", "1GiB", 64);
    let remote = run_path(Via::Remote, "attributes", "1GiB", 64);
    eprintln!("Local: {local:?}\nRemote: {remote:?}");
    assert!(local["answered"].parse::<u32>().unwrap() > 90, "{local:?}");
    expect_values(
        &remote,
        &[
            ("same_twice", "1"),
            ("past_known_rc", "1"),
            ("bad_device_rc", "101"),
            ("null_out_rc", "1"),
            ("warp_size", "32"),
            ("names_same", "1"),
            ("short_name_cut", "1"),
            ("bus_same", "1"),
        ],
    );
    for key in [
        "answered",
        "unknown",
        "sum",
        "same_twice",
        "past_known_rc",
        "bad_device_rc",
    ] {
        assert_eq!(local[key], remote[key], "{key}");
    }
    // 294 queries of known attributes: one fetch; an attribute past the fetched range and a
    // bad device are asked per call (the bad device's fetch failing first).
    let err = remote_call_counts("attributes");
    // A device's name and bus id: once per device, whatever the buffer's length.
    use gpupool_remote::calls::custom::{DEVICE_ATTRIBUTES, DEVICE_NAME, DEVICE_PCI_BUS_ID};
    for (call, waited) in [
        (DEVICE_ATTRIBUTES, 2),
        (20, 2),
        (DEVICE_NAME, 1),
        (DEVICE_PCI_BUS_ID, 1),
    ] {
        assert!(
            err.contains(&format!("call {call}: waited {waited}, sent 0")),
            "call {call}: {err}"
        );
    }
}

#[test]
fn kernels_of_real_gpu_code_report_attributes_and_occupancy() {
    // On a simulated 16 GiB card, under the interception library and through a server.
    expect_both(
        "kernels",
        &[
            ("max_threads", "1024"),
            ("blocks_per_sm", "8"),
            ("smem_of_2_blocks", "116224"),
        ],
    );
}

#[test]
fn what_cublas_looks_up_by_name_is_there_and_answers_like_a_driver() {
    // cuBLAS resolves these with dlsym and fails `cublasCreate` when one is missing; the
    // runtime and PyTorch resolve the rest through cuGetProcAddress. Error codes: 101 invalid device (peer access to its own device), 705 peer access not enabled,
    // 801 not supported, 401 illegal state (no capture under way), 1 invalid value.
    expect_both(
        "dlsym_needs",
        &[
            ("missing_count", "0"),
            ("kernel_library_rc", "0"),
            ("kernel_library_same", "1"),
            ("cache_config_rc", "0"),
            ("enable_own_device_rc", "101"),
            ("disable_rc", "705"),
            ("link_rc", "0"),
            ("stream_mem_ops", "0"),
            ("wait_value_rc", "801"),
            ("end_capture_rc", "401"),
            ("instantiate_rc", "0"),
            ("prefetch_rc", "0"),
            ("prefetch_outside_rc", "1"),
            ("advise_rc", "0"),
            // Real GPU code's parameters are unknown to the simulator: index 0 is invalid.
            ("param_info_rc", "1"),
            ("kernel_count", "0"),
            ("set_attr_rc", "0"),
            ("get_attr_rc", "0"),
            ("copy_attrs_rc", "0"),
            ("stream_green_rc", "0"),
            ("stream_green_none", "1"),
            ("green_create_rc", "801"),
        ],
    );
}

#[test]
fn a_library_s_kernels_are_listed_as_handles_that_work() {
    expect_both(
        "enumerate",
        &[
            ("kernel_count", "3"),
            ("enumerate_rc", "0"),
            ("enumerated_are_named", "1"),
            ("enumerated_function_rc", "0"),
            ("enumerated_library_same", "1"),
            ("enumerate_none_rc", "0"),
        ],
    );
}

#[test]
fn kernels_asked_by_name_are_the_same_kernel_each_time_and_launch() {
    expect_both(
        "kernel_names",
        &[
            ("same_name_same_kernel", "1"),
            ("other_name_other_kernel", "1"),
            ("kernel_library_same", "1"),
            ("launches_rc", "0"),
            ("missing_refused", "1"),
            ("after_missing_rc", "0"),
        ],
    );
}

#[test]
fn kernels_asked_by_name_cost_no_round_trip_until_launched() {
    // Five asks for three names (one missing): each name sent once, without waiting; the
    // parameter sizes asked once per kernel launched (a, b, and the missing one's refusal);
    // the old waiting call never used.
    let err = remote_call_counts("kernel_names");
    let custom = |id: u16| format!("call {id}: ");
    use gpupool_remote::calls::custom::{LIBRARY_GET_KERNEL, NAME_KERNEL, PARAM_LAYOUT};
    for (id, want) in [
        (NAME_KERNEL, "waited 0, sent 3"),
        (PARAM_LAYOUT, "waited 3, sent 0"),
    ] {
        assert!(
            err.contains(&format!("{}{want}", custom(id))),
            "{id}: {err}"
        );
    }
    assert!(!err.contains(&custom(LIBRARY_GET_KERNEL)), "{err}");
}

#[test]
fn real_gpu_code_loads_from_a_file() {
    // 301: CUDA_ERROR_FILE_NOT_FOUND.
    expect_both(
        "module_file",
        &[
            ("load_rc", "0"),
            ("function_rc", "0"),
            ("missing_file_rc", "301"),
        ],
    );
}

#[test]
fn the_jit_linker_links_loads_and_reports_in_the_callers_logs() {
    // 301: FILE_NOT_FOUND, 400: INVALID_HANDLE, 200: INVALID_IMAGE, 218: INVALID_PTX,
    // 1: INVALID_VALUE.
    let pairs = [
        ("add_rc", "0"),
        ("add_file_rc", "0"),
        ("add_code_rc", "0"),
        ("missing_file_rc", "301"),
        ("complete_rc", "0"),
        ("image_nonempty", "1"),
        ("info_mentions_inputs", "1"),
        ("info_size_matches", "1"),
        ("wall_time_set", "1"),
        ("load_rc", "0"),
        ("functions_rc", "0 0 0"),
        ("launch_rc", "0 0"),
        ("destroy_rc", "0"),
        ("destroy_again_rc", "400"),
        ("add_after_destroy_rc", "400"),
        ("twice_adds", "0 0"),
        ("twice_complete_rc", "200"),
        ("twice_error_named", "1"),
        ("malformed_rc", "218"),
        ("malformed_error_named", "1"),
        ("bad_kind_rc", "1"),
        ("buffer_without_size_rc", "1"),
        ("loadex_bad_rc", "200"),
        ("loadex_error_logged", "1"),
        ("loadex_ok_rc", "0"),
        ("loadex_ok_log_empty", "1"),
        ("libload_logged_if_refused", "1"),
    ];
    for via in BOTH {
        let kv = run_path(via, "link", "1GiB", 64);
        eprintln!("{via:?}: {kv:?}");
        expect_values(&kv, &pairs);
        // Host addresses cannot reach a server: 801 (NOT_SUPPORTED) through one.
        let pointing = if via == Via::Remote { "801" } else { "0" };
        expect_values(&kv, &[("pointing_rc", pointing)]);
        if via == Via::Local {
            expect_values(&kv, &[("libload_bad_rc", "200")]);
        }
    }
}

#[test]
fn real_ptx_linked_with_an_extern_function_loads_and_launches() {
    // What the simulator cannot show (the kernel computing 42 from 41) the GPU check's remote
    // section judges on a real card, locally and through a server.
    expect_both(
        "jit_ptx",
        &[
            ("add_kernel_rc", "0"),
            ("add_function_rc", "0"),
            ("complete_rc", "0"),
            ("load_rc", "0"),
            ("function_rc", "0"),
            ("launch_rc", "0"),
            ("sync_rc", "0"),
        ],
    );
}

#[test]
fn pitched_copies_larger_than_a_message_arrive_whole_plain_and_in_graphs() {
    // 40 MB of 2D rows, 40 MB of 3D slices from slice 1 and row 100, and the 2D copies
    // captured in a graph replayed with new host data: through a server each goes in pieces.
    expect_both(
        "big_copies",
        &[
            ("big_2d_rc", "0 0"),
            ("big_2d_ok", "1"),
            ("big_3d_rc", "0 0"),
            ("big_3d_ok", "1"),
            ("big_captured_rc", "0 0"),
            ("big_replays_ok", "1"),
        ],
    );
}

#[test]
fn launch_event_attributes_record_their_events_with_the_launch() {
    expect_both(
        "launch_events",
        &[
            ("launch_rc", "0"),
            ("sync_rc", "0"),
            ("completion_covers_kernel", "1"),
            ("programmatic_covers_kernel", "1"),
            ("ctx_sync_rc", "0"),
        ],
    );
}

/// What the "ipc" path prints when its child, a second process, opens the handles.
const IPC_OPENED: [(&str, &str); 21] = [
    ("same_handle_twice", "1"),
    ("open_own_rc", "201"),
    ("host_handle_rc", "1"),
    ("plain_event_handle_rc", "1"),
    ("timed_interprocess_rc", "1"),
    ("busy_kernel", "1"),
    ("child_open_event_rc", "0"),
    ("child_event_pending", "1"),
    ("child_stream_wait_rc", "0"),
    ("child_event_sync_rc", "0"),
    ("child_event_done", "1"),
    ("child_open_rc", "0"),
    ("child_sees_pattern", "1"),
    ("child_open_again_same", "1"),
    ("child_close_rc", "0"),
    ("child_close_last_rc", "0"),
    ("child_close_extra_rc", "1"),
    ("child_forged_refused", "1"),
    ("child_exit", "0"),
    ("child_writes_seen", "1"),
    ("free_rc", "0"),
];

#[test]
fn interprocess_handles_share_memory_and_events_with_a_second_process() {
    // The child finds the event pending behind the parent's 3 s kernel, waits for it, sees
    // and rewrites the memory; the parent sees the child's writes.
    expect_both("ipc", &IPC_OPENED);
}

#[test]
fn every_function_pytorch_s_driver_api_table_needs_is_there() {
    expect_both(
        "torch_driver_api",
        &[("nvml_loaded", "1"), ("resolved", "29")],
    );
}

#[test]
fn physical_memory_exported_as_a_descriptor_maps_in_a_second_process() {
    let kv = run_path(Via::Local, "vmm_share", "1GiB", 64);
    expect_values(
        &kv,
        &[
            ("fd_supported", "1"),
            ("plain_export_refused", "1"),
            ("bogus_import_refused", "1"),
            ("exported_fd", "1"),
            ("self_import_rc", "0"),
            ("child_import_rc", "0"),
            ("child_sees_pattern", "1"),
            ("child_release_rc", "0"),
            ("child_exit", "0"),
            ("child_writes_seen", "1"),
        ],
    );
    // A server's descriptors cannot reach its client: the device says so, and an export is
    // refused (CUDA_ERROR_NOT_SUPPORTED).
    let kv = run_path(Via::Remote, "vmm_share", "1GiB", 64);
    expect_values(
        &kv,
        &[("fd_supported", "0"), ("unsupported_export_rc", "801")],
    );
}

#[test]
fn another_tenant_cannot_open_a_tenant_s_interprocess_handles() {
    let m = Machine::new("drv-ipc-foreign", "1x16GiB");
    let other = "fedcba9876543210fedcba9876543210";
    let clients = format!("t {TOKEN} memory=1GiB\nother {other} memory=1GiB\n");
    let server = Server::start(&m, "127.0.0.1:0", &clients);
    let other_token = server.dir.join("other-token");
    std::fs::write(&other_token, other).unwrap();
    let prog = c_program("drv_paths", "driver");
    let out = server
        .client(&[prog.to_str().unwrap(), "ipc", "64"])
        .env("DRV_IPC_CHILD_TOKEN_FILE", &other_token)
        .output()
        .unwrap();
    let kv = key_values(&out);
    expect_values(
        &kv,
        &[
            ("same_handle_twice", "1"),
            ("child_open_event_rc", "1"),
            ("child_open_rc", "1"),
            ("child_exit", "1"),
            ("child_writes_seen", "0"),
            ("free_rc", "0"),
        ],
    );
}

#[test]
fn copies_between_two_devices_reach_the_other_device() {
    // A source that is no allocation is refused (through a server: not the tenant's memory).
    for via in BOTH {
        let kv = run_on(via, "2x16GiB", "peer", "1GiB,1GiB", 64);
        eprintln!("{via:?}: {kv:?}");
        expect_values(
            &kv,
            &[
                ("peer_rc", "0"),
                ("peer_ok", "1"),
                ("peer_async_rc", "0"),
                ("peer_async_ok", "1"),
                ("peer_from_nowhere_rc", "1"),
            ],
        );
    }
}

#[test]
fn the_tools_table_names_the_current_context_as_cublaslt_asks() {
    expect_both(
        "tools_context",
        &[
            ("tools_current_rc", "0"),
            ("tools_current_is_current", "1"),
            ("identity_rc", "0"),
            ("identity_matches", "1"),
        ],
    );
}

#[test]
fn tensor_maps_are_encoded_checked_and_readdressed_like_a_driver_does() {
    // Through a server the descriptor is the server driver's, and the address must be the
    // tenant's; locally nothing looks at the address (a driver does not either).
    for via in BOTH {
        let kv = run_path(via, "tensor_maps", "1GiB", 64);
        eprintln!("{via:?}: {kv:?}");
        let foreign = if via == Via::Remote { "1" } else { "0" };
        expect_values(
            &kv,
            &[
                ("tiled_rc", "0"),
                ("same_arguments_same_map", "1"),
                ("other_address_other_map", "1"),
                ("replace_rc", "0"),
                ("replaced_equals_encoded", "1"),
                ("replace_misaligned_rc", "1"),
                ("misaligned_rc", "1"),
                ("rank_6_rc", "1"),
                ("odd_stride_rc", "1"),
                ("wider_than_swizzle_rc", "1"),
                ("im2col_rc", "0"),
                ("foreign_rc", foreign),
            ],
        );
    }
}

#[test]
fn a_repeated_tensor_map_encode_is_answered_by_the_client() {
    // The "tensor_maps" path asks eleven times: the repeated encode is answered from what the
    // client kept and rank 6 is refused before anything is sent, so nine reach the server.
    let err = remote_call_counts("tensor_maps");
    let call = gpupool_remote::calls::custom::TENSOR_MAP;
    assert!(
        err.contains(&format!("call {call}: waited 9, sent 0")),
        "{err}"
    );
}

#[test]
fn real_gpu_code_has_device_variables_and_cluster_occupancy() {
    // A 16 GiB card has 108 multiprocessors: 54 clusters of two blocks. Through a server the
    // variable's address is the session's until the library is unloaded.
    expect_both(
        "variables",
        &[
            ("clusters_of_2", "54"),
            ("global_same", "1"),
            ("global_bytes", "1048576"),
            ("global_data_ok", "1"),
            ("module_global_same", "1"),
            ("unified_copy_ok", "1"),
            ("after_unload_rc", "1"),
        ],
    );
}

#[test]
fn vmm_physical_memory_is_limited_and_usable() {
    for via in BOTH {
        let kv = run_path(via, "vmm", "1GiB", 64);
        eprintln!("{via:?}: {kv:?}");
        assert_eq!(kv["vmm_data_ok"], "1");
        assert_eq!(num(&kv, "allocated"), 768 * MIB);
        assert_eq!(num(&kv, "error"), 2);
        assert_eq!(num(&kv, "free_after"), 768 * MIB);
    }
}

#[test]
fn extra_contexts_cost_memory() {
    for via in BOTH {
        let kv = run_path(via, "ctx", "1GiB", 64);
        eprintln!("{via:?}: {kv:?}");
        assert_eq!(
            num(&kv, "chunks"),
            3,
            "three 256 MiB contexts fit beside the primary one"
        );
        assert_eq!(num(&kv, "error"), 2);
        assert_eq!(num(&kv, "free_after"), 768 * MIB);
    }
}

#[test]
fn per_thread_stream_allocations_are_limited() {
    for via in BOTH {
        let kv = run_path(via, "ptsz", "1GiB", 64);
        eprintln!("{via:?}: {kv:?}");
        assert_eq!(num(&kv, "allocated"), 768 * MIB);
        assert_eq!(num(&kv, "free_after"), 768 * MIB);
    }
}

#[test]
fn pitch_allocations_count_pitch_times_height() {
    // 1-byte-wide rows still cost a whole 512-byte pitch each.
    for via in BOTH {
        let kv = run_path(via, "pitch", "1GiB", 64);
        eprintln!("{via:?}: {kv:?}");
        assert_eq!(num(&kv, "pitch"), 512);
        assert_eq!(num(&kv, "allocated"), 768 * MIB);
        assert_eq!(num(&kv, "free_holding"), 0);
    }
}

#[test]
fn dlsym_path_is_limited_too() {
    let m = Machine::new("probe-dlsym", "1x16GiB");
    for extra in [&[][..], &["--proc-address"][..]] {
        let mut cmd = vec![
            gpupool().to_str().unwrap().to_string(),
            "probe".into(),
            "--chunk".into(),
            "128MiB".into(),
        ];
        cmd.extend(extra.iter().map(|s| s.to_string()));
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let out = m.run(&["--memory", "2GiB"], &cmd);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["total"], 2 * GIB);
        assert_eq!(r["device_total"], 2 * GIB);
        assert_eq!(r["allocated"], 2 * GIB - 256 * MIB);
        assert_eq!(r["stop_error"], 2);
    }
}

#[test]
fn errors_before_init_and_without_context_are_the_drivers() {
    for via in BOTH {
        let kv = run_path(via, "errors", "1GiB", 64);
        eprintln!("{via:?}: {kv:?}");
        assert_eq!(
            num(&kv, "count_before_init"),
            3,
            "CUDA_ERROR_NOT_INITIALIZED"
        );
        assert_eq!(num(&kv, "info_before_init"), 3);
        assert_eq!(
            num(&kv, "info_without_context"),
            201,
            "CUDA_ERROR_INVALID_CONTEXT"
        );
        assert_eq!(num(&kv, "alloc_without_context"), 201);
        assert_eq!(num(&kv, "init_bad_flags"), 1, "CUDA_ERROR_INVALID_VALUE");
    }
}

#[test]
fn pool_allocations_are_charged_to_the_pools_device() {
    for via in BOTH {
        let kv = run_on(via, "2x16GiB", "pool1", "1GiB,2GiB", 64);
        eprintln!("{via:?}: {kv:?}");
        // Device 1's limit (2 GiB, less this process's context there), not device 0's.
        assert_eq!(num(&kv, "allocated"), 2 * GIB - 256 * MIB);
        assert_eq!(num(&kv, "error"), 2);
        assert_eq!(num(&kv, "free_holding"), 768 * MIB, "device 0 untouched");
    }
}

#[test]
fn memory_a_pool_keeps_is_charged_until_it_gives_it_back() {
    // 1 GiB limit, 256 MiB of it the context: 768 MiB of 64 MiB blocks.
    for via in BOTH {
        let kv = run_path(via, "pool_keep", "1GiB", 64);
        eprintln!("{via:?}: {kv:?}");
        assert_eq!(num(&kv, "pooled"), 12);
        assert_eq!(
            num(&kv, "kept_after_sync"),
            768 * MIB,
            "threshold: keep all"
        );
        assert_eq!(
            num(&kv, "free_while_kept"),
            0,
            "what the pool keeps is in use"
        );
        assert_eq!(num(&kv, "pooled_again"), 12, "served from what it keeps");
        // Plain allocations get the whole limit: the pool gave its memory back first, so
        // the process never held more than its limit.
        assert_eq!(num(&kv, "allocated"), 768 * MIB);
        assert_eq!(num(&kv, "error"), 2);
        assert_eq!(num(&kv, "kept_at_limit"), 0);
        assert_eq!(num(&kv, "kept_with_threshold_0"), 0);
        assert_eq!(
            num(&kv, "free_after"),
            768 * MIB,
            "given back at the synchronisation, no longer charged"
        );
    }
}

#[test]
fn memory_a_pool_gives_back_at_a_synchronisation_is_no_longer_charged() {
    // Four 128 MiB blocks freed into a pool that keeps nothing past a synchronisation: after
    // each kind of synchronisation the tenant, as another process reads it, is charged its
    // 256 MiB context only, though the program asked nothing about memory since.
    for via in BOTH {
        let m = Machine::new(&format!("pool-release-{via:?}"), "1x16GiB");
        let prog = c_program("drv_paths", "driver");
        let args = [prog.to_str().unwrap(), "pool_release", "128"];
        let server = (via == Via::Remote)
            .then(|| Server::start(&m, "127.0.0.1:0", &format!("t {TOKEN} memory=1GiB\n")));
        let (cmd, tenant) = match &server {
            None => (
                m.run_cmd(&["--tenant", "a", "--memory", "1GiB"], &args),
                "a",
            ),
            Some(server) => (server.client(&args), "remote-t"),
        };
        let mut holder = Holder::start(cmd);
        let used = || {
            m.tenant(tenant)["devices"][0]["used_bytes"]
                .as_u64()
                .unwrap()
        };
        let mut after = vec![used()];
        for _ in 0..2 {
            holder.go_on();
            let mut line = String::new();
            std::io::BufRead::read_line(&mut holder.out, &mut line).unwrap();
            assert_eq!(line.trim(), "held");
            after.push(used());
        }
        eprintln!("{via:?}: charged after each synchronisation {after:?}");
        assert_eq!(
            after,
            [256 * MIB; 3],
            "stream, context, event synchronisation"
        );
        holder.go_on();
        let rest = holder.finish();
        assert!(
            rest.contains(&format!("free_after {}", 768 * MIB)),
            "{rest}"
        );
    }
}

#[test]
fn graph_memory_is_charged_when_launched_and_a_launch_past_the_limit_is_refused() {
    // 1 GiB limit, 256 MiB of it the context; the graph allocates 512 MiB when launched.
    for via in BOTH {
        let kv = run_path(via, "graph_mem", "1GiB", 64);
        eprintln!("{via:?}: {kv:?}");
        expect_values(&kv, &[("node_types", "10,2,11"), ("launch_rc", "0")]);
        assert_eq!(
            num(&kv, "free_after_recording"),
            768 * MIB,
            "recording takes nothing"
        );
        assert_eq!(num(&kv, "free_while_graph_keeps"), 256 * MIB);
        // Plain allocations get the whole limit: the device's graph memory was trimmed first.
        assert_eq!(num(&kv, "allocated"), 768 * MIB);
        assert_eq!(num(&kv, "error"), 2);
        let refused = [num(&kv, "launch_at_limit_rc"), num(&kv, "sync_at_limit_rc")];
        assert!(refused.contains(&2), "launch past the limit: {refused:?}");
        assert_eq!(num(&kv, "launch_after_free_rc"), 0);
        assert_eq!(
            num(&kv, "free_after"),
            256 * MIB,
            "the device keeps the graph's memory"
        );
        // The device's graph memory, as the driver reports it.
        assert_eq!(num(&kv, "graph_reserved"), 512 * MIB);
        assert_eq!(num(&kv, "graph_reserved_at_limit"), 0);
        assert_eq!(num(&kv, "graph_reserved_after_refusal"), 0);
        // Built node by node: the same.
        assert_eq!(num(&kv, "built_dptr_set"), 1);
        assert_eq!(num(&kv, "built_held"), 12);
        let refused = [
            num(&kv, "built_launch_at_limit_rc"),
            num(&kv, "built_sync_at_limit_rc"),
        ];
        assert!(refused.contains(&2), "built, past the limit: {refused:?}");
        assert_eq!(num(&kv, "built_launch_rc"), 0);
        // Instantiated with the upload flag: charged (or refused) at the upload.
        assert_eq!(num(&kv, "upload_reserved_before"), 0);
        assert_eq!(num(&kv, "upload_held"), 12);
        let refused = [
            num(&kv, "upload_at_limit_rc"),
            num(&kv, "upload_sync_at_limit_rc"),
        ];
        assert!(refused.contains(&2), "upload past the limit: {refused:?}");
        assert_eq!(num(&kv, "upload_reserved_at_limit"), 0);
        assert_eq!(num(&kv, "upload_rc"), 0);
        assert_eq!(num(&kv, "upload_result"), 0);
        assert_eq!(num(&kv, "upload_reserved"), 512 * MIB);
        assert_eq!(
            num(&kv, "free_after_upload"),
            256 * MIB,
            "charged at the upload"
        );
        assert_eq!(num(&kv, "uploaded_launch_rc"), 0);
        if via == Via::Local {
            // Refused before the driver is asked.
            for key in [
                "launch_at_limit_rc",
                "built_launch_at_limit_rc",
                "upload_at_limit_rc",
            ] {
                assert_eq!(num(&kv, key), 2, "{key}");
            }
        }
    }
}

#[test]
fn a_captured_stream_records_a_graph_that_replays_its_work() {
    // Locally every kind of work is captured; through a server, copies from host memory go
    // through a staging buffer each launch fills, and host functions are refused on a
    // captured stream (the server cannot call the client).
    for via in BOTH {
        let kv = run_path(via, "capture", "1GiB", 64);
        eprintln!("{via:?}: {kv:?}");
        let local = via == Via::Local;
        expect_values(
            &kv,
            &[
                ("legacy_stream_rc", "900"),
                ("begin_twice_rc", "401"),
                ("status_during", "1"),
                ("joined_status", "1"),
                ("end_on_joined_rc", "903"),
                ("status_after", "0"),
                ("joined_status_after", "0"),
                ("nothing_ran", "1"),
                ("id_set", "1"),
                ("same_id", "1"),
                ("new_id", "1"),
                ("sync_in_capture_rc", "900"),
                ("status_broken", "2"),
                ("end_broken_rc", "901"),
                ("graph_null", "1"),
                ("status_end", "0"),
                ("legacy_work_rc", "906"),
                ("implicit_status", "2"),
                ("implicit_end_rc", "901"),
                ("legacy_beside_nonblocking_rc", "0"),
                ("nodes_rc", "0"),
                ("htod_rc", "0"),
                ("host_func_rc", if local { "0" } else { "801" }),
                ("host_calls", if local { "2" } else { "0" }),
            ],
        );
        // Kernel 0, memset 2, memcpy 1, host 3: in the order captured, both streams' work.
        let (nodes, types) = if local {
            ("7", "0,0,0,2,1,3,0")
        } else {
            ("6", "0,0,0,2,1,0")
        };
        assert_eq!(
            (kv["nodes"].as_str(), kv["node_types"].as_str()),
            (nodes, types)
        );
        // The set ran before the copy, and the copy read the host memory when the graph ran.
        assert_eq!(kv["data"], "5 6 7 8 7 7 7 7", "{via:?}");
        // Each replay runs the four 2 ms kernels; nothing ran while capturing.
        let ms: f64 = kv["replay_ms"].parse().unwrap();
        assert!((15.9..200.0).contains(&ms), "two replays took {ms} ms");
    }
}

#[test]
fn a_graph_built_node_by_node_runs_each_node_in_order() {
    // A kernel, a set, a copy between device buffers, a copy to host memory, a host function,
    // a child graph of one kernel and an empty node, launched twice. Through a server the
    // host function is not forwarded; the rest runs there (the copy to host memory through a
    // staging buffer), and a copy past the end of the session's memory is refused.
    for via in BOTH {
        let kv = run_path(via, "graph_nodes", "1GiB", 64);
        eprintln!("{via:?}: {kv:?}");
        let local = via == Via::Local;
        // kernel 0, memset 2, memcpy 1 (device to device, then to host), host 3, child
        // graph 4, empty 5
        let (nodes, types) = if local {
            ("7", "0,2,1,1,3,4,5")
        } else {
            ("6", "0,2,1,1,4,5")
        };
        expect_values(
            &kv,
            &[
                ("nodes", nodes),
                ("node_types", types),
                ("set_ok", "1"),
                ("device_copy_ok", "1"),
                ("memcpy_node_rc", "0"),
                ("host_node_rc", if local { "0" } else { "801" }),
                ("host_calls", if local { "2" } else { "0" }),
                ("copied_ok", "1"),
                ("bad_element_size_rc", "1"),
                ("own_child_rc", "1"),
            ],
        );
        if !local {
            assert_eq!(kv["copy_past_end_rc"], "1", "{kv:?}");
        }
        // Two 2 ms kernels (one in the child graph) per launch.
        let ms: f64 = kv["replay_ms"].parse().unwrap();
        assert!((7.9..100.0).contains(&ms), "two launches took {ms} ms");
    }
}
