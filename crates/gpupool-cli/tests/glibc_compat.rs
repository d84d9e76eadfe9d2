//! The library shipped into containers (`scripts/build-glibc217`) needs no glibc newer than
//! 2.17, exports its hooks, and enforces limits like the development build; so does the
//! remote-GPU client library.

mod common;
use common::remote_server::{Server, TOKEN};
use common::*;
use std::process::Command;

fn container_library() -> std::path::PathBuf {
    let p = root().join("target/glibc217/x86_64-unknown-linux-gnu/release/libgpupool.so");
    assert!(
        p.is_file(),
        "{} missing: run scripts/build-glibc217 (scripts/test does)",
        p.display()
    );
    p
}

fn dynamic_symbols(lib: &std::path::Path) -> String {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(lib)
        .output()
        .expect("objdump");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Highest `GLIBC_x.y` version a library needs.
fn max_glibc(symbols: &str) -> (u32, u32) {
    symbols
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .unwrap_or((0, 0))
}

#[test]
fn parser_reads_versions() {
    assert_eq!(
        max_glibc(
            "0 DF *UND* (GLIBC_2.2.5) dlopen\n0 DF *UND* (GLIBC_2.17) x\n0 DF *UND* GLIBC_2.3.4 y"
        ),
        (2, 17)
    );
    assert_eq!(max_glibc("0 DF *UND* (GLIBC_2.34) dlsym"), (2, 34));
}

#[test]
fn the_remote_client_needs_no_glibc_newer_than_2_17() {
    let lib = container_library().with_file_name("libgpupool_remote_client.so");
    let symbols = dynamic_symbols(&lib);
    assert!(
        max_glibc(&symbols) <= (2, 17),
        "needs GLIBC_{:?}",
        max_glibc(&symbols)
    );
    for export in [
        "cuInit",
        "cuGetProcAddress_v2",
        "cuGetExportTable",
        "cuLaunchKernel",
    ] {
        assert!(
            symbols
                .lines()
                .any(|l| l.contains(" .text") && l.ends_with(&format!(" {export}"))),
            "{export} not exported"
        );
    }
}

#[test]
fn needs_no_glibc_newer_than_2_17() {
    let symbols = dynamic_symbols(&container_library());
    assert!(
        max_glibc(&symbols) <= (2, 17),
        "needs GLIBC_{:?}",
        max_glibc(&symbols)
    );
    // The development build, linked on this machine, is expected to need more: the check can fail.
    assert!(max_glibc(&dynamic_symbols(&lib_dir().join("libgpupool.so"))) > (2, 17));
    for hook in [
        "cuMemAlloc_v2",
        "cuGetProcAddress_v2",
        "cuMemAllocAsync_ptsz",
        "nvmlDeviceGetMemoryInfo_v2",
        "dlsym",
    ] {
        assert!(
            symbols
                .lines()
                .any(|l| l.contains(" g ") && l.contains(".text") && l.trim_end().ends_with(hook)),
            "{hook} not exported"
        );
    }
}

#[test]
fn container_build_enforces_limits() {
    let m = Machine::new("glibc217", "1x16GiB");
    let out = Command::new(c_program("rt_limits", "12.9"))
        .args(["malloc", "128"])
        .envs(m.sim_env())
        .env("LD_PRELOAD", container_library())
        .env("GPUPOOL_MEMORY_LIMIT", "1GiB")
        .env("GPUPOOL_CONTEXT_MEMORY", "256MiB")
        .output()
        .unwrap();
    let kv = key_values(&out);
    assert_eq!(num(&kv, "total"), GIB);
    assert_eq!(num(&kv, "allocated"), 768 * MIB);
    assert_eq!(num(&kv, "error"), 2);
}

#[test]
fn the_container_build_of_the_client_runs_a_runtime_program() {
    let dir = root().join("target/glibc217/x86_64-unknown-linux-gnu/release");
    assert!(
        dir.join("libgpupool_remote_client.so").is_file(),
        "run scripts/build-glibc217 (scripts/test does)"
    );
    let m = Machine::new("remote-glibc217", "1xH100");
    let server = Server::start(&m, "127.0.0.1:0", &format!("alpha {TOKEN}\n"));
    let prog = c_program("rt_basic", "12.9");
    let out = server
        .client(&[prog.to_str().unwrap()])
        .env("GPUPOOL_LIB_DIR", &dir)
        .output()
        .unwrap();
    assert_eq!(key_values(&out)["name"], "NVIDIA H100 80GB HBM3");
}
