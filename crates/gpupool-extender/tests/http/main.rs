//! The extender over HTTP, in one binary: its verbs against the in-memory API server, fuzzed
//! requests, and TLS.

mod extender;
mod fuzz;
mod tls;
