//! The plugin's socket and its registration with the kubelet: serve on
//! `<kubelet dir>/<socket>`, register through `kubelet.sock`, and start over when the kubelet
//! restarts (it deletes every plugin socket and makes a new `kubelet.sock`).

use crate::agent::Agent;
use crate::error::{NodeError, Result};
use crate::plugin::{options, PluginService};
use crate::proto;
use crate::proto::device_plugin_server::DevicePluginServer;
use crate::proto::registration_client::RegistrationClient;
use hyper_util::rt::TokioIo;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tonic::transport::{Endpoint, Server, Uri};

/// The kubelet's registration socket in its device-plugin folder.
pub const KUBELET_SOCKET: &str = "kubelet.sock";
/// The device-plugin API version we speak.
pub const API_VERSION: &str = "v1beta1";
/// How often the sockets are checked for a kubelet restart.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// Our socket's file name for a resource (`nvidia.com/gpu` → `gpupool-nvidia.com-gpu.sock`).
pub fn socket_name(resource: &str) -> String {
    format!("gpupool-{}.sock", resource.replace('/', "-"))
}

/// A gRPC channel over a unix socket.
pub async fn unix_channel(path: &Path) -> Result<tonic::transport::Channel> {
    let path = path.to_path_buf();
    let shown = path.display().to_string();
    Endpoint::try_from("http://[::]:50051")
        .map_err(|e| NodeError::Kubelet(e.to_string()))?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|e| NodeError::Kubelet(format!("connecting to {shown}: {e}")))
}

/// Registers `resource` served on `socket` with the kubelet listening on `kubelet`.
pub async fn register(kubelet: &Path, socket: &str, resource: &str) -> Result<()> {
    let channel = unix_channel(kubelet).await?;
    RegistrationClient::new(channel)
        .register(proto::RegisterRequest {
            version: API_VERSION.into(),
            endpoint: socket.into(),
            resource_name: resource.into(),
            options: Some(options()),
        })
        .await
        .map(|_| ())
        .map_err(|s| NodeError::Kubelet(format!("registering with the kubelet: {}", s.message())))
}

fn inode(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.ino())
}

/// Serves the plugin and keeps it registered until `stop` turns true; then removes the socket.
pub async fn serve(agent: Arc<Agent>, mut stop: watch::Receiver<bool>) -> Result<()> {
    let dir = agent.config.kubelet_dir.clone();
    let resource = agent.config.resource_name();
    let name = socket_name(&resource);
    let socket: PathBuf = dir.join(&name);
    let kubelet = dir.join(KUBELET_SOCKET);
    loop {
        std::fs::create_dir_all(&dir).map_err(|e| NodeError::file("kubelet folder", &dir, e))?;
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .map_err(|e| NodeError::file("plugin socket", &socket, e))?;
        let (restart_tx, mut restart_rx) = watch::channel(false);
        let service = DevicePluginServer::new(PluginService::new(agent.clone()));
        let server = tokio::spawn(async move {
            Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::UnixListenerStream::new(listener),
                    async move {
                        let _ = restart_rx.wait_for(|r| *r).await;
                    },
                )
                .await
        });
        // Register (the kubelet may not be up yet: try until it answers).
        let mut registered_with = None;
        let stopped = loop {
            if *stop.borrow() {
                break true;
            }
            if registered_with.is_none() {
                match register(&kubelet, &name, &resource).await {
                    Ok(()) => {
                        tracing::info!(resource = %resource, socket = %socket.display(), "registered with the kubelet");
                        registered_with = inode(&kubelet);
                    }
                    Err(e) => tracing::debug!("{e}"),
                }
            } else if inode(&socket).is_none() || inode(&kubelet) != registered_with {
                tracing::warn!("the kubelet restarted (sockets replaced); registering again");
                break false;
            }
            tokio::select! {
                _ = tokio::time::sleep(WATCH_INTERVAL) => {}
                _ = stop.changed() => {}
            }
        };
        // Graceful shutdown waits for open ListAndWatch streams, which never end on their
        // own: give calls in flight a moment, then drop the connections.
        let _ = restart_tx.send(true);
        let mut server = server;
        if tokio::time::timeout(Duration::from_millis(500), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
        if stopped {
            let _ = std::fs::remove_file(&socket);
            return Ok(());
        }
    }
}
