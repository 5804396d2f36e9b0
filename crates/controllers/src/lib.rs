//! skiff's controllers, one module per controller as upstream's `pkg/controller/<name>`.
//!
//! Every controller is a Kubernetes client: it talks to the API server through a
//! [`kube::Client`], in-process (over the API router, no TCP) or over the network, so the same
//! code runs in `skiff server` and against a remote server.

pub mod apierror;
pub mod controller_ref;
pub mod daemonset;
pub mod deployment;
pub mod endpoint;
pub mod endpointslice;
pub mod events;
pub mod expectations;
pub mod garbagecollector;
pub mod hash;
pub mod history;
pub mod informer;
pub mod intstr;
pub mod namespace;
pub mod nodelifecycle;
pub mod podevents;
pub mod podgc;
pub mod podutil;
pub mod replicaset;
pub mod sharedpods;
pub mod slowstart;
pub mod statefulset;
pub mod statuswriter;
pub mod tainteviction;
pub mod volume;
pub mod workqueue;

/// Settings of the controllers, as kube-controller-manager's flags; `Default` gives upstream's
/// defaults.
#[derive(Clone, Debug, Default)]
pub struct ControllersConfig {
    /// The node lifecycle controller's.
    pub node_lifecycle: nodelifecycle::NodeLifecycleConfig,
    /// The pod garbage collector's.
    pub pod_gc: podgc::PodGcConfig,
    /// The PersistentVolume controller's and the local-path provisioner's.
    pub storage: volume::StorageConfig,
}

/// Starts every controller on `client`; they run until the process ends.
pub fn spawn_all(client: kube::Client, config: ControllersConfig) {
    tokio::spawn(nodelifecycle::run(client.clone(), config.node_lifecycle));
    tokio::spawn(tainteviction::run(client.clone()));
    let pods = sharedpods::SharedPods::start(client.clone());
    tokio::spawn(podgc::run(client.clone(), pods.clone(), config.pod_gc));
    tokio::spawn(garbagecollector::run(client.clone()));
    tokio::spawn(deployment::run(client.clone(), pods.clone()));
    tokio::spawn(replicaset::run(client.clone(), pods.clone()));
    tokio::spawn(daemonset::run(client.clone(), pods.clone()));
    tokio::spawn(statefulset::run(client.clone(), pods.clone()));
    tokio::spawn(volume::persistentvolume::run(client.clone()));
    tokio::spawn(volume::localpath::run(client.clone(), config.storage));
    tokio::spawn(volume::protection::run(client.clone(), pods.clone()));
    let service_pods = endpoint::informer::ServicePods::start(client.clone(), &pods);
    tokio::spawn(endpoint::run(client.clone(), service_pods.clone()));
    tokio::spawn(endpointslice::run(client.clone(), service_pods));
    tokio::spawn(endpoint::apiserver::run(client.clone()));
    tokio::spawn(namespace::run(client));
}
