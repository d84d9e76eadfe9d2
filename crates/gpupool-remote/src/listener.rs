//! The GPU server's front door: accepts TCP or Unix-socket connections, shakes hands with each
//! within a deadline (version, proof of a client's token), and hands an accepted connection to a new session
//! process. A malformed or unauthenticated hello is answered and closed; nothing a client sends
//! can stop the listener.

use crate::handshake;
use crate::tokens::Client;
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

/// How long a client may take to send its hello.
pub const HELLO_DEADLINE: Duration = Duration::from_secs(10);
/// Connections that may be waiting for their hello at once; more are closed at once, so a flood
/// of idle connections cannot exhaust the server's threads.
pub const MAX_PENDING_HELLOS: usize = 64;

/// Where the server listens: `tcp://HOST:PORT` (or `HOST:PORT`), `tls://HOST:PORT` or
/// `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A TCP address.
    Tcp(String),
    /// A TCP address, with TLS.
    Tls(String),
    /// A Unix socket path.
    Unix(std::path::PathBuf),
}

impl Address {
    /// Parses an address, naming what is wrong.
    pub fn parse(s: &str) -> Result<Address, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(format!("{s:?}: unix: needs a socket path"));
            }
            return Ok(Address::Unix(p.into()));
        }
        let (tls, hp) = match s.strip_prefix("tls://") {
            Some(hp) => (true, hp),
            None => (false, s.strip_prefix("tcp://").unwrap_or(s)),
        };
        match hp.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(if tls {
                Address::Tls(hp.to_string())
            } else {
                Address::Tcp(hp.to_string())
            }),
            _ => Err(format!(
                "{s:?}: expected tcp://HOST:PORT, HOST:PORT, tls://HOST:PORT or unix:PATH"
            )),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "tcp://{a}"),
            Address::Tls(a) => write!(f, "tls://{a}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A connected client socket.
pub enum Conn {
    /// Over TCP.
    Tcp(TcpStream),
    /// Over a Unix socket.
    Unix(UnixStream),
    /// Over TLS (its handshake runs with the first read).
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl crate::handshake::PeerCertificate for Conn {
    fn peer_certificate(&self) -> Option<Vec<u8>> {
        match self {
            Conn::Tls(s) => s.conn.peer_certificates()?.first().map(|c| c.to_vec()),
            _ => None,
        }
    }
}

impl Conn {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(t),
            Conn::Unix(s) => s.set_read_timeout(t),
            Conn::Tls(s) => s.sock.set_read_timeout(t),
        }
    }

    /// The socket, for a session process (over TLS: the plaintext end of the relay).
    pub fn into_fd(self) -> io::Result<OwnedFd> {
        Ok(match self {
            Conn::Tcp(s) => s.into(),
            Conn::Unix(s) => s.into(),
            Conn::Tls(s) => {
                let s = *s;
                crate::tls::start_relay(s.conn.into(), s.sock)?.into()
            }
        })
    }

    fn stream(&mut self) -> &mut dyn ReadWrite {
        match self {
            Conn::Tcp(s) => s,
            Conn::Unix(s) => s,
            Conn::Tls(s) => &mut **s,
        }
    }
}

/// A byte stream both ways.
trait ReadWrite: io::Read + io::Write {}
impl<T: io::Read + io::Write> ReadWrite for T {}

impl io::Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.stream().read(b)
    }
}

impl io::Write for Conn {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.stream().write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream().flush()
    }
}

/// A bound listener.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// TCP with TLS, and the server's TLS configuration.
    Tls(TcpListener, Arc<rustls::ServerConfig>),
    /// Unix socket.
    Unix(UnixListener),
}

impl Listener {
    /// Binds `addr` (a stale Unix socket file is replaced); a `tls://` address needs `tls`,
    /// and only it may have one.
    pub fn bind(addr: &Address, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<Listener> {
        let wrong = |m: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, m.to_string()));
        Ok(match (addr, tls) {
            (Address::Tls(a), Some(config)) => Listener::Tls(TcpListener::bind(a)?, config),
            (Address::Tls(_), None) => {
                return wrong("a tls:// address needs the server's certificate and key")
            }
            (_, Some(_)) => return wrong("a certificate is for a tls:// address"),
            (Address::Tcp(a), None) => Listener::Tcp(TcpListener::bind(a)?),
            (Address::Unix(p), None) => {
                if std::fs::symlink_metadata(p)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    std::fs::remove_file(p)?;
                }
                Listener::Unix(UnixListener::bind(p)?)
            }
        })
    }

    /// The bound address (with the port chosen when 0 was asked).
    pub fn local_addr(&self) -> io::Result<Address> {
        Ok(match self {
            Listener::Tcp(l) => Address::Tcp(l.local_addr()?.to_string()),
            Listener::Tls(l, _) => Address::Tls(l.local_addr()?.to_string()),
            Listener::Unix(l) => Address::Unix(
                l.local_addr()?
                    .as_pathname()
                    .map(|p| p.to_path_buf())
                    .unwrap_or_default(),
            ),
        })
    }

    fn accept(&self) -> io::Result<(Conn, String)> {
        Ok(match self {
            Listener::Tcp(l) => {
                let (s, a) = l.accept()?;
                s.set_nodelay(true)?;
                (Conn::Tcp(s), a.to_string())
            }
            Listener::Tls(l, config) => {
                let (s, a) = l.accept()?;
                s.set_nodelay(true)?;
                let tls = rustls::ServerConnection::new(config.clone())
                    .map_err(|e| io::Error::other(e.to_string()))?;
                (
                    Conn::Tls(Box::new(rustls::StreamOwned::new(tls, s))),
                    a.to_string(),
                )
            }
            Listener::Unix(l) => (Conn::Unix(l.accept()?.0), "local".into()),
        })
    }
}

