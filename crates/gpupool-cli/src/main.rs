//! `gpupool`: run programs on a virtual GPU, inspect devices and tenants, demo, and the
//! Kubernetes scheduler extender and node agent.
//! Command-line parsing and dispatch only; each command lives in its own module.

mod artefacts;
mod checkpoint_driver;
mod cmd_checkpointer;
mod cmd_demo;
mod cmd_exporter;
mod cmd_info;
mod cmd_install_library;
mod cmd_node;
mod cmd_run;
mod cmd_scheduler;
mod cmd_serve;
mod cmd_top;
mod cmd_webhook;
mod daemon;
mod driver_probe;
mod nvml_events;
mod sim_env;
mod top_view;

use clap::{Parser, Subcommand};

/// Share NVIDIA GPUs safely: hard per-tenant memory limits and a virtual view of the card.
#[derive(Parser)]
#[command(name = "gpupool", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command with libgpupool.so preloaded and the limits applied.
    Run(cmd_run::RunArgs),
    /// Show devices, memory and processes (and the tenants of a simulated machine).
    Info(cmd_info::InfoArgs),
    /// Two tenants with different memory limits share one simulated card.
    Demo(cmd_demo::DemoArgs),
    /// Prometheus metrics of this host's cards and tenants on /metrics.
    Exporter(cmd_exporter::ExporterArgs),
    /// Checkpoint idle tenants to make room on full cards (hosts without the node agent).
    Checkpointer(cmd_checkpointer::CheckpointerArgs),
    /// Live view of cards and tenants (memory, compute, throttling, denials).
    Top(cmd_top::TopArgs),
    /// Kubernetes scheduler extender: places vGPU pods on cards (filter, prioritize, bind).
    Scheduler(cmd_scheduler::SchedulerArgs),
    /// Kubernetes node agent: kubelet device plugin for vGPUs, limits files, card inventory.
    Node(Box<cmd_node::NodeArgs>),
    /// Kubernetes admission webhook: sends pods that ask for vGPUs to the gpupool scheduler.
    Webhook(cmd_webhook::WebhookArgs),
    /// Copy libgpupool.so into a folder, replacing the old one atomically (node installs).
    InstallLibrary(cmd_install_library::InstallLibraryArgs),
    /// GPU server for remote GPUs: runs the driver calls of `gpupool run --remote` clients.
    Serve(cmd_serve::ServeArgs),
    /// (internal) one remote client's session, on standard input.
    #[command(hide = true)]
    ServeSession,
    /// (internal) allocate through the driver API until refused; prints one JSON line.
    #[command(hide = true)]
    Probe(driver_probe::ProbeArgs),
}

fn main() {
    // Output piped into `head` ends quietly, as other command-line tools do.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => cmd_run::run(a),
        Command::Info(a) => cmd_info::run(a).map(|_| 0),
        Command::Demo(a) => cmd_demo::run(a).map(|_| 0),
        Command::Exporter(a) => cmd_exporter::run(a).map(|_| 0),
        Command::Checkpointer(a) => cmd_checkpointer::run(a).map(|_| 0),
        Command::Top(a) => cmd_top::run(a).map(|_| 0),
        Command::Scheduler(a) => cmd_scheduler::run(a).map(|_| 0),
        Command::Node(a) => cmd_node::run(*a).map(|_| 0),
        Command::Webhook(a) => cmd_webhook::run(a).map(|_| 0),
        Command::InstallLibrary(a) => cmd_install_library::run(a).map(|_| 0),
        Command::Serve(a) => cmd_serve::run(a).map(|_| 0),
        Command::ServeSession => cmd_serve::run_session(),
        Command::Probe(a) => driver_probe::run(a).map(|_| 0),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("gpupool: {e:#}");
            std::process::exit(2);
        }
    }
}
