//! The extender over HTTPS with client certificates: the scheduler's certificate is let in, a
//! client without one (or with one from another CA) is not, and a client that never finishes
//! its handshake does not hold up the others. Certificates are made with the `openssl` tool.

use gpupool_extender::server::{self, App};
use gpupool_extender::state::{Extender, Settings};
use gpupool_extender::tls::{self, TlsFiles};
use gpupool_fakekube as fake_api;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl tool (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `name` in `dir` (`<name>.pem`, `<name>.key`).
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// A certificate `name` signed by CA `ca`, with the extensions in `ext`.
fn make_cert(dir: &Path, ca: &str, name: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpupool-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// CA `ca` signing the server (127.0.0.1) and client `scheduler`; CA `other` signing `stranger`.
fn certificates(dir: &Path) {
    make_ca(dir, "ca");
    make_ca(dir, "other");
    make_cert(
        dir,
        "ca",
        "server",
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    );
    let client = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n";
    make_cert(dir, "ca", "scheduler", client);
    make_cert(dir, "other", "stranger", client);
}

/// Serves the extender over HTTPS on a free loopback port.
async fn serve(dir: &Path) -> std::net::SocketAddr {
    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_ca: Some(dir.join("ca.pem")),
    };
    let config = tls::server_config(&files).unwrap();
    let shared: fake_api::Shared = Arc::new(Mutex::new(fake_api::Cluster::default()));
    let app = Arc::new(App {
        extender: Arc::new(Extender::new(Settings::default())),
        client: fake_api::client(shared),
        ready: AtomicBool::new(true),
    });
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = tls::TlsListener::new(tcp, config).unwrap();
    let addr = axum::serve::Listener::local_addr(&listener).unwrap();
    tokio::spawn(async move { axum::serve(listener, server::router(app)).await });
    addr
}

/// `GET /healthz` as a client presenting `identity` (a certificate name in `dir`, or none);
/// the response's first line, or the error.
async fn healthz(
    dir: &Path,
    addr: std::net::SocketAddr,
    identity: Option<&str>,
) -> Result<String, String> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some(name) => {
            let chain = CertificateDer::pem_file_iter(dir.join(format!("{name}.pem")))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    Ok(text.lines().next().unwrap_or("").to_string())
}

#[tokio::test]
async fn only_clients_with_a_certificate_from_the_ca_are_served() {
    let dir = scratch("clients");
    certificates(&dir);
    let addr = serve(&dir).await;
    // A client that connects and says nothing does not hold up the scheduler.
    let _silent = TcpStream::connect(addr).await.unwrap();
    let scheduler = healthz(&dir, addr, Some("scheduler")).await;
    assert_eq!(scheduler.as_deref(), Ok("HTTP/1.1 200 OK"));
    for who in [None, Some("stranger")] {
        let answer = healthz(&dir, addr, who).await;
        assert!(
            answer.as_ref().map_or(true, |line| line.is_empty()),
            "{who:?} was served: {answer:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unusable_certificate_files_are_named_in_the_error() {
    let dir = scratch("files");
    std::fs::write(dir.join("empty.pem"), "").unwrap();
    let files = |cert: &str, key: &str, ca: Option<&str>| TlsFiles {
        cert: dir.join(cert),
        key: dir.join(key),
        client_ca: ca.map(|c| dir.join(c)),
    };
    let err = tls::server_config(&files("missing.pem", "missing.key", None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--tls-cert-file") && err.contains("missing.pem"),
        "{err}"
    );
    let err = tls::server_config(&files("empty.pem", "missing.key", None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no PEM certificate"), "{err}");
    certificates(&dir);
    let err = tls::server_config(&files("server.pem", "missing.key", None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--tls-key-file"), "{err}");
    let err = tls::server_config(&files("server.pem", "server.key", Some("empty.pem")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--tls-client-ca-file"), "{err}");
    assert!(tls::server_config(&files("server.pem", "server.key", Some("ca.pem"))).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
