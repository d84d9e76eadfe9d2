//! HTTPS for the extender: a server certificate, and client certificates checked against a CA
//! (kube-scheduler's extender `tlsConfig` presents one), so that only the scheduler may ask for
//! placements and bindings. Handshakes run beside the accept loop, each within
//! [`HANDSHAKE_TIMEOUT`]: a slow or silent client never holds up the others.

use crate::error::ExtenderError;
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the extender's certificate, key and client CA are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// CA of the client certificates to accept (PEM); `None`: any client (TLS only).
    pub client_ca: Option<PathBuf>,
}

/// The server's TLS configuration from its files.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, ExtenderError> {
    build_config(files).map_err(ExtenderError::Tls)
}

fn build_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let certs = gpupool_tls::certificates(&files.cert, "--tls-cert-file")?;
    let key = gpupool_tls::private_key(&files.key, "--tls-key-file")?;
    let builder = ServerConfig::builder_with_provider(gpupool_tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &files.client_ca {
        Some(ca) => builder
            .with_client_cert_verifier(gpupool_tls::client_verifier(ca, "--tls-client-ca-file")?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert-file / --tls-key-file: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Connections that completed their handshake, for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` and hands over connections once their handshake succeeded.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::info!(%peer, "TLS handshake refused: {e}"),
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Some(c) = self.ready.recv().await {
                return c;
            }
            // The accept loop ended: nothing will come any more.
            std::future::pending::<()>().await;
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