/// Starts a session process for an accepted client on its socket; returns when it ends.
pub type Spawn = dyn Fn(OwnedFd, &Client) -> io::Result<std::process::ExitStatus> + Send + Sync;

/// Accepts clients until the listener fails; each client is handled on its own thread.
pub fn run(listener: Listener, clients: Arc<Vec<Client>>, spawn: Arc<Spawn>) -> io::Result<()> {
    let pending = Arc::new(AtomicUsize::new(0));
    loop {
        let (conn, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("gpupool serve: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if pending.fetch_add(1, SeqCst) >= MAX_PENDING_HELLOS {
            pending.fetch_sub(1, SeqCst);
            eprintln!("gpupool serve: refused {peer}: {MAX_PENDING_HELLOS} connections are already waiting for their hello");
            continue;
        }
        let clients = clients.clone();
        let spawn = spawn.clone();
        let pending = pending.clone();
        std::thread::spawn(move || admit(conn, &peer, &clients, &*spawn, &pending));
    }
}

/// Shakes hands ([`handshake::server_side`]) and either refuses the client or runs its
/// session; `pending` counts the connections still in their handshake.
pub fn admit(mut conn: Conn, peer: &str, clients: &[Client], spawn: &Spawn, pending: &AtomicUsize) {
    let _ = conn.set_read_timeout(Some(HELLO_DEADLINE));
    let admitted = handshake::server_side(&mut conn, clients);
    pending.fetch_sub(1, SeqCst);
    let handshake::Admitted { client, label } = match admitted {
        Ok(a) => a,
        Err(refusal) => {
            eprintln!("gpupool serve: refused {peer}: {}", refusal.reason);
            if let Some(answer) = refusal.answer {
                let _ = conn.write_all(&answer);
            }
            return;
        }
    };
    if conn.set_read_timeout(None).is_err() {
        return;
    }
    let fd = match conn.into_fd() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!(
                "gpupool serve: {} ({label}): cannot relay its connection: {e}",
                client.name
            );
            return;
        }
    };
    eprintln!(
        "gpupool serve: {} ({label}) connected from {peer}",
        client.name
    );
    match spawn(fd, client) {
        Ok(status) => eprintln!(
            "gpupool serve: {} ({label}) session ended ({status})",
            client.name
        ),
        Err(e) => eprintln!(
            "gpupool serve: {} ({label}): cannot start a session: {e}",
            client.name
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::STATUS_UNAUTHORIZED;
    use std::io::Read;

    #[test]
    fn idle_connections_beyond_the_limit_are_closed_at_once() {
        let listener = Listener::bind(&Address::Tcp("127.0.0.1:0".into()), None).unwrap();
        let Address::Tcp(addr) = listener.local_addr().unwrap() else {
            unreachable!()
        };
        let spawn: Arc<Spawn> = Arc::new(|_, _| Err(io::Error::other("no sessions here")));
        std::thread::spawn(move || run(listener, Arc::new(Vec::new()), spawn));
        let idle: Vec<TcpStream> = (0..MAX_PENDING_HELLOS)
            .map(|_| TcpStream::connect(&addr).unwrap())
            .collect();
        let mut extra = TcpStream::connect(&addr).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 1];
        assert_eq!(
            extra.read(&mut b).unwrap(),
            0,
            "closed without waiting for a hello"
        );
        // A waiting connection still gets its answer (an unknown token here).
        let mut first = idle.into_iter().next().unwrap();
        let got = handshake::client_side(&mut first, b"x", "t");
        assert!(
            matches!(&got, Err(handshake::ClientError::Refused(STATUS_UNAUTHORIZED, m))
                if m == "the server does not know this token (GPUPOOL_REMOTE_TOKEN / --token-file)"),
            "{got:?}"
        );
    }

    #[test]
    fn addresses_parse_or_name_the_problem() {
        assert_eq!(
            Address::parse("127.0.0.1:7000").unwrap(),
            Address::Tcp("127.0.0.1:7000".into())
        );
        assert_eq!(
            Address::parse("tcp://[::1]:7000").unwrap(),
            Address::Tcp("[::1]:7000".into())
        );
        assert_eq!(
            Address::parse("unix:/run/gpupool.sock").unwrap(),
            Address::Unix("/run/gpupool.sock".into())
        );
        assert_eq!(
            Address::parse("tls://gpu-7:7443").unwrap(),
            Address::Tls("gpu-7:7443".into())
        );
        assert_eq!(
            Address::parse("tls://gpu-7:7443").unwrap().to_string(),
            "tls://gpu-7:7443"
        );
        for bad in [
            "",
            "host",
            "host:port",
            "unix:",
            ":80",
            "h:99999",
            "tls://host",
        ] {
            let e = Address::parse(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
