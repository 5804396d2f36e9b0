//! The generic registry store: create, read, update, patch and delete for every resource,
//! as upstream's `genericregistry.Store`. What is common to all kinds (names, uid, timestamps,
//! resourceVersion, generation, finalizers, graceful deletion, optimistic concurrency) lives
//! here; what differs per kind comes from its [`Strategy`].

use crate::cache::Cache;
use crate::service_alloc;
use bytes::Bytes;
use serde_json::{Value, json};
use skiff_api::patch::{self, PatchType};
use skiff_api::resources::{self, ResourceInfo};
use skiff_api::validation::{self, names::NameRule};
use skiff_api::{ApiError, FieldError, kinds};
use skiff_store::{KeyValue, Store, StoreError};
use std::sync::Arc;

/// How a request wants unknown fields treated (`?fieldValidation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Reject unknown fields with 400.
    Strict,
    /// Accept, and warn about each unknown field (upstream's default).
    #[default]
    Warn,
    /// Accept silently.
    Ignore,
}

impl FieldValidation {
    /// Parses the query parameter as upstream does.
    pub fn parse(s: Option<&str>) -> Result<Self, ApiError> {
        match s {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}, must be one of Ignore, Warn, or Strict"
            ))),
        }
    }
}

/// Options common to writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: run every step but do not persist.
    pub dry_run: bool,
    /// Unknown field handling.
    pub field_validation: FieldValidation,
}

/// Options of a delete (`metav1.DeleteOptions`).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `dryRun: ["All"]`.
    pub dry_run: bool,
    /// Grace period; `None` means the kind's default.
    pub grace_period_seconds: Option<i64>,
    /// `Background`, `Foreground` or `Orphan`; recorded for the garbage collector.
    pub propagation_policy: Option<String>,
    /// Precondition on the object's uid.
    pub precondition_uid: Option<String>,
    /// Precondition on the object's resourceVersion.
    pub precondition_resource_version: Option<String>,
}

/// The outcome of a write: the object as stored (or as it would be, for a dry run) and the
/// warnings to send in `Warning` headers.
#[derive(Debug)]
pub struct Written {
    /// The object, `resourceVersion` included.
    pub object: Value,
    /// Warnings for the client.
    pub warnings: Vec<String>,
}

/// The outcome of a delete.
#[derive(Debug)]
pub enum Deleted {
    /// The object is gone; upstream answers a `Status` naming it.
    Gone(Value),
    /// The object remains until finalizers or its grace period let it go.
    Pending(Value),
}

/// The generic store over one [`Store`], shared by all resources.
pub struct Registry {
    store: Arc<dyn Store>,
    cache: Arc<Cache>,
}

fn store_error(info: &ResourceInfo, name: &str, err: StoreError) -> ApiError {
    match err {
        StoreError::AlreadyExists => ApiError::already_exists(info.plural, info.group, name),
        StoreError::NotFound => ApiError::not_found(info.plural, info.group, name),
        StoreError::Conflict(_) => ApiError::conflict(info.plural, info.group, name),
        StoreError::Compacted { .. } => ApiError::gone(err.to_string()),
        StoreError::FutureRevision(_) => {
            ApiError::timeout(format!("Too large resource version: {err}"))
        }
        StoreError::Backend(msg) => ApiError::internal(msg),
    }
}

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn random_suffix() -> String {
    use rand::Rng;
    // Upstream's alphabet for generated names: no vowels (no words), no confusable characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Sets `metadata.resourceVersion` on a stored value.
pub fn with_revision(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("corrupt stored object {}: {e}", kv.key)))?;
    v["metadata"]["resourceVersion"] = kv.mod_revision.to_string().into();
    Ok(v)
}

fn encode_for_storage(object: &Value) -> Bytes {
    let mut o = object.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    Bytes::from(serde_json::to_vec(&o).expect("a JSON value always serializes"))
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object["metadata"][field].as_str().filter(|s| !s.is_empty())
}

