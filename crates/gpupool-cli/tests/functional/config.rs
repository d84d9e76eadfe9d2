//! Bad configuration is a clear error naming the input, never a silent unlimited mode; HAMi's
//! variables and the limits file are honoured.

use crate::common;
use common::*;
use std::process::Command;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs rt_basic on a fresh machine with the library preloaded by hand and `env` set.
fn preloaded(test: &str, env: &[(&str, &str)]) -> std::process::Output {
    let m = Machine::new(test, "1x16GiB");
    let mut cmd = Command::new(c_program("rt_basic", "12.9"));
    cmd.envs(m.sim_env())
        .env("LD_PRELOAD", lib_dir().join("libgpupool.so"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn cli_rejects_bad_sizes_specs_and_devices() {
    for (args, needle) in [
        (&["run", "--memory", "lots", "--", "true"][..], "lots"),
        (&["run", "--memory", "0", "--", "true"][..], "larger than 0"),
        (&["run", "--sim", "2xfoo", "--", "true"][..], "foo"),
        (
            &["run", "--sim", "1x8GiB", "--devices", "0,x", "--", "true"][..],
            "\"x\"",
        ),
        (&["run", "--tenant", "../x", "--", "true"][..], "--tenant"),
        (
            &[
                "run",
                "--sim",
                "1x8GiB",
                "--context-memory",
                "big",
                "--",
                "true",
            ][..],
            "big",
        ),
    ] {
        let out = Command::new(gpupool())
            .args(args)
            .env("GPUPOOL_LIB_DIR", lib_dir())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    let out = Command::new(gpupool()).args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a command is required");
}

#[test]
fn invalid_env_limit_fails_cuda_initialisation() {
    for (var, value) in [
        ("GPUPOOL_MEMORY_LIMIT", "lots"),
        ("CUDA_DEVICE_MEMORY_LIMIT", "-1"),
        ("GPUPOOL_LOG", "loud"),
    ] {
        let out = preloaded(&format!("badenv-{var}"), &[(var, value)]);
        assert!(
            !out.status.success(),
            "{var}={value} must not run unlimited"
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));
        assert!(stderr(&out).contains(var), "{var}: {}", stderr(&out));
    }
}

#[test]
fn hami_variables_set_the_limit() {
    let out = preloaded(
        "hami",
        &[
            ("CUDA_DEVICE_MEMORY_LIMIT_0", "1536m"),
            ("GPUPOOL_CONTEXT_MEMORY", "256MiB"),
        ],
    );
    let kv = key_values(&out);
    assert_eq!(num(&kv, "meminfo_total"), 1536 * MIB);
    assert_eq!(num(&kv, "meminfo_free"), 1280 * MIB);
}

#[test]
fn limits_file_wins_over_env_and_is_validated() {
    let dir = std::env::temp_dir().join(format!("gpupool-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.conf");
    std::fs::write(
        &good,
        "# written by the node agent\nmemory = 1GiB\ncontext_memory = 0\n",
    )
    .unwrap();
    let file = good.to_str().unwrap();
    let kv = key_values(&preloaded(
        "file",
        &[
            ("GPUPOOL_LIMITS_FILE", file),
            ("GPUPOOL_MEMORY_LIMIT", "8GiB"),
        ],
    ));
    assert_eq!(
        num(&kv, "meminfo_total"),
        GIB,
        "the file's limit, not the env's"
    );
    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "memory = 1GiB\nmemroy = 2GiB\n").unwrap();
    let out = preloaded("badfile", &[("GPUPOOL_LIMITS_FILE", bad.to_str().unwrap())]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("bad.conf") && stderr(&out).contains("line 2"),
        "{}",
        stderr(&out)
    );
    let out = preloaded(
        "nofile",
        &[("GPUPOOL_LIMITS_FILE", "/nonexistent/limits.conf")],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nonexistent/limits.conf"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unusable_or_foreign_region_is_an_error() {
    let out = preloaded(
        "noregion",
        &[
            ("GPUPOOL_MEMORY_LIMIT", "1GiB"),
            ("GPUPOOL_REGION", "/proc/gpupool/region"),
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/proc/gpupool/region"),
        "{}",
        stderr(&out)
    );
    let garbage = std::env::temp_dir().join(format!("gpupool-garbage-{}", std::process::id()));
    std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
    let out = preloaded(
        "garbage",
        &[
            ("GPUPOOL_MEMORY_LIMIT", "1GiB"),
            ("GPUPOOL_REGION", garbage.to_str().unwrap()),
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("incompatible layout"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_file(&garbage);
}

#[test]
fn quiet_by_default_and_log_level_is_one_variable() {
    let out = preloaded("quiet", &[("GPUPOOL_MEMORY_LIMIT", "2GiB")]);
    assert!(out.status.success());
    assert_eq!(stderr(&out), "", "nothing on stderr by default");
    let out = preloaded(
        "loud",
        &[("GPUPOOL_MEMORY_LIMIT", "2GiB"), ("GPUPOOL_LOG", "info")],
    );
    assert!(
        stderr(&out).contains("info: limits from"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_sim_state_is_reported() {
    let m = Machine::new("spec-mismatch", "1x8GiB");
    let probe = [gpupool().to_str().unwrap().to_string(), "probe".into()];
    let probe: Vec<&str> = probe.iter().map(String::as_str).collect();
    assert!(m.run(&[], &probe).status.success());
    // The same state folder with another spec: a clear error, not a silently different card.
    let other = Machine {
        spec: "2x8GiB".into(),
        state: m.state.clone(),
    };
    let out = other.run(&[], &probe);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("differs from the spec"),
        "{}",
        stderr(&out)
    );
    std::mem::forget(other);
}

#[test]
fn bad_simulator_spec_or_state_names_the_input() {
    let prog = c_program("rt_basic", "12.9");
    let m = Machine::new("sim-bad-spec", "1x16GiB");
    let mut env = m.sim_env();
    for (k, v) in env.iter_mut() {
        if k == "GPUPOOL_SIM_SPEC" {
            *v = "3xfoo".into();
        }
    }
    let out = Command::new(&prog).envs(env).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("GPUPOOL_SIM_SPEC") && stderr(&out).contains("foo"),
        "{}",
        stderr(&out)
    );
    let mut env = m.sim_env();
    for (k, v) in env.iter_mut() {
        if k == "GPUPOOL_SIM_STATE" {
            *v = "/proc/gpupool-state".into();
        }
    }
    let out = Command::new(&prog).envs(env).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/proc/gpupool-state"),
        "{}",
        stderr(&out)
    );
}
