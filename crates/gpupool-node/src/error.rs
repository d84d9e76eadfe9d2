//! The node agent's error: what failed, naming the input (setting, file, pod, socket).

use std::path::Path;
use thiserror::Error;

/// Anything the node agent can fail at.
#[derive(Debug, Error)]
pub enum NodeError {
    /// A setting (configuration file or flag) is invalid or unreadable.
    #[error("{0}")]
    Config(String),
    /// A file or folder of the agent's state could not be read or written.
    #[error("{what} {path}: {source}")]
    File {
        /// What the file is.
        what: &'static str,
        /// Where.
        path: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// An allocation record could not be parsed.
    #[error("allocation record {path}: {source}")]
    Record {
        /// Where.
        path: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The Kubernetes API refused or failed a call.
    #[error("{0}")]
    Api(String),
    /// The kubelet: its socket, the registration, the plugin's server.
    #[error("{0}")]
    Kubelet(String),
    /// An `Allocate` that no pending pod and container matches.
    #[error("{0}")]
    Allocate(String),
    /// The cards could not be read.
    #[error("{0}")]
    Cards(String),
    /// A process could not be looked at or signalled.
    #[error("{0}")]
    Process(String),
}

impl NodeError {
    /// A file error for `path`.
    pub fn file(what: &'static str, path: &Path, source: std::io::Error) -> NodeError {
        NodeError::File {
            what,
            path: path.display().to_string(),
            source,
        }
    }
}

/// The node agent's results.
pub type Result<T> = std::result::Result<T, NodeError>;
