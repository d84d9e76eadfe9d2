//! Shared helpers of the integration tests: where the built artefacts and NVIDIA's runtimes are,
//! compiling the C test programs, and running them as tenants on a fresh simulated machine.

#![allow(dead_code)]

pub mod certs;
pub mod chart;
pub mod control_plane;
pub mod remote_server;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The `gpupool` binary under test.
pub fn gpupool() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gpupool"))
}

/// Folder with `libgpupool.so` and `libgpupool_simgpu.so`.
pub fn lib_dir() -> PathBuf {
    let dir = gpupool().parent().unwrap().to_path_buf();
    for lib in ["libgpupool.so", "libgpupool_simgpu.so"] {
        assert!(
            dir.join(lib).is_file(),
            "{} missing: run `cargo build --workspace` first (scripts/test does)",
            lib
        );
    }
    dir
}

/// NVIDIA's runtimes, headers and NVML client, fetched by `scripts/fetch-cuda`.
pub fn cuda_cache() -> PathBuf {
    let c = root().join(".cache/cuda");
    assert!(
        c.join("12.9/.complete").is_file(),
        "NVIDIA runtimes missing: run scripts/fetch-cuda (scripts/test does)"
    );
    c
}

/// Runtime versions the tests run against, with their include and library folders.
pub fn runtime(version: &str) -> (PathBuf, PathBuf, &'static str) {
    let c = cuda_cache();
    match version {
        "12.9" => (
            c.join("12.9/nvidia/cuda_runtime/include"),
            c.join("12.9/nvidia/cuda_runtime/lib"),
            "libcudart.so.12",
        ),
        "13.0" => (
            c.join("13.0/nvidia/cu13/include"),
            c.join("13.0/nvidia/cu13/lib"),
            "libcudart.so.13",
        ),
        "11.8" => (
            c.join("11.8/nvidia/cuda_runtime/include"),
            c.join("11.8/nvidia/cuda_runtime/lib"),
            "libcudart.so.11.0",
        ),
        other => panic!("unknown runtime {other}"),
    }
}

static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);

