//! A `gpupool serve` on a simulated machine for the remote-GPU tests, and clients run through it.

use super::*;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

/// The token every test client presents.
pub const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// A `gpupool serve` on a simulated machine, killed when dropped.
pub struct Server {
    child: Child,
    /// The address it listens on (`tcp://…` or `unix:…`).
    pub addr: String,
    /// Its clients file and the token file clients read.
    pub dir: std::path::PathBuf,
}

impl Server {
    /// Serves `m` to clients listed in `clients` (lines of the clients file), on `listen`.
    pub fn start(m: &Machine, listen: &str, clients: &str) -> Server {
        Server::start_with(m, listen, clients, &[])
    }

    /// [`Server::start`] with more `gpupool serve` arguments.
    pub fn start_with(m: &Machine, listen: &str, clients: &str, more: &[&str]) -> Server {
        let dir = m.state.with_extension("remote");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("clients"), clients).unwrap();
        std::fs::write(dir.join("token"), TOKEN).unwrap();
        let mut child = Command::new(gpupool())
            .args(["serve", "--listen", listen, "--clients"])
            .arg(dir.join("clients"))
            .args(["--sim", &m.spec, "--state"])
            .arg(&m.state)
            .args(more)
            .env("GPUPOOL_LIB_DIR", lib_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("no address from gpupool serve: {line:?}"))
            .to_string();
        Server { child, addr, dir }
    }

    /// `gpupool run --remote ADDR --token-file F -- CMD…`.
    pub fn client(&self, cmd: &[&str]) -> Command {
        let mut c = Command::new(gpupool());
        c.args(["run", "--remote", &self.addr, "--token-file"])
            .arg(self.dir.join("token"))
            .arg("--")
            .args(cmd)
            .env("GPUPOOL_LIB_DIR", lib_dir());
        c
    }

    /// The server's stderr so far (after it was killed).
    pub fn log(mut self) -> String {
        let _ = self.child.kill();
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
