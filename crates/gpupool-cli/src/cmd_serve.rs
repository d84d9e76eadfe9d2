//! `gpupool serve`: the GPU server of remote GPUs. Each authenticated client gets a session
//! process started through `gpupool run` (the interception library preloaded, the client's
//! limits applied as its own tenant), so limits hold on the server and a client's memory is
//! freed when it goes away.

use anyhow::{bail, Context, Result};
use clap::Args;
use gpupool_remote::listener::{self, Address, Listener};
use gpupool_remote::tokens::{self, Client};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;

/// Arguments of `gpupool serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where to listen: `tcp://HOST:PORT`, `HOST:PORT` (port 0 picks one), `tls://HOST:PORT`
    /// (with --tls-cert and --tls-key) or `unix:PATH`.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// The server's certificate chain (PEM), for a `tls://` address.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Admit only clients that present a certificate this CA (PEM) issued, besides their
    /// token (`gpupool run --tls-cert/--tls-key`).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// The clients file: one `NAME TOKEN [memory=SIZE] [compute=PCT]` per line.
    #[arg(long, value_name = "FILE")]
    pub clients: PathBuf,
    /// Serve a simulated GPU of this spec instead of the real GPUs.
    #[arg(long, value_name = "SPEC")]
    pub sim: Option<String>,
    /// State folder of the simulated machine.
    #[arg(long, value_name = "DIR", requires = "sim")]
    pub state: Option<PathBuf>,
    /// Module and library images kept per client, so that a client loading them again sends
    /// only their key (e.g. 4GiB; 0: none).
    #[arg(long, value_name = "SIZE", default_value = "4GiB")]
    pub image_cache: String,
    /// Check the address, the clients file and the TLS files, say what would be served, and
    /// exit without listening.
    #[arg(long)]
    pub check: bool,
}

/// Reads and checks the clients file (every limit with the library's own parser).
pub fn load_clients(path: &std::path::Path) -> Result<Vec<Client>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--clients {}", path.display()))?;
    let clients =
        tokens::parse_clients(&text).with_context(|| format!("--clients {}", path.display()))?;
    if clients.is_empty() {
        bail!("--clients {}: lists no client", path.display());
    }
    for c in &clients {
        crate::cmd_run::validate_limits(
            c.memory.as_deref(),
            c.spill.as_deref(),
            c.compute.as_deref(),
        )
        .with_context(|| format!("--clients {}: client {:?}", path.display(), c.name))?;
    }
    Ok(clients)
}

/// The `gpupool run` command line of a client's session, with the folder of the images kept
/// for it (`images`: the root of every client's, and the size each may keep) and its tenant's
/// registry of interprocess handles (under `ipc_root`).
fn session_command(
    exe: &std::path::Path,
    a: &ServeArgs,
    c: &Client,
    images: Option<&(PathBuf, u64)>,
    ipc_root: &std::path::Path,
) -> Command {
    let mut cmd = Command::new(exe);
    // Its entries name the tenant's memory: no other tenant's session may read them.
    let ipc = ipc_root.join(format!("client-{}", c.name));
    match gpupool_region::untrusted::ensure_private_dir(&ipc) {
        Ok(()) => {
            cmd.env(gpupool_remote::session::ipc::ENV_DIR, &ipc);
        }
        Err(e) => eprintln!(
            "gpupool serve: no interprocess handles for {:?}: {e}",
            c.name
        ),
    }
    if let Some((root, limit)) = images {
        // Images in it are loaded into the tenant's process: nobody else may plant any.
        let dir = gpupool_remote::image_cache::ImageCache::client_dir(root, &c.name);
        match gpupool_region::untrusted::ensure_private_dir(&dir) {
            Ok(()) => {
                cmd.env(gpupool_remote::image_cache::ENV_DIR, &dir)
                    .env(gpupool_remote::image_cache::ENV_LIMIT, limit.to_string());
            }
            Err(e) => eprintln!("gpupool serve: no image cache for {:?}: {e}", c.name),
        }
    }
    cmd.arg("run");
    if let Some(s) = &a.sim {
        cmd.args(["--sim", s]);
    }
    if let Some(s) = &a.state {
        cmd.arg("--state").arg(s);
    }
    if let Some(m) = &c.memory {
        cmd.args(["--memory", m]);
    }
    if let Some(s) = &c.spill {
        cmd.args(["--spill", s]);
    }
    if let Some(p) = &c.compute {
        cmd.args(["--compute", p]);
    }
    cmd.args(["--tenant", &format!("remote-{}", c.name), "--"]);
    cmd.arg(exe).arg("serve-session");
    cmd
}

