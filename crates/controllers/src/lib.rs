//! skiff's controllers, one module per controller as upstream's `pkg/controller/<name>`.
//!
//! Every controller is a Kubernetes client: it talks to the API server through a
//! [`kube::Client`], in-process (over the API router, no TCP) or over the network, so the same
//! code runs in `skiff server` and against a remote server.

pub mod namespace;

/// Starts every controller on `client`; they run until the process ends.
pub fn spawn_all(client: kube::Client) {
    tokio::spawn(namespace::run(client));
}
