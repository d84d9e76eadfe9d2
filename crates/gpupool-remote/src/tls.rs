//! TLS for remote GPUs (`tls://HOST:PORT`): the server's certificate is checked against a CA
//! the client is given, and everything after the TCP connection is encrypted. After the TLS
//! and gpupool handshakes, a relay thread on each side carries the plaintext between the TLS
//! connection and one end of a socket pair, so the session process and the client's polling
//! reads work on a plain socket as over TCP or a Unix socket (at the cost of one more hop on
//! each side).

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig};
use std::io::{self, ErrorKind::WouldBlock, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

/// Whether `name` is a DNS name (not an IP address) a certificate can carry.
pub fn is_dns_name(name: &str) -> bool {
    matches!(ServerName::try_from(name), Ok(ServerName::DnsName(_)))
}

/// Whether the certificate `der` (a client's, already verified against the client CA)
/// carries the DNS name `name` among its subject alternative names.
pub fn certificate_names(der: &[u8], name: &str) -> bool {
    let der = rustls::pki_types::CertificateDer::from(der);
    let (Ok(cert), Ok(name)) = (
        webpki::EndEntityCert::try_from(&der),
        ServerName::try_from(name),
    ) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}

/// The server's TLS configuration: its certificate chain and key (PEM files named by
/// `--tls-cert` / `--tls-key`) and, with `client_ca` (`--tls-client-ca`), only clients that
/// present a certificate this CA issued.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, String> {
    let certs = gpupool_tls::certificates(cert, "--tls-cert")?;
    let key = gpupool_tls::private_key(key, "--tls-key")?;
    let builder = ServerConfig::builder_with_provider(gpupool_tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        Some(ca) => {
            builder.with_client_cert_verifier(gpupool_tls::client_verifier(ca, "--tls-client-ca")?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert / --tls-key: {e}"))?;
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A PEM file and the option or variable that named it.
pub type Named<'a> = (&'a Path, &'a str);

/// A client's TLS configuration: servers must present a certificate issued by the CA in `ca`;
/// with `identity` (certificate, key), the client presents that certificate to servers that
/// ask for one.
pub fn client_config(
    ca: Named<'_>,
    identity: Option<(Named<'_>, Named<'_>)>,
) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(gpupool_tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(gpupool_tls::roots(ca.0, ca.1)?);
    let config = match identity {
        Some(((cert, cert_what), (key, key_what))) => builder
            .with_client_auth_cert(
                gpupool_tls::certificates(cert, cert_what)?,
                gpupool_tls::private_key(key, key_what)?,
            )
            .map_err(|e| format!("{cert_what} / {key_what}: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A TLS client connection to `host_port` (`HOST:PORT`; the certificate must name HOST).
pub fn client_connection(
    config: Arc<ClientConfig>,
    host_port: &str,
) -> Result<ClientConnection, String> {
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a name a certificate can carry: {e}"))?;
    ClientConnection::new(config, name).map_err(|e| e.to_string())
}

/// Finishes the TLS handshake of `tls` over the blocking `sock`.
pub fn complete_handshake<D: rustls::SideData>(
    tls: &mut rustls::ConnectionCommon<D>,
    sock: &mut TcpStream,
) -> io::Result<()> {
    while tls.is_handshaking() {
        tls.complete_io(sock)?;
    }
    while tls.wants_write() {
        tls.write_tls(sock)?;
    }
    Ok(())
}

/// Starts the relay of an established `tls` connection over `sock`: returns the plaintext end.
/// The relay ends when either side closes; closing the returned socket closes the connection.
pub fn start_relay(tls: Connection, sock: TcpStream) -> io::Result<UnixStream> {
    let (mine, theirs) = UnixStream::pair()?;
    std::thread::Builder::new()
        .name("gpupool-tls".into())
        .spawn(move || relay(tls, sock, mine))?;
    Ok(theirs)
}

/// Waits until one of `fds` is ready for what it asks; false when polling fails.
fn wait(fds: &mut [libc::pollfd; 2]) -> bool {
    loop {
        // SAFETY: two valid pollfd entries.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n >= 0 {
            return true;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
    }
}

/// Carries bytes both ways between `tls` (over `sock`) and `plain` until either side closes.
/// Each direction waits while the other end has not taken what it was given (no unbounded
/// buffering).
fn relay(mut tls: Connection, mut sock: TcpStream, mut plain: UnixStream) {
    if sock.set_nonblocking(true).is_err() || plain.set_nonblocking(true).is_err() {
        return;
    }
    tls.set_buffer_limit(None);
    let mut buf = vec![0u8; 1 << 20];
    let (mut to_plain, mut sent) = (Vec::<u8>::new(), 0usize);
    let mut peer_open = true;
    loop {
        // Plaintext received: into the socket pair.
        while sent < to_plain.len() {
            match plain.write(&to_plain[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == WouldBlock => break,
                Err(_) => return,
            }
        }
        if sent == to_plain.len() {
            to_plain.clear();
            sent = 0;
            if !peer_open {
                return;
            }
        }
        // Records to send: to the peer.
        while tls.wants_write() {
            match tls.write_tls(&mut sock) {
                Ok(_) => {}
                Err(e) if e.kind() == WouldBlock => break,
                Err(_) => return,
            }
        }
        let read_peer = peer_open && to_plain.is_empty();
        let read_plain = !tls.wants_write();
        let mut fds = [
            libc::pollfd {
                fd: sock.as_raw_fd(),
                events: if read_peer { libc::POLLIN } else { 0 }
                    | if tls.wants_write() { libc::POLLOUT } else { 0 },
                revents: 0,
            },
            libc::pollfd {
                fd: plain.as_raw_fd(),
                events: if read_plain { libc::POLLIN } else { 0 }
                    | if to_plain.is_empty() {
                        0
                    } else {
                        libc::POLLOUT
                    },
                revents: 0,
            },
        ];
        if !wait(&mut fds) {
            return;
        }
        let ready =
            |f: &libc::pollfd| f.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
        if read_peer && ready(&fds[0]) {
            match tls.read_tls(&mut sock) {
                Ok(0) => peer_open = false,
                Ok(_) => {
                    if tls.process_new_packets().is_err() {
                        // The alert rustls queued goes out; then the connection ends.
                        let _ = tls.write_tls(&mut sock);
                        return;
                    }
                }
                Err(e) if e.kind() == WouldBlock => {}
                Err(_) => return,
            }
            loop {
                match tls.reader().read(&mut buf) {
                    Ok(0) => {
                        peer_open = false;
                        break;
                    }
                    Ok(n) => to_plain.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == WouldBlock => break,
                    Err(_) => {
                        peer_open = false;
                        break;
                    }
                }
            }
        }
        if read_plain && ready(&fds[1]) {
            match plain.read(&mut buf) {
                Ok(0) | Err(_) => {
                    tls.send_close_notify();
                    let _ = sock.set_nonblocking(false);
                    while tls.wants_write() && tls.write_tls(&mut sock).is_ok() {}
                    return;
                }
                Ok(n) => {
                    if tls.writer().write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_are_named() {
        let dir = std::env::temp_dir().join(format!("gpupool-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config((&empty, "GPUPOOL_REMOTE_TLS_CA"), None).unwrap_err();
        assert!(
            e.contains("GPUPOOL_REMOTE_TLS_CA") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = server_config(&dir.join("absent.pem"), &empty, None).unwrap_err();
        assert!(e.contains("--tls-cert") && e.contains("absent.pem"), "{e}");
        let e = server_config(&empty, &empty, Some(&empty)).unwrap_err();
        assert!(e.contains("--tls-cert"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_server_name_is_the_host_of_the_address() {
        let config = Arc::new(
            ClientConfig::builder_with_provider(gpupool_tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        );
        assert!(client_connection(config.clone(), "gpu-7.example:7443").is_ok());
        assert!(client_connection(config.clone(), "[::1]:7443").is_ok());
        assert!(client_connection(config, "bad name!:7443").is_err());
    }
}
