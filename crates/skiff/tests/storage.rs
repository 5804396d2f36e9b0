//! Storage through the real kubectl: the default StorageClass and its local-path volumes. The
//! tutorial's Deployment shares one pre-created claim, which gets a volume on the node its
//! pods were scheduled to; deleting a claim of a `Delete` class deletes its volume and the
//! volume's directory, while a `Retain` class leaves the volume `Released`; `kubectl get
//! pv,pvc,storageclass` print upstream's columns.

mod common;
mod workloads;

use common::{Server, apply_seed_deployment, cell, parse_table, row, wait_until};
use serde_json::Value;
use workloads::{SETTLE, apply, events_about, is_ready, live_pods};

/// The name of the server's own node.
fn local_node(server: &Server) -> String {
    wait_until("the local node", SETTLE, || {
        let node = server.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
        if node.is_empty() {
            Err("no node yet".into())
        } else {
            Ok(node)
        }
    })
}

/// Waits until claim `name` in `namespace` is Bound and returns it.
#[track_caller]
fn wait_bound(server: &Server, namespace: &str, name: &str) -> Value {
    wait_until(&format!("pvc/{name} Bound"), SETTLE, || {
        let claim = server.get_json(&["get", "pvc", name, "-n", namespace]);
        if claim["status"]["phase"] == "Bound" {
            Ok(claim)
        } else {
            Err(claim["status"].to_string())
        }
    })
}

/// The tables of a multi-resource `kubectl get`, which prints one table per kind.
fn tables(output: &str) -> Vec<Vec<Vec<(String, String)>>> {
    output.split("\n\n").map(parse_table).collect()
}

/// The column names of a table's first row.
fn columns(table: &[Vec<(String, String)>]) -> Vec<&str> {
    table[0].iter().map(|(name, _)| name.as_str()).collect()
}

/// A pod using claim `claim`.
fn pod_manifest(name: &str, claim: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - name: app
    image: nginx:1.25
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: {claim}
"#
    )
}

/// A 1Gi ReadWriteOnce claim of `class`.
fn claim_manifest(name: &str, class: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {name}
spec:
  storageClassName: {class}
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
"#
    )
}

#[test]
fn the_default_class_is_listed_as_upstream() {
    let server = Server::start();
    let output = server.ok(&["get", "storageclass"]);
    let table = parse_table(&output);
    assert_eq!(
        columns(&table),
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ]
    );
    let class = row(&table, "standard (default)");
    assert_eq!(
        [
            cell(class, "PROVISIONER"),
            cell(class, "RECLAIMPOLICY"),
            cell(class, "VOLUMEBINDINGMODE"),
            cell(class, "ALLOWVOLUMEEXPANSION"),
        ],
        [
            "skiff.dev/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false"
        ]
    );
    let class = server.get_json(&["get", "sc", "standard"]);
    assert_eq!(
        class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
        "true"
    );
}