/// Compiles `tests/c/<name>.c`, against runtime `version` (or only the driver header when
/// `version` is `"driver"`); cached per test process.
pub fn c_program(name: &str, version: &str) -> PathBuf {
    let key = format!("{name}-{version}");
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get_or_insert_with(HashMap::new).get(&key) {
        return p.clone();
    }
    let out_dir = root().join("target/ctests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let exe = out_dir.join(format!("{key}-{}", std::process::id()));
    let src = root().join(format!("tests/c/{name}.c"));
    let c = cuda_cache();
    let nvcc_inc = c.join("nvcc/nvidia/cuda_nvcc/include");
    let mut cmd = Command::new("gcc");
    cmd.arg("-O1")
        .arg("-Wall")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .arg("-pthread");
    if version == "driver" {
        cmd.arg(format!("-I{}", runtime("12.9").0.display()))
            .arg("-ldl");
    } else {
        let (inc, lib, so) = runtime(version);
        cmd.arg(format!("-I{}", inc.display()))
            .arg(format!("-I{}", nvcc_inc.display()))
            .arg(format!("-L{}", lib.display()))
            .arg(format!("-l:{so}"))
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .arg("-ldl");
    }
    let out = cmd.output().expect("gcc");
    assert!(
        out.status.success(),
        "compiling {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    built.as_mut().unwrap().insert(key, exe.clone());
    exe
}

/// A holder whose CUDA call waits ([`Holder::go_on_and_wait`]).
pub struct Waiting {
    rx: std::sync::mpsc::Receiver<String>,
    thread: std::thread::JoinHandle<()>,
}

impl Waiting {
    /// Its last line once its call went through and it ended (within 10 s; `why`: what should
    /// have let it go on).
    pub fn finish(self, why: &str) -> String {
        let last = self
            .rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("still waiting although {why}"));
        self.thread.join().unwrap();
        last
    }
}

/// A fresh simulated machine (its own state folder) for one test.
pub struct Machine {
    /// The spec.
    pub spec: String,
    /// Its state folder.
    pub state: PathBuf,
}

impl Machine {
    /// A new machine with `spec`.
    pub fn new(test: &str, spec: &str) -> Machine {
        let state =
            std::env::temp_dir().join(format!("gpupool-test-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        Machine {
            spec: spec.into(),
            state,
        }
    }

    /// `gpupool run --sim … --state … ARGS -- CMD…` as a command to adjust and run.
    pub fn run_cmd(&self, args: &[&str], cmd: &[&str]) -> Command {
        let mut c = Command::new(gpupool());
        c.args(["run", "--sim", &self.spec, "--state"])
            .arg(&self.state)
            .args(args)
            .arg("--")
            .args(cmd);
        c.env("GPUPOOL_LIB_DIR", lib_dir());
        c
    }

    /// Runs a command as a tenant and returns its output.
    pub fn run(&self, args: &[&str], cmd: &[&str]) -> Output {
        self.run_cmd(args, cmd).output().expect("gpupool run")
    }

    /// `gpupool COMMAND ARGS --sim SPEC --state DIR` on this machine; fails the test with the
    /// command's stderr when it fails.
    pub fn gpupool_on(&self, args: &[&str]) -> Output {
        let state = self.state.display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--sim", &self.spec, "--state", &state]);
        gpupool_ok(&all)
    }

    /// `gpupool info --json` of this machine.
    pub fn info(&self) -> serde_json::Value {
        serde_json::from_slice(&self.gpupool_on(&["info", "--json"]).stdout).unwrap()
    }

    /// `gpupool info`'s entry of tenant `name` (fails the test when it is not listed).
    pub fn tenant(&self, name: &str) -> serde_json::Value {
        self.info()["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("tenant {name} not listed"))
    }

    /// Physical memory in use on the machine's first card, all processes.
    pub fn card_used(&self) -> u64 {
        self.info()["devices"][0]["used_bytes"].as_u64().unwrap()
    }

    /// Env variables that put a program on this machine directly (no `gpupool run`).
    pub fn sim_env(&self) -> Vec<(String, String)> {
        let lib = self.state.join("lib");
        std::fs::create_dir_all(&lib).unwrap();
        for name in ["libcuda.so.1", "libnvidia-ml.so.1"] {
            let _ =
                std::os::unix::fs::symlink(lib_dir().join("libgpupool_simgpu.so"), lib.join(name));
        }
        vec![
            ("LD_LIBRARY_PATH".into(), lib.display().to_string()),
            ("GPUPOOL_SIM_SPEC".into(), self.spec.clone()),
            ("GPUPOOL_SIM_STATE".into(), self.state.display().to_string()),
        ]
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Runs `gpupool ARGS` with this build's libraries; fails the test with its stderr when it
/// fails.
pub fn gpupool_ok<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    let out = Command::new(gpupool())
        .args(args)
        .env("GPUPOOL_LIB_DIR", lib_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gpupool {:?} failed: {}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy())
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The standard error of a command that must have failed (a success fails the test).
pub fn failure_message(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure, got {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Parses `key value` lines into a map, failing on a `FAIL` line.
pub fn key_values(out: &Output) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("FAIL"),
        "program failed ({:?}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// A numeric value from [`key_values`].
pub fn num(kv: &HashMap<String, String>, key: &str) -> u64 {
    kv.get(key)
        .unwrap_or_else(|| panic!("no {key} in {kv:?}"))
        .parse()
        .unwrap()
}

/// Mebibytes.
pub const MIB: u64 = 1 << 20;
/// Gibibytes.
pub const GIB: u64 = 1 << 30;

/// A running `remote_hold` (or any program printing "held" once it holds its memory): the
/// child, with its output to read further; waits for "held".
pub struct Holder {
    /// The process.
    pub child: std::process::Child,
    /// Its standard output after "held".
    pub out: std::io::BufReader<std::process::ChildStdout>,
}

impl Holder {
    /// Starts `cmd` with piped standard streams and waits until it says "held".
    pub fn start(mut cmd: Command) -> Holder {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "held", "the holder could not allocate");
        Holder { child, out }
    }

    /// Lets it go on (a line on its standard input): it asks for the memory info once more.
    pub fn go_on(&mut self) {
        use std::io::Write;
        self.child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"go\n")
            .unwrap();
    }

    /// Lets it go on and checks that its CUDA call still waits 500 ms later (`what`: what
    /// must keep it waiting).
    pub fn go_on_and_wait(mut self, what: &str) -> Waiting {
        self.go_on();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let _ = tx.send(self.finish());
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(500))
                .is_err(),
            "a CUDA call ran while {what}"
        );
        Waiting { rx, thread }
    }

    /// Waits for it to end; its last line ("after CODE").
    pub fn finish(mut self) -> String {
        use std::io::Read;
        drop(self.child.stdin.take());
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        assert!(self.child.wait().unwrap().success(), "{rest}");
        rest.trim().to_string()
    }
}
