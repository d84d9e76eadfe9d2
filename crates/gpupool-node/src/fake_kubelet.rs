//! A stand-in kubelet for tests and local trials: serves the registration socket in a
//! device-plugin folder, hands every registration to its owner, and connects to the plugin that
//! registered. Restarting it deletes every socket of the folder, as the real kubelet does.

use crate::error::{NodeError, Result};
use crate::kubelet::{unix_channel, KUBELET_SOCKET};
use crate::proto;
use crate::proto::device_plugin_client::DevicePluginClient;
use crate::proto::registration_server::{Registration, RegistrationServer};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The registration service: every request goes to the channel.
struct Registrar(mpsc::UnboundedSender<proto::RegisterRequest>);

#[tonic::async_trait]
impl Registration for Registrar {
    async fn register(
        &self,
        request: tonic::Request<proto::RegisterRequest>,
    ) -> std::result::Result<tonic::Response<proto::Empty>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(proto::Empty {}))
    }
}

/// The stand-in kubelet (on the current tokio runtime).
pub struct FakeKubelet {
    /// Its device-plugin folder.
    pub dir: PathBuf,
    registrations: mpsc::UnboundedReceiver<proto::RegisterRequest>,
    sender: mpsc::UnboundedSender<proto::RegisterRequest>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeKubelet {
    /// Starts serving `<dir>/kubelet.sock`.
    pub fn start(dir: &Path) -> Result<FakeKubelet> {
        let (sender, registrations) = mpsc::unbounded_channel();
        let mut k = FakeKubelet {
            dir: dir.to_path_buf(),
            registrations,
            sender,
            stop: None,
        };
        k.listen()?;
        Ok(k)
    }

    fn listen(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| NodeError::file("kubelet folder", &self.dir, e))?;
        let path = self.dir.join(KUBELET_SOCKET);
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)
            .map_err(|e| NodeError::file("kubelet socket", &path, e))?;
        let (tx, rx) = oneshot::channel();
        let service = RegistrationServer::new(Registrar(self.sender.clone()));
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::UnixListenerStream::new(listener),
                    async {
                        let _ = rx.await;
                    },
                )
                .await;
        });
        self.stop = Some(tx);
        Ok(())
    }

    /// Stops, removes every socket of the folder, and serves again (a kubelet restart).
    pub async fn restart(&mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| NodeError::file("kubelet folder", &self.dir, e))?;
        for e in entries.flatten() {
            if e.path().extension().and_then(|x| x.to_str()) == Some("sock") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        self.listen()
    }

    /// The next registration, waiting at most `timeout`.
    pub async fn next_registration(&mut self, timeout: Duration) -> Option<proto::RegisterRequest> {
        tokio::time::timeout(timeout, self.registrations.recv())
            .await
            .ok()
            .flatten()
    }

    /// A client of the plugin that registered with `r`.
    pub async fn plugin(
        &self,
        r: &proto::RegisterRequest,
    ) -> Result<DevicePluginClient<tonic::transport::Channel>> {
        Ok(DevicePluginClient::new(
            unix_channel(&self.dir.join(&r.endpoint)).await?,
        ))
    }
}