#[test]
fn the_tutorials_deployment_shares_one_claim_with_a_volume_on_its_node() {
    let server = Server::start();
    let node = local_node(&server);
    apply_seed_deployment(&server, "data");
    let claim = wait_bound(&server, "data", "demo-volume-claim");
    // The DefaultStorageClass admission gave the claim the default class; the scheduler chose
    // the node when it placed the first pod, and the provisioner made the volume there.
    assert_eq!(claim["spec"]["storageClassName"], "standard");
    let annotations = &claim["metadata"]["annotations"];
    assert_eq!(
        annotations["volume.kubernetes.io/selected-node"],
        node.as_str()
    );
    assert_eq!(
        annotations["volume.kubernetes.io/storage-provisioner"],
        "skiff.dev/local-path"
    );
    assert_eq!(annotations["pv.kubernetes.io/bind-completed"], "yes");
    let volume_name = format!("pvc-{}", claim["metadata"]["uid"].as_str().unwrap());
    assert_eq!(claim["spec"]["volumeName"], volume_name.as_str());

    // All three replicas run, on the node that holds the data.
    wait_until("three ready pods", SETTLE, || {
        let pods = live_pods(&server, "data", "app=nginx");
        let ready = pods.iter().filter(|p| is_ready(p)).count();
        if pods.len() == 3 && ready == 3 {
            Ok(())
        } else {
            Err(format!("{ready} of {} ready", pods.len()))
        }
    });
    for pod in live_pods(&server, "data", "app=nginx") {
        assert_eq!(pod["spec"]["nodeName"], node.as_str());
    }

    let volume = server.get_json(&["get", "pv", &volume_name]);
    let dir = server.data_dir().join("volumes").join(&volume_name);
    assert_eq!(volume["spec"]["hostPath"]["path"], dir.to_str().unwrap());
    assert_eq!(
        volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
        serde_json::json!({"key": "kubernetes.io/hostname", "operator": "In", "values": [node]})
    );
    assert_eq!(
        volume["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "skiff.dev/local-path"
    );
    assert!(dir.is_dir(), "{} exists", dir.display());

    let reasons: Vec<String> = events_about(
        &server,
        "data",
        "PersistentVolumeClaim",
        "demo-volume-claim",
    )
    .into_iter()
    .map(|(_, reason, _)| reason)
    .collect();
    for reason in [
        "ExternalProvisioning",
        "Provisioning",
        "ProvisioningSucceeded",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }

    // `kubectl get pv,pvc`: one table per kind, as upstream prints them.
    let output = server.ok(&["get", "pv,pvc", "-n", "data"]);
    let [volumes, claims] = &tables(&output)[..] else {
        panic!("two tables:\n{output}");
    };
    assert_eq!(
        columns(volumes),
        [
            "NAME",
            "CAPACITY",
            "ACCESS MODES",
            "RECLAIM POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE"
        ]
    );
    let pv = row(volumes, &format!("persistentvolume/{volume_name}"));
    let cells: Vec<&str> = pv[1..9].iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        cells,
        [
            "1Gi",
            "RWO",
            "Delete",
            "Bound",
            "data/demo-volume-claim",
            "standard",
            "<unset>",
            ""
        ]
    );
    assert_eq!(
        columns(claims),
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ]
    );
    let pvc = row(claims, "persistentvolumeclaim/demo-volume-claim");
    let cells: Vec<&str> = pvc[1..7].iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        cells,
        [
            "Bound",
            volume_name.as_str(),
            "1Gi",
            "RWO",
            "standard",
            "<unset>"
        ]
    );

    // Delete: the claim's deletion deletes the volume and its directory.
    server.ok(&["delete", "deploy", "nginx-deployment", "-n", "data"]);
    server.ok(&["delete", "pvc", "demo-volume-claim", "-n", "data"]);
    wait_until("the volume deleted", SETTLE, || {
        let output = server.run(&["get", "pv", &volume_name]);
        if output.code == 0 {
            Err(output.stdout)
        } else {
            Ok(())
        }
    });
    assert!(!dir.exists(), "{} was removed", dir.display());
}

#[test]
fn a_retain_class_leaves_the_volume_released_with_its_data() {
    let server = Server::start();
    local_node(&server);
    apply(
        &server,
        "default",
        r#"apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: keep
provisioner: skiff.dev/local-path
reclaimPolicy: Retain
volumeBindingMode: WaitForFirstConsumer
"#,
    );
    apply(&server, "default", &claim_manifest("notes", "keep"));
    // Nothing consumes the claim yet: it waits, and says why.
    wait_until("the WaitForFirstConsumer event", SETTLE, || {
        let events = events_about(&server, "default", "PersistentVolumeClaim", "notes");
        let waiting = (
            "Normal",
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding",
        );
        if events
            .iter()
            .any(|(t, r, m)| (t.as_str(), r.as_str(), m.as_str()) == waiting)
        {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        }
    });
    let table = parse_table(&server.ok(&["get", "pvc", "notes"]));
    let pending = row(&table, "notes");
    assert_eq!(
        [
            cell(pending, "STATUS"),
            cell(pending, "VOLUME"),
            cell(pending, "STORAGECLASS")
        ],
        ["Pending", "", "keep"]
    );

    apply(&server, "default", &pod_manifest("writer", "notes"));
    let claim = wait_bound(&server, "default", "notes");
    let volume_name = claim["spec"]["volumeName"].as_str().unwrap().to_owned();
    let dir = server.data_dir().join("volumes").join(&volume_name);
    assert!(dir.is_dir(), "{} exists", dir.display());
    std::fs::write(dir.join("note.txt"), "kept").unwrap();

    server.ok(&["delete", "pod", "writer", "--grace-period=0", "--force"]);
    server.ok(&["delete", "pvc", "notes"]);
    wait_until("the volume Released", SETTLE, || {
        let table = parse_table(&server.ok(&["get", "pv"]));
        let volume = row(&table, &volume_name);
        if cell(volume, "STATUS") == "Released" {
            Ok(())
        } else {
            Err(format!("{volume:?}"))
        }
    });
    let table = parse_table(&server.ok(&["get", "pv"]));
    let volume = row(&table, &volume_name);
    assert_eq!(
        [
            cell(volume, "RECLAIM POLICY"),
            cell(volume, "CLAIM"),
            cell(volume, "STORAGECLASS")
        ],
        ["Retain", "default/notes", "keep"]
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("note.txt")).unwrap(),
        "kept"
    );
}

