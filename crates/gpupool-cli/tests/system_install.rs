//! The library installed system-wide as a node agent does it: listed in `/etc/ld.so.preload`
//! (no `LD_PRELOAD`), with the trusted limits file `/etc/gpupool/limits.conf`. Runs each program
//! in a private mount namespace where a copy of `/etc` holding those files is mounted over
//! `/etc` (needs root, as CI has).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A copy of /etc with our ld.so.preload and, optionally, a limits file.
fn etc_copy(test: &str, limits: Option<&str>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpupool-etc-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let st = Command::new("cp")
        .arg("-a")
        .arg("/etc")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(
        dir.join("ld.so.cache").exists() || st.success(),
        "copying /etc failed"
    );
    std::fs::write(
        dir.join("ld.so.preload"),
        format!("{}\n", lib_dir().join("libgpupool.so").display()),
    )
    .unwrap();
    if let Some(text) = limits {
        std::fs::create_dir_all(dir.join("gpupool")).unwrap();
        std::fs::write(dir.join("gpupool/limits.conf"), text).unwrap();
    }
    dir
}

/// Runs `cmd` with `etc` mounted over /etc in a new mount namespace.
fn run_with_etc(etc: &Path, cmd: &mut Command) -> Output {
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(["-m", "sh", "-c", "mount --bind \"$0\" /etc && exec \"$@\""])
        .arg(etc)
        .arg(program)
        .args(args);
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            wrapped.env(k, v);
        }
    }
    let out = wrapped.output().expect("unshare");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("unshare failed") && !err.contains("mount:"),
        "needs root for a mount namespace: {err}"
    );
    out
}

#[test]
fn ld_so_preload_limits_programs_and_leaves_others_alone() {
    let etc = etc_copy("preload", None);
    let out = run_with_etc(
        &etc,
        Command::new("sh").args(["-c", "echo hello; grep -c libgpupool.so /proc/self/maps"]),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("hello\n"),
        "{text}"
    );
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|n| n.parse::<u32>().unwrap_or(0) > 0),
        "the library is loaded: {text}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "a program without CUDA sees nothing"
    );

    let m = Machine::new("ld-so-preload", "1x16GiB");
    let mut cmd = Command::new(c_program("rt_limits", "12.9"));
    cmd.args(["malloc", "64"])
        .envs(m.sim_env())
        .env("GPUPOOL_MEMORY_LIMIT", "1GiB")
        .env("GPUPOOL_CONTEXT_MEMORY", "256MiB");
    let kv = key_values(&run_with_etc(&etc, &mut cmd));
    assert_eq!(num(&kv, "total"), GIB);
    assert_eq!(num(&kv, "allocated"), 768 * MIB);
    let _ = std::fs::remove_dir_all(&etc);
}

#[test]
fn the_trusted_limits_file_wins_over_everything_the_tenant_sets() {
    let etc = etc_copy("limits", Some("memory = 512MiB\ncontext_memory = 0\n"));
    let other = std::env::temp_dir().join(format!("gpupool-other-{}.conf", std::process::id()));
    std::fs::write(&other, "memory = 8GiB\n").unwrap();
    let m = Machine::new("trusted-file", "1x16GiB");
    let mut cmd = Command::new(c_program("rt_limits", "12.9"));
    cmd.args(["malloc", "64"])
        .envs(m.sim_env())
        .env("GPUPOOL_MEMORY_LIMIT", "4GiB")
        .env("CUDA_DEVICE_MEMORY_LIMIT", "4g")
        .env("GPUPOOL_LIMITS_FILE", &other);
    let kv = key_values(&run_with_etc(&etc, &mut cmd));
    assert_eq!(num(&kv, "total"), 512 * MIB);
    assert_eq!(num(&kv, "allocated"), 512 * MIB);
    let _ = std::fs::remove_dir_all(&etc);
    let _ = std::fs::remove_file(&other);
}