fn strip_revision(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    o
}

fn has_finalizers(object: &Value) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

/// What kind of write an update is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateTarget {
    /// The main resource: `.status` is kept from the stored object.
    Main,
    /// The status subresource: only `.status` changes.
    Status,
}

impl Registry {
    /// A registry over `store`, reading through `cache` where consistency allows.
    pub fn new(store: Arc<dyn Store>, cache: Arc<Cache>) -> Self {
        Self { store, cache }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Decodes `object` as the resource's kind and applies the field validation mode.
    fn decode(
        &self,
        info: &ResourceInfo,
        object: Value,
        opts: &WriteOptions,
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        let decoded = kinds::strategy_for(info).decode(info, object)?;
        if !decoded.unknown_fields.is_empty() {
            let unknown: Vec<String> = decoded
                .unknown_fields
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            match opts.field_validation {
                FieldValidation::Strict => {
                    return Err(ApiError::bad_request(format!(
                        "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
                        unknown.join(", "),
                        kind = info.kind,
                        v = info.version
                    )));
                }
                FieldValidation::Warn => warnings.extend(unknown),
                FieldValidation::Ignore => {}
            }
        }
        Ok(decoded.object)
    }

    /// Checks that a body is an object with a `metadata` object; its apiVersion and kind are
    /// checked by the kind's decoder.
    fn check_shape(object: &mut Value) -> Result<(), ApiError> {
        let Some(map) = object.as_object_mut() else {
            return Err(ApiError::bad_request(
                "the request body must be a JSON or YAML object",
            ));
        };
        if !map.get("metadata").is_some_and(Value::is_object) {
            map.insert("metadata".into(), json!({}));
        }
        Ok(())
    }

    /// Fails unless `namespace` exists and is not terminating (for creates).
    async fn check_namespace(&self, namespace: &str) -> Result<(), ApiError> {
        let info = resources::find_kind("", "Namespace").expect("namespaces are registered");
        let key = info.storage_key(None, namespace);
        let ns = match self.cache.resource(info).get(&key) {
            Some(o) => Some(o.value()),
            None => self
                .store
                .get(&key)
                .await
                .map_err(|e| store_error(info, namespace, e))?
                .map(|kv| with_revision(&kv))
                .transpose()?,
        };
        match ns {
            None => Err(ApiError::not_found("namespaces", "", namespace)),
            Some(ns)
                if ns["status"]["phase"] == "Terminating"
                    || !ns["metadata"]["deletionTimestamp"].is_null() =>
            {
                Err(ApiError::namespace_terminating(namespace))
            }
            Some(_) => Ok(()),
        }
    }

    /// Reads one object from the store (a consistent read).
    pub async fn get(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(Value, KeyValue), ApiError> {
        let key = info.storage_key(namespace, name);
        match self
            .store
            .get(&key)
            .await
            .map_err(|e| store_error(info, name, e))?
        {
            Some(kv) => Ok((with_revision(&kv)?, kv)),
            None => Err(ApiError::not_found(info.plural, info.group, name)),
        }
    }

    /// Creates an object (POST).
    pub async fn create(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        mut object: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let strategy = kinds::strategy_for(info);
        Self::check_shape(&mut object)?;
        let mut warnings = Vec::new();
        let mut object = self.decode(info, object, opts, &mut warnings)?;
        if meta_str(&object, "resourceVersion").is_some() {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let meta = object["metadata"]
            .as_object_mut()
            .expect("check_shape made metadata an object");
        if info.namespaced {
            let ns = namespace.unwrap_or_default();
            match meta.get("namespace").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), ns.into());
                }
            }
        } else {
            meta.remove("namespace");
        }
        let has_name = meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !has_name
            && let Some(prefix) = meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
        {
            let name = format!("{prefix}{}", random_suffix());
            meta.insert("name".into(), name.into());
        }
        meta.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
        meta.insert("creationTimestamp".into(), now_rfc3339().into());
        drop_empty_metadata(meta);
        for transient in [
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(transient);
        }
        strategy.prepare_for_create(&mut object);
        strategy.default(&mut object);
        crate::admission::admit_create(info, &mut object, &self.cache);
        let mut errors = validation::validate_object_meta_with_rule(
            &object["metadata"],
            info.namespaced,
            NameRule::for_kind(info.kind, info.group),
        );
        errors.extend(strategy.validate(&object));
        let name = meta_str(&object, "name").unwrap_or_default().to_string();
        if !errors.is_empty() {
            return Err(ApiError::invalid(info.kind, info.group, &name, &errors));
        }
        if info.namespaced {
            self.check_namespace(namespace.unwrap_or_default()).await?;
        }
        if opts.dry_run {
            return Ok(Written { object, warnings });
        }
        // Services hold addresses from shared ranges, as upstream's service storage does.
        let is_service = info.group.is_empty() && info.kind == "Service";
        let allocation = if is_service {
            Some(service_alloc::allocate(&self.store, &mut object).await?)
        } else {
            None
        };
        let key = info.storage_key(namespace, &name);
        match self.store.create(&key, encode_for_storage(&object)).await {
            Ok(rev) => {
                object["metadata"]["resourceVersion"] = rev.to_string().into();
                Ok(Written { object, warnings })
            }
            Err(e) => {
                if let Some(a) = allocation {
                    service_alloc::release_allocation(&self.store, a).await;
                }
                Err(store_error(info, &name, e))
            }
        }
    }

    /// Reads, transforms and writes one object with optimistic concurrency, retrying when
    /// another writer got in between (upstream's `GuaranteedUpdate`). `transform` receives the
    /// current object (with its resourceVersion) and returns the desired one; returning an
    /// object equal to the current one writes nothing and keeps the resourceVersion.
    pub async fn guaranteed_update<F>(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        dry_run: bool,
        mut transform: F,
    ) -> Result<Value, ApiError>
    where
        F: FnMut(&Value) -> Result<Value, ApiError>,
    {
        let key = info.storage_key(namespace, name);
        // As upstream, start from the watch cache's copy and read the store only when that
        // copy turns out stale (a conflict) or when trusting it would decide the outcome (a
        // no-op or an error must be confirmed against the latest object).
        let mut cached = self.cache.resource(info).get(&key);
        loop {
            let from_cache = cached.is_some();
            let (current, mod_revision) = match cached.take() {
                Some(o) => (o.value(), o.revision),
                None => {
                    let (v, kv) = self.get(info, namespace, name).await?;
                    (v, kv.mod_revision)
                }
            };
            let desired = match transform(&current) {
                Ok(d) => d,
                Err(_) if from_cache => continue,
                Err(e) => return Err(e),
            };
            let desired_plain = strip_revision(&desired);
            if desired_plain == strip_revision(&current) {
                if from_cache {
                    continue;
                }
                return Ok(current);
            }
            if dry_run {
                return Ok(desired);
            }
            // Removing the last finalizer of an object being deleted completes the deletion.
            let result = if Self::deletion_complete(info, &desired) {
                self.store
                    .delete(&key, Some(mod_revision))
                    .await
                    .map(|(rev, _)| rev)
            } else {
                self.store
                    .update(&key, encode_for_storage(&desired_plain), Some(mod_revision))
                    .await
            };
            match result {
                Ok(rev) => {
                    let mut out = desired_plain;
                    out["metadata"]["resourceVersion"] = rev.to_string().into();
                    return Ok(out);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(store_error(info, name, e)),
            }
        }
    }

    /// Whether an object marked for deletion may now be removed: no finalizers left (for
    /// namespaces, no `spec.finalizers` either) and no grace period still running (a pod on a
    /// node waits for its kubelet to confirm with a zero-grace delete).
    fn deletion_complete(info: &ResourceInfo, object: &Value) -> bool {
        let core = info.group.is_empty();
        let deleting = !object["metadata"]["deletionTimestamp"].is_null();
        let grace_running = core
            && info.kind == "Pod"
            && object["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0)
                > 0;
        let namespace_finalizing = core
            && info.kind == "Namespace"
            && object["spec"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
        deleting && !has_finalizers(object) && !grace_running && !namespace_finalizing
    }

    /// `PUT namespaces/<name>/finalize`: replaces `spec.finalizers` and nothing else.
    pub async fn finalize_namespace(
        &self,
        info: &ResourceInfo,
        name: &str,
        body: &Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let finalizers = body["spec"]["finalizers"].clone();
        self.guaranteed_update(info, None, name, dry_run, |current| {
            let mut next = current.clone();
            match &finalizers {
                Value::Array(f) if !f.is_empty() => next["spec"]["finalizers"] = finalizers.clone(),
                _ => {
                    if let Some(spec) = next.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.remove("finalizers");
                    }
                }
            }
            Ok(next)
        })
        .await
    }

    /// Replaces an object (PUT) or its status. A stale `metadata.resourceVersion` is a 409.
    pub async fn update(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        mut body: Value,
        target: UpdateTarget,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        Self::check_shape(&mut body)?;
        match meta_str(&body, "name") {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            None => {
                return Err(ApiError::bad_request("name is required in metadata"));
            }
            _ => {}
        }
        if info.namespaced
            && let Some(ns) = meta_str(&body, "namespace")
            && Some(ns) != namespace
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let mut warnings = Vec::new();
        let precondition = meta_str(&body, "resourceVersion").map(str::to_string);
        let decoded = self.decode(info, body, opts, &mut warnings)?;
        let object = self
            .guaranteed_update(info, namespace, name, opts.dry_run, |current| {
                if let Some(rv) = &precondition
                    && meta_str(current, "resourceVersion") != Some(rv.as_str())
                {
                    return Err(ApiError::conflict(info.plural, info.group, name));
                }
                self.prepare_update(info, decoded.clone(), current, target)
            })
            .await?;
        Ok(Written { object, warnings })
    }

    /// Applies a patch (PATCH) to an object or its status.
    pub async fn patch(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        (patch_type, patch_body): (PatchType, &Value),
        target: UpdateTarget,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let mut warnings = Vec::new();
        let object = self
            .guaranteed_update(info, namespace, name, opts.dry_run, |current| {
                warnings.clear();
                let mut patched = apply_patch(&info.group_kind(), current, patch_type, patch_body)?;
                Self::check_shape(&mut patched)?;
                if let Some(rv) = meta_str(&patched, "resourceVersion")
                    && Some(rv) != meta_str(current, "resourceVersion")
                {
                    return Err(ApiError::conflict(info.plural, info.group, name));
                }
                if meta_str(&patched, "name") != Some(name) {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        meta_str(&patched, "name").unwrap_or_default()
                    )));
                }
                let decoded = self.decode(info, patched, opts, &mut warnings)?;
                self.prepare_update(info, decoded, current, target)
            })
            .await?;
        Ok(Written { object, warnings })
    }

    /// Turns a decoded request object into the object to store in place of `current`:
    /// system metadata carried over, strategy hooks, defaults, validation, generation.
    fn prepare_update(
        &self,
        info: &ResourceInfo,
        mut new: Value,
        current: &Value,
        target: UpdateTarget,
    ) -> Result<Value, ApiError> {
        let strategy = kinds::strategy_for(info);
        let old_meta = current["metadata"].as_object().cloned().unwrap_or_default();
        let meta = new["metadata"]
            .as_object_mut()
            .expect("check_shape made metadata an object");
        // A uid in the request is a precondition, as upstream's update: it must name this object.
        if let Some(uid) = meta
            .get("uid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            && Some(uid) != old_meta.get("uid").and_then(Value::as_str)
        {
            return Err(ApiError::conflict_with(
                info.plural,
                info.group,
                meta_str(current, "name").unwrap_or_default(),
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    old_meta
                        .get("uid")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                ),
            ));
        }
        drop_empty_metadata(meta);
        for system in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "resourceVersion",
        ] {
            match old_meta.get(system) {
                Some(v) => meta.insert(system.into(), v.clone()),
                None => meta.remove(system),
            };
        }
        meta.remove("managedFields");
        match target {
            UpdateTarget::Main => strategy.prepare_for_update(&mut new, current),
            UpdateTarget::Status => strategy.prepare_for_status_update(&mut new, current),
        }
        strategy.default(&mut new);
        let name = meta_str(&new, "name").unwrap_or_default().to_string();
        let mut errors: Vec<FieldError> =
            validation::validate_object_meta_update(&new["metadata"], &current["metadata"]);
        if target == UpdateTarget::Main {
            errors.extend(strategy.validate_update(&new, current));
        }
        // A deleting object may only lose finalizers, never gain new ones (upstream rule).
        if !current["metadata"]["deletionTimestamp"].is_null() {
            let old: Vec<&Value> = current["metadata"]["finalizers"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            if let Some(added) = new["metadata"]["finalizers"]
                .as_array()
                .and_then(|a| a.iter().find(|f| !old.contains(f)))
            {
                errors.push(FieldError::forbidden("metadata.finalizers", format!("no new finalizers can be added if the object is being deleted, found new finalizers []string{{{added}}}")));
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(info.kind, info.group, &name, &errors));
        }
        // Kinds that track generation got one at creation; it moves only on the changes the
        // strategy names.
        if let Some(generation) = current["metadata"]["generation"].as_i64() {
            let bump = target == UpdateTarget::Main && strategy.generation_changed(&new, current);
            new["metadata"]["generation"] = (if bump { generation + 1 } else { generation }).into();
        }
        Ok(new)
    }

    /// Deletes an object, honouring preconditions, finalizers, graceful deletion and the
    /// propagation policy.
    pub async fn delete(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let key = info.storage_key(namespace, name);
        loop {
            let (current, kv) = self.get(info, namespace, name).await?;
            if let Some(uid) = &opts.precondition_uid {
                let actual = meta_str(&current, "uid").unwrap_or_default();
                if uid != actual {
                    return Err(ApiError::conflict_with(
                        info.plural,
                        info.group,
                        name,
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                        ),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_resource_version {
                let actual = meta_str(&current, "resourceVersion").unwrap_or_default();
                if rv != actual {
                    return Err(ApiError::conflict_with(
                        info.plural,
                        info.group,
                        name,
                        &format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                        ),
                    ));
                }
            }
            let mut marked = current.clone();
            let keep = self.mark_for_deletion(info, &mut marked, opts);
            if opts.dry_run {
                return Ok(if keep {
                    Deleted::Pending(marked)
                } else {
                    Deleted::Gone(current)
                });
            }
            let result = if keep {
                if strip_revision(&marked) == strip_revision(&current) {
                    return Ok(Deleted::Pending(current));
                }
                self.store
                    .update(&key, encode_for_storage(&marked), Some(kv.mod_revision))
                    .await
            } else {
                self.store
                    .delete(&key, Some(kv.mod_revision))
                    .await
                    .map(|(rev, _)| rev)
            };
            match result {
                Ok(rev) => {
                    if !keep && info.group.is_empty() && info.kind == "Service" {
                        service_alloc::release(&self.store, &current).await;
                    }
                    let mut out = if keep { marked } else { current };
                    out["metadata"]["resourceVersion"] = rev.to_string().into();
                    return Ok(if keep {
                        Deleted::Pending(out)
                    } else {
                        Deleted::Gone(out)
                    });
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(store_error(info, name, e)),
            }
        }
    }

    /// Marks `object` for deletion as upstream's `BeforeDelete` does; returns whether the
    /// object must stay (finalizers or a grace period) rather than be removed now.
    fn mark_for_deletion(
        &self,
        info: &ResourceInfo,
        object: &mut Value,
        opts: &DeleteOptions,
    ) -> bool {
        let now = now_rfc3339();
        add_propagation_finalizer(object, opts.propagation_policy.as_deref());
        let is_namespace = info.kind == "Namespace" && info.group.is_empty();
        if is_namespace {
            // Namespaces always go through Terminating: the namespace controller empties them
            // and removes the `kubernetes` finalizer, then they are deleted.
            let spec_finalizers = object["spec"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
            if spec_finalizers || has_finalizers(object) {
                if object["metadata"]["deletionTimestamp"].is_null() {
                    object["metadata"]["deletionTimestamp"] = now.into();
                    object["metadata"]["deletionGracePeriodSeconds"] = 0.into();
                }
                object["status"]["phase"] = "Terminating".into();
                return true;
            }
            return false;
        }
        let grace = if info.kind == "Pod" && info.group.is_empty() {
            pod_grace_period(object, opts.grace_period_seconds)
        } else {
            0
        };
        if grace > 0 {
            let current = object["metadata"]["deletionGracePeriodSeconds"].as_i64();
            // A second delete may shorten the grace period, never lengthen it.
            if current.is_none_or(|c| grace < c) {
                let deadline = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
                object["metadata"]["deletionTimestamp"] =
                    deadline.strftime("%Y-%m-%dT%H:%M:%SZ").to_string().into();
                object["metadata"]["deletionGracePeriodSeconds"] = grace.into();
            }
            return true;
        }
        if has_finalizers(object) {
            if object["metadata"]["deletionTimestamp"].is_null() {
                object["metadata"]["deletionTimestamp"] = now.into();
            }
            object["metadata"]["deletionGracePeriodSeconds"] = 0.into();
            return true;
        }
        false
    }
}

/// Drops empty lists and maps from metadata: every ObjectMeta field is `omitempty` upstream, so
/// an emptied `ownerReferences`, `finalizers`, `labels` or `annotations` disappears.
fn drop_empty_metadata(meta: &mut serde_json::Map<String, Value>) {
    meta.retain(|_, v| match v {
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    });
}

/// Records a Foreground or Orphan propagation policy as upstream does, with the finalizer the
/// garbage collector acts on (`foregroundDeletion` or `orphan`); the two exclude each other.
/// Background needs nothing: the collector deletes the dependents of owners that are gone.
fn add_propagation_finalizer(object: &mut Value, policy: Option<&str>) {
    let (wanted, other) = match policy {
        Some("Foreground") => ("foregroundDeletion", "orphan"),
        Some("Orphan") => ("orphan", "foregroundDeletion"),
        _ => return,
    };
    let mut finalizers: Vec<Value> = object["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    finalizers.retain(|f| f != other);
    if !finalizers.iter().any(|f| f == wanted) {
        finalizers.push(wanted.into());
    }
    object["metadata"]["finalizers"] = Value::Array(finalizers);
}

/// The grace period a pod delete gets: as requested, else the pod's own; zero for pods that
/// never reached a node or already finished (nothing to stop), as upstream's pod strategy.
fn pod_grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let unbound = pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty);
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if unbound || finished {
        return 0;
    }
    requested
        .unwrap_or_else(|| {
            pod["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(30)
        })
        .max(0)
}

/// Applies a patch of the given type to `current`; `group_kind` is `Kind` or `Kind.group`.
pub fn apply_patch(
    group_kind: &str,
    current: &Value,
    patch_type: PatchType,
    body: &Value,
) -> Result<Value, ApiError> {
    match patch_type {
        PatchType::Json => patch::json_patch(current, body),
        PatchType::Merge | PatchType::Apply => patch::merge_patch(current, body),
        PatchType::StrategicMerge => patch::strategic_merge(current, body, group_kind),
    }
}
