//! The kubelet device-plugin service (`DevicePlugin` of v1beta1) over the agent.

use crate::agent::Agent;
use crate::proto;
use crate::proto::device_plugin_server::DevicePlugin;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

/// The service the kubelet calls on our socket.
#[derive(Clone)]
pub struct PluginService {
    agent: Arc<Agent>,
}

impl PluginService {
    /// A service answering from `agent`.
    pub fn new(agent: Arc<Agent>) -> PluginService {
        PluginService { agent }
    }
}

/// The options the plugin registers with.
pub fn options() -> proto::DevicePluginOptions {
    proto::DevicePluginOptions {
        pre_start_required: false,
        get_preferred_allocation_available: true,
    }
}

type DeviceStream = Pin<Box<dyn Stream<Item = Result<proto::ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for PluginService {
    async fn get_device_plugin_options(
        &self,
        _: Request<proto::Empty>,
    ) -> Result<Response<proto::DevicePluginOptions>, Status> {
        Ok(Response::new(options()))
    }

    type ListAndWatchStream = DeviceStream;

    /// The slots now, then again whenever a card's health (or the card list) changes.
    async fn list_and_watch(
        &self,
        _: Request<proto::Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let split = self.agent.config.split;
        let updates = tokio_stream::wrappers::WatchStream::new(self.agent.watch_cards());
        let stream = updates.map(move |cards: Vec<crate::cards::Card>| {
            Ok(proto::ListAndWatchResponse {
                devices: crate::cards::slots(&cards, split),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<proto::PreferredAllocationRequest>,
    ) -> Result<Response<proto::PreferredAllocationResponse>, Status> {
        let mut container_responses = Vec::new();
        for c in request.into_inner().container_requests {
            let size = usize::try_from(c.allocation_size).unwrap_or(0);
            let ids = self
                .agent
                .preferred(&c.available_device_i_ds, &c.must_include_device_i_ds, size)
                .await;
            container_responses
                .push(proto::ContainerPreferredAllocationResponse { device_i_ds: ids });
        }
        Ok(Response::new(proto::PreferredAllocationResponse {
            container_responses,
        }))
    }

    /// One response per container request, in order; any failure fails the call (the kubelet
    /// then refuses the pod with our message).
    async fn allocate(
        &self,
        request: Request<proto::AllocateRequest>,
    ) -> Result<Response<proto::AllocateResponse>, Status> {
        let mut container_responses = Vec::new();
        for c in request.into_inner().container_requests {
            let r = self.agent.allocate(&c.devices_ids).await.map_err(|e| {
                tracing::warn!("Allocate {:?}: {e}", c.devices_ids);
                Status::failed_precondition(e.to_string())
            })?;
            container_responses.push(r);
        }
        Ok(Response::new(proto::AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<proto::PreStartContainerRequest>,
    ) -> Result<Response<proto::PreStartContainerResponse>, Status> {
        Ok(Response::new(proto::PreStartContainerResponse {}))
    }
}