#[test]
fn a_pod_that_comes_back_returns_to_the_node_holding_its_volume() {
    // Simulated nodes only: volumes are API objects, no directory is created for them.
    let server = Server::start_with(&["--sim-nodes", "3", "--no-local-node"]);
    wait_until("three nodes", SETTLE, || {
        let nodes = server.ok(&["get", "nodes", "-o", "name"]);
        if nodes.lines().count() == 3 {
            Ok(())
        } else {
            Err(nodes)
        }
    });
    apply(&server, "default", &claim_manifest("state", "standard"));
    apply(&server, "default", &pod_manifest("app", "state"));
    let claim = wait_bound(&server, "default", "state");
    let volume_name = claim["spec"]["volumeName"].as_str().unwrap().to_owned();
    let scheduled_node = |server: &Server| {
        wait_until("pod/app scheduled", SETTLE, || {
            let pod = server.get_json(&["get", "pod", "app"]);
            pod["spec"]["nodeName"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| pod["status"].to_string())
        })
    };
    let node = scheduled_node(&server);
    assert_eq!(
        claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
        node.as_str()
    );
    let volume = server.get_json(&["get", "pv", &volume_name]);
    assert_eq!(
        volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
        serde_json::json!([node])
    );
    assert!(
        !server
            .data_dir()
            .join("volumes")
            .join(&volume_name)
            .exists()
    );
    // Each new incarnation of the pod lands where its data is (one node in three by chance).
    for _ in 0..3 {
        server.ok(&["delete", "pod", "app", "--grace-period=0", "--force"]);
        apply(&server, "default", &pod_manifest("app", "state"));
        assert_eq!(scheduled_node(&server), node);
    }
}

#[test]
fn a_pod_is_bound_to_its_node_only_once_its_claims_are_bound() {
    let server = Server::start();
    let node = local_node(&server);
    // A class nobody provisions: its claims wait until an administrator supplies a volume.
    apply(
        &server,
        "default",
        r#"apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: manual
provisioner: example.com/nobody
volumeBindingMode: WaitForFirstConsumer
"#,
    );
    apply(&server, "default", &claim_manifest("later", "manual"));
    apply(&server, "default", &pod_manifest("waits", "later"));
    // The scheduler chose the node and told the claim (PreBind), and waits for the volume.
    wait_until("the claim's selected node", SETTLE, || {
        let claim = server.get_json(&["get", "pvc", "later"]);
        let selected = &claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"];
        if selected == node.as_str() {
            Ok(())
        } else {
            Err(claim["metadata"].to_string())
        }
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let pod = server.get_json(&["get", "pod", "waits"]);
    assert_eq!(pod["spec"]["nodeName"], Value::Null, "{pod:#}");
    assert_eq!(pod["status"]["phase"], "Pending", "{pod:#}");

    // A volume made for the claim binds it, and the pod goes to the node.
    let dir = server.data_dir().join("manual-volume");
    apply(
        &server,
        "default",
        &format!(
            r#"apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv-later
spec:
  storageClassName: manual
  capacity:
    storage: 1Gi
  accessModes: [ReadWriteOnce]
  hostPath:
    path: {}
  claimRef:
    namespace: default
    name: later
"#,
            dir.display()
        ),
    );
    wait_bound(&server, "default", "later");
    wait_until("the pod bound", SETTLE, || {
        let pod = server.get_json(&["get", "pod", "waits"]);
        if pod["spec"]["nodeName"] == node.as_str() {
            Ok(())
        } else {
            Err(pod["status"].to_string())
        }
    });
}

#[test]
fn a_claim_in_use_stays_terminating_until_its_pods_are_gone() {
    let server = Server::start();
    local_node(&server);
    apply_seed_deployment(&server, "data");
    wait_bound(&server, "data", "demo-volume-claim");
    let claim = server.get_json(&["get", "pvc", "demo-volume-claim", "-n", "data"]);
    assert_eq!(
        claim["metadata"]["finalizers"],
        serde_json::json!(["kubernetes.io/pvc-protection"])
    );
    let volume = claim["spec"]["volumeName"].as_str().unwrap().to_owned();
    let pv = server.get_json(&["get", "pv", &volume]);
    assert_eq!(
        pv["metadata"]["finalizers"],
        serde_json::json!(["kubernetes.io/pv-protection"])
    );

    assert_eq!(
        server.ok(&[
            "delete",
            "pvc",
            "demo-volume-claim",
            "-n",
            "data",
            "--wait=false"
        ]),
        "persistentvolumeclaim \"demo-volume-claim\" deleted\n"
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    let table = parse_table(&server.ok(&["get", "pvc", "-n", "data"]));
    assert_eq!(
        cell(row(&table, "demo-volume-claim"), "STATUS"),
        "Terminating"
    );

    // The Deployment's pods go, and with them the claim and (class Delete) its volume.
    server.ok(&["delete", "deploy", "nginx-deployment", "-n", "data"]);
    wait_until("the claim and its volume gone", SETTLE, || {
        let claims = server.ok(&["get", "pvc", "-n", "data", "-o", "name"]);
        let volumes = server.ok(&["get", "pv", "-o", "name"]);
        if claims.is_empty() && !volumes.contains(&volume) {
            Ok(())
        } else {
            Err(format!("{claims}{volumes}"))
        }
    });
}
