//! The extender's one error type: each variant names what failed (the pod, the address, the
//! file), so a log line or a bind answer says what to fix.

use std::net::SocketAddr;
use thiserror::Error;

/// Why the extender or the webhook could not do what was asked.
#[derive(Debug, Error)]
pub enum ExtenderError {
    /// A request it cannot act on: a malformed body, a bind without a pod or node, a pod it
    /// cannot place on the node, or one that changed under it.
    #[error("{0}")]
    Refused(String),
    /// A Kubernetes API call failed (the message names the call and the object).
    #[error("{0}")]
    Api(String),
    /// A certificate or key file is missing or unusable (the message names the flag and file).
    #[error("{0}")]
    Tls(String),
    /// The listening socket could not be opened.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Serving stopped on an I/O error.
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

impl ExtenderError {
    /// A failed Kubernetes API call, `what` naming it (`reading pod ns/name`).
    pub fn api(what: &str, e: kube::Error) -> ExtenderError {
        ExtenderError::Api(gpupool_sched::pod::api_error(what, e))
    }

    /// An error while opening `addr` to listen.
    pub fn listen(addr: SocketAddr) -> impl FnOnce(std::io::Error) -> ExtenderError {
        move |source| ExtenderError::Listen { addr, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_input() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let e = ExtenderError::listen(addr)(std::io::Error::from(std::io::ErrorKind::AddrInUse));
        assert!(
            e.to_string().starts_with("listening on 127.0.0.1:9: "),
            "{e}"
        );
        assert_eq!(
            ExtenderError::Refused("pod a/b asks for no vGPU".into()).to_string(),
            "pod a/b asks for no vGPU"
        );
    }
}
