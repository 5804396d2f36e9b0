//! A pod's volumes as host directories, bind-mounted at each container's `mountPath`:
//! `emptyDir` under the pod's directory, `hostPath` as is, a `persistentVolumeClaim` as its
//! bound PersistentVolume's `hostPath` (or `local`) path, `configMap`, `secret` and
//! `downwardAPI` as files written under the pod's directory. Other volume types are empty
//! directories (with a warning).

use super::env::{EnvSources, PodAddresses, field_value};
use super::spawn::BindMount;
use k8s_openapi::api::core::v1::{
    Container, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Volume,
};
use kube::Api;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A file of a projected volume: its path in the volume, content and mode (`None`: the
/// volume's default).
type ProjectedFile = (String, Vec<u8>, Option<i32>);

/// Upstream's default file mode of projected files (`0644`).
const DEFAULT_MODE: i32 = 0o644;

/// Why a pod's volumes are not ready; the pod stays `ContainerCreating` and is retried.
#[derive(Debug, PartialEq, Eq)]
pub struct VolumeError(pub String);

/// Materialises every volume of `pod` under `pod_dir/volumes`; returns each volume's host path.
pub async fn prepare(
    client: Option<&kube::Client>,
    pod: &Pod,
    pod_dir: &Path,
    addresses: PodAddresses,
) -> Result<HashMap<String, PathBuf>, VolumeError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut sources = EnvSources::new(client.cloned(), &namespace);
    let mut paths = HashMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = prepare_one(client, pod, volume, pod_dir, addresses, &mut sources).await?;
        paths.insert(volume.name.clone(), path);
    }
    Ok(paths)
}

async fn prepare_one(
    client: Option<&kube::Client>,
    pod: &Pod,
    volume: &Volume,
    pod_dir: &Path,
    addresses: PodAddresses,
    sources: &mut EnvSources,
) -> Result<PathBuf, VolumeError> {
    let fail = |e: std::io::Error| VolumeError(format!("volume {:?}: {e}", volume.name));
    let own_dir = pod_dir.join("volumes").join(&volume.name);
    if let Some(host_path) = &volume.host_path {
        let path = PathBuf::from(&host_path.path);
        match host_path.type_.as_deref() {
            Some("DirectoryOrCreate") => std::fs::create_dir_all(&path).map_err(fail)?,
            Some("FileOrCreate") if !path.exists() => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(fail)?;
                }
                std::fs::File::create(&path).map_err(fail)?;
            }
            _ => {}
        }
        return Ok(path);
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        return claim_path(client, pod, &claim.claim_name).await;
    }
    std::fs::create_dir_all(&own_dir).map_err(fail)?;
    let mut files: Vec<ProjectedFile> = Vec::new();
    let mut default_mode = DEFAULT_MODE;
    if let Some(source) = &volume.config_map {
        default_mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        let data = sources
            .config_map(&source.name)
            .await
            .map_err(VolumeError)?;
        match data {
            Some(data) => {
                let data = data.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                files = project(
                    data,
                    source.items.as_deref(),
                    "configmap references non-existent config key",
                )?;
            }
            None if source.optional == Some(true) => {}
            None => {
                return Err(VolumeError(format!(
                    "configmap \"{}\" not found",
                    source.name
                )));
            }
        }
    } else if let Some(source) = &volume.secret {
        default_mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        let name = source.secret_name.clone().unwrap_or_default();
        match sources.secret(&name).await.map_err(VolumeError)? {
            Some(data) => {
                files = project(
                    data,
                    source.items.as_deref(),
                    "references non-existent secret key",
                )?
            }
            None if source.optional == Some(true) => {}
            None => return Err(VolumeError(format!("secret \"{name}\" not found"))),
        }
    } else if let Some(source) = &volume.downward_api {
        default_mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        for item in source.items.iter().flatten() {
            let value = match &item.field_ref {
                Some(field) => {
                    field_value(pod, &field.field_path, addresses).map_err(VolumeError)?
                }
                None => String::new(),
            };
            files.push((item.path.clone(), value.into_bytes(), item.mode));
        }
    } else if volume.empty_dir.is_none() {
        tracing::warn!(volume = %volume.name, "unsupported volume type: an empty directory is mounted");
    }
    for (path, content, mode) in files {
        let file = own_dir.join(&path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        std::fs::write(&file, content).map_err(fail)?;
        let mode = mode.unwrap_or(default_mode) as u32;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).map_err(fail)?;
    }
    Ok(own_dir)
}

