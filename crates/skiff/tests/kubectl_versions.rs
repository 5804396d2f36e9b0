//! The supported kubectl versions (1.29 to 1.33), called directly rather than through the
//! dispatcher, each with an empty discovery cache so that each negotiates discovery itself
//! (1.29 only accepts aggregated discovery v2beta1, 1.30+ prefer v2).

mod common;

use common::{Server, cell, example, namespace_manifest, parse_table, row};

#[test]
fn kubectl_1_29_to_1_33_do_the_basics() {
    let server = Server::start();
    let manifest = example("seed/deployment.yaml");
    for minor in 29..=33 {
        let cache = tempfile::tempdir().unwrap();
        let command = |args: &[&str]| server.kubectl(args).version(minor).cache_dir(cache.path());
        let kubectl = |args: &[&str]| command(args).run();
        let namespace = format!("v1-{minor}");

        let version = kubectl(&["version"]).success();
        assert!(
            version.starts_with(&format!("Client Version: v1.{minor}.")),
            "{version}"
        );
        assert!(
            version.contains("\nServer Version: v1.33."),
            "kubectl 1.{minor}: {version}"
        );
        assert!(
            !version.contains("WARNING"),
            "kubectl 1.{minor} warns about skew:\n{version}"
        );

        assert_eq!(
            command(&["apply", "-f", "-"])
                .stdin(&namespace_manifest(&namespace))
                .run()
                .success(),
            format!("namespace/{namespace} created\n"),
            "kubectl 1.{minor}"
        );
        assert_eq!(
            kubectl(&["apply", "-n", &namespace, "-f", manifest.to_str().unwrap()]).success(),
            "persistentvolumeclaim/demo-volume-claim created\ndeployment.apps/nginx-deployment created\n",
            "kubectl 1.{minor}"
        );
        let table =
            parse_table(&kubectl(&["get", "deploy", "-n", &namespace, "-o", "wide"]).success());
        assert_eq!(
            cell(row(&table, "nginx-deployment"), "IMAGES"),
            "nginx:1.14.2",
            "kubectl 1.{minor}"
        );
        assert_eq!(
            kubectl(&[
                "scale",
                "deploy",
                "nginx-deployment",
                "--replicas=2",
                "-n",
                &namespace
            ])
            .success(),
            "deployment.apps/nginx-deployment scaled\n",
            "kubectl 1.{minor}"
        );
        assert_eq!(
            kubectl(&["apply", "-n", &namespace, "-f", manifest.to_str().unwrap()]).success(),
            "persistentvolumeclaim/demo-volume-claim unchanged\ndeployment.apps/nginx-deployment configured\n",
            "kubectl 1.{minor}: re-applying resets the replicas the manifest declares"
        );
        assert_eq!(
            kubectl(&["delete", "-n", &namespace, "-f", manifest.to_str().unwrap()]).success(),
            "persistentvolumeclaim \"demo-volume-claim\" deleted\ndeployment.apps \"nginx-deployment\" deleted\n",
            "kubectl 1.{minor}"
        );
    }
}
