//! `gpupool demo`: one simulated card, two tenants with different memory limits allocating at the
//! same time; prints what each asked for, what it was shown, and what was enforced.

use crate::driver_probe::ProbeReport;
use crate::sim_env::SimEnv;
use anyhow::{bail, Context, Result};
use clap::Args;
use gpupool_config::format_size;
use gpupool_observe::nvml::read_devices;
use std::process::{Command, Stdio};

/// Arguments of `gpupool demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The simulated card.
    #[arg(long, default_value = "1x16GiB")]
    pub sim: String,
    /// Memory limits of the two tenants.
    #[arg(long, num_args = 2, default_values = ["4GiB", "6GiB"])]
    pub limits: Vec<String>,
    /// Allocation chunk size.
    #[arg(long, default_value = "512MiB")]
    pub chunk: String,
}

/// Runs the demo.
pub fn run(a: DemoArgs) -> Result<()> {
    let state = std::env::temp_dir().join(format!("gpupool-demo-{}", std::process::id()));
    let sim = SimEnv::prepare(&a.sim, Some(&state))?;
    let exe = std::env::current_exe()?;
    let dev = &sim.spec.devices[0];
    println!(
        "gpupool demo: one simulated {} ({}), two tenants allocating {} chunks at once",
        dev.name,
        format_size(dev.memory),
        a.chunk
    );
    println!(
        "(each context costs {} of device memory, as on a real card)\n",
        format_size(dev.context_memory)
    );
    let children: Vec<_> = a
        .limits
        .iter()
        .enumerate()
        .map(|(i, limit)| {
            Command::new(&exe)
                .args(["run", "--sim", &a.sim, "--state"])
                .arg(&state)
                .args([
                    "--memory",
                    limit,
                    "--tenant",
                    &format!("tenant-{}", (b'A' + i as u8) as char),
                    "--",
                ])
                .arg(&exe)
                .args(["probe", "--chunk", &a.chunk, "--hold-ms", "1500"])
                .stdout(Stdio::piped())
                .spawn()
                .context("starting a tenant")
        })
        .collect::<Result<_>>()?;
    std::thread::sleep(std::time::Duration::from_millis(700));
    for (k, v) in sim.env() {
        std::env::set_var(k, v);
    }
    let card = read_devices(Some(&crate::artefacts::sim_library()?))?;
    let mut reports = Vec::new();
    for c in children {
        let out = c.wait_with_output()?;
        if !out.status.success() {
            bail!("a tenant failed: {}", String::from_utf8_lossy(&out.stdout));
        }
        let line = String::from_utf8_lossy(&out.stdout);
        reports.push(
            serde_json::from_str::<ProbeReport>(line.trim())
                .with_context(|| format!("tenant output {line:?}"))?,
        );
    }
    println!(
        "{:<9} {:>10} {:>14} {:>14} {:>16}  THEN",
        "TENANT", "LIMIT", "SEES TOTAL", "SEES FREE", "GOT (CHUNKS)"
    );
    for (i, (r, limit)) in reports.iter().zip(&a.limits).enumerate() {
        println!(
            "{:<9} {:>10} {:>14} {:>14} {:>16}  {}",
            format!("tenant-{}", (b'A' + i as u8) as char),
            limit,
            format_size(r.total),
            format_size(r.free_before),
            format!("{} ({})", format_size(r.allocated), r.chunks),
            if r.stop_error == 2 {
                "CUDA_ERROR_OUT_OF_MEMORY".to_string()
            } else {
                format!("error {}", r.stop_error)
            }
        );
    }
    if let Some(d) = card.first() {
        println!(
            "\nthe card while both held their memory (NVML): {} used of {}",
            format_size(d.used_bytes),
            format_size(d.total_bytes)
        );
        for p in &d.processes {
            println!("  pid {:<8} {}", p.pid, format_size(p.used_bytes));
        }
    }
    println!(
        "\nEach tenant got at most its limit minus its context; the card was never oversubscribed."
    );
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}