/// The files of a ConfigMap or Secret volume: every key, or only `items`, each of which must
/// exist (else `missing_key`, upstream's message, names it).
fn project(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    missing_key: &str,
) -> Result<Vec<ProjectedFile>, VolumeError> {
    match items {
        None => Ok(data.into_iter().map(|(k, v)| (k, v, None)).collect()),
        Some(items) => items
            .iter()
            .map(|item| match data.get(&item.key) {
                Some(value) => Ok((item.path.clone(), value.clone(), item.mode)),
                None => Err(VolumeError(format!("{missing_key}: {}", item.key))),
            })
            .collect(),
    }
}

/// The host directory of a bound claim: its PersistentVolume's `hostPath` or `local` path.
async fn claim_path(
    client: Option<&kube::Client>,
    pod: &Pod,
    claim_name: &str,
) -> Result<PathBuf, VolumeError> {
    let client = client.ok_or_else(|| VolumeError("no API client to read claims".into()))?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
        .get_opt(claim_name)
        .await
        .map_err(|e| VolumeError(e.to_string()))?
        .ok_or_else(|| VolumeError(format!("persistentvolumeclaim \"{claim_name}\" not found")))?;
    let volume_name = claim
        .spec
        .and_then(|s| s.volume_name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            VolumeError(format!(
                "persistentvolumeclaim \"{claim_name}\" is not bound"
            ))
        })?;
    let volume = Api::<PersistentVolume>::all(client.clone())
        .get(&volume_name)
        .await
        .map_err(|e| VolumeError(e.to_string()))?;
    let spec = volume.spec.unwrap_or_default();
    let path = spec
        .host_path
        .map(|h| h.path)
        .or(spec.local.map(|l| l.path))
        .ok_or_else(|| {
            VolumeError(format!(
                "persistentvolume \"{volume_name}\" is neither hostPath nor local"
            ))
        })?;
    std::fs::create_dir_all(&path).map_err(|e| VolumeError(format!("{path}: {e}")))?;
    Ok(PathBuf::from(path))
}

/// A container's bind mounts: each `volumeMount` at its `mountPath` (with `subPath`).
/// ConfigMap, Secret and downward API volumes are always read-only, as upstream mounts them.
pub fn mounts_of(
    pod: &Pod,
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
) -> Result<Vec<BindMount>, String> {
    let read_only_kinds: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter(|v| v.config_map.is_some() || v.secret.is_some() || v.downward_api.is_some())
        .map(|v| v.name.as_str())
        .collect();
    container
        .volume_mounts
        .iter()
        .flatten()
        .map(|mount| {
            let source = volumes.get(&mount.name).ok_or_else(|| {
                format!(
                    "cannot find volume {:?} to mount into container {:?}",
                    mount.name, container.name
                )
            })?;
            let source = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => {
                    let path = source.join(sub);
                    if !path.exists() {
                        std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
                    }
                    path
                }
                None => source.clone(),
            };
            Ok(BindMount {
                source,
                target: PathBuf::from(&mount.mount_path),
                read_only: mount.read_only == Some(true)
                    || read_only_kinds.contains(&mount.name.as_str()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn downward_api_and_empty_dir_volumes_become_files() {
        let dir = tempfile::tempdir().unwrap();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "volumeMounts": [
                    {"name": "info", "mountPath": "/etc/podinfo"},
                    {"name": "scratch", "mountPath": "/scratch", "subPath": "a"}]}],
                "volumes": [
                    {"name": "info", "downwardAPI": {"items": [
                        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"name": "scratch", "emptyDir": {}}]},
        }))
        .unwrap();
        let addresses = PodAddresses {
            pod_ip: None,
            host_ip: None,
        };
        let volumes = prepare(None, &pod, dir.path(), addresses).await.unwrap();
        let info = &volumes["info"];
        assert_eq!(std::fs::read_to_string(info.join("name")).unwrap(), "web-0");
        assert_eq!(
            std::fs::read_to_string(info.join("labels")).unwrap(),
            "app=\"web\""
        );
        assert_eq!(
            std::fs::metadata(info.join("name"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o644
        );
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let mounts = mounts_of(&pod, container, &volumes).unwrap();
        assert_eq!(
            mounts,
            [
                BindMount {
                    source: info.clone(),
                    target: "/etc/podinfo".into(),
                    read_only: true
                },
                BindMount {
                    source: volumes["scratch"].join("a"),
                    target: "/scratch".into(),
                    read_only: false
                },
            ]
        );
        assert!(volumes["scratch"].join("a").is_dir());
    }
}