/// Runs the server until it is killed.
pub fn run(a: ServeArgs) -> Result<()> {
    let addr = Address::parse(&a.listen).map_err(|e| anyhow::anyhow!("--listen {e}"))?;
    let clients = Arc::new(load_clients(&a.clients)?);
    // Sessions read it again; a bad value is refused here, before any client connects.
    gpupool_remote::polling::spin_from_env().map_err(anyhow::Error::msg)?;
    if let Some(spec) = &a.sim {
        if a.check {
            gpupool_config::SimSpec::parse(spec)?;
        } else {
            crate::sim_env::SimEnv::prepare(spec, a.state.as_deref())?;
        }
    }
    let limit = gpupool_config::parse_size(&a.image_cache)
        .map_err(|e| anyhow::anyhow!("--image-cache {:?}: {e}", a.image_cache))?;
    let images = if limit == 0 {
        None
    } else {
        let root = crate::cmd_run::tenants_dir(a.state.as_deref()).with_file_name("remote-images");
        for dir in [root.parent(), Some(root.as_path())].into_iter().flatten() {
            // A check creates nothing: it only checks the folders that exist.
            if !a.check || dir.exists() {
                gpupool_region::untrusted::ensure_private_dir(dir)
                    .with_context(|| format!("--image-cache: the folder {}", root.display()))?;
            }
        }
        Some((root, limit))
    };
    let ipc_root = crate::cmd_run::tenants_dir(a.state.as_deref()).with_file_name("remote-ipc");
    if !a.check {
        fresh_ipc_registry(&ipc_root)?;
    }
    let exe = std::env::current_exe().context("locating the gpupool binary")?;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(
            gpupool_remote::tls::server_config(cert, key, a.tls_client_ca.as_deref())
                .map_err(anyhow::Error::msg)?,
        ),
        _ => None,
    };
    if a.tls_client_ca.is_none() {
        if let Some(c) = clients.iter().find(|c| c.cert.is_some()) {
            bail!(
                "--clients {}: client {:?} must present a certificate (cert=), which needs a tls:// address and --tls-client-ca",
                a.clients.display(),
                c.name
            );
        }
    }
    match (&addr, tls.is_some()) {
        (Address::Tls(_), false) => {
            bail!("--listen {addr}: a tls:// address needs --tls-cert and --tls-key")
        }
        (Address::Tcp(_) | Address::Unix(_), true) => {
            bail!("--tls-cert / --tls-key: --listen {addr} is not a tls:// address")
        }
        _ => {}
    }
    // Each session runs under the interception library: without it no client could be served.
    crate::artefacts::preload_library().context("the sessions' interception library")?;
    if a.check {
        let names: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
        println!(
            "would listen on {addr} for {} client(s): {}",
            names.len(),
            names.join(", ")
        );
        match &images {
            Some((root, limit)) => println!(
                "would keep up to {} of images per client under {}",
                gpupool_config::format_size(*limit),
                root.display()
            ),
            None => println!("would keep no images (--image-cache 0)"),
        }
        return Ok(());
    }
    let listener = Listener::bind(&addr, tls).with_context(|| format!("--listen {addr}"))?;
    println!("listening on {}", listener.local_addr()?);
    eprintln!(
        "gpupool serve: {} client(s){}",
        clients.len(),
        a.sim
            .as_deref()
            .map(|s| format!(", simulated GPU {s}"))
            .unwrap_or_default()
    );
    let a = Arc::new(a);
    let spawn = move |sock: OwnedFd, c: &Client| -> std::io::Result<ExitStatus> {
        let mut cmd = session_command(&exe, &a, c, images.as_ref(), &ipc_root);
        // SAFETY: prctl is async-signal-safe. A session never outlives its server: a restart
        // closes every client's connection, which the client reports.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            })
        };
        cmd.stdin(Stdio::from(sock)).stdout(Stdio::null()).status()
    };
    listener::run(listener, clients, Arc::new(spawn))?;
    Ok(())
}

/// Empties the registries of interprocess handles (what an earlier server's sessions left is
/// stale: their memory went with them) and creates their private root.
fn fresh_ipc_registry(root: &std::path::Path) -> Result<()> {
    let what = || format!("the interprocess handle registry {}", root.display());
    if let Some(parent) = root.parent() {
        gpupool_region::untrusted::ensure_private_dir(parent).with_context(what)?;
    }
    match std::fs::remove_dir_all(root) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(what);
        }
        _ => {}
    }
    gpupool_region::untrusted::ensure_private_dir(root).with_context(what)
}

/// `gpupool serve-session`: one client's session on standard input (started by `serve`).
pub fn run_session() -> Result<i32> {
    Ok(gpupool_remote::session_main::run_on_stdin())
}
