//! The kubelet device-plugin API v1beta1, generated at build time from
//! `proto/deviceplugin/v1beta1/api.proto`.
#![allow(missing_docs, clippy::all)]

tonic::include_proto!("v1beta1");
