//! Strategic merge patch, as apimachinery's `strategicpatch.StrategicMergeMapPatch` applies
//! it server side (`MergeParallelList` and `IgnoreUnmatchedNulls` on), including the fixes
//! upstream made since: `$deleteFromPrimitiveList` never adds to a missing list and deletes
//! whatever the field's strategy.
//!
//! Where upstream copies a patch value verbatim (a key the original lacks, a replaced list)
//! and relies on decoding into Go structs to drop the directives left inside it, this code
//! merges the value into an empty one instead, so no directive is ever stored.

use super::gofmt;
use super::schema::{Field, Shape, TypeDef};
use crate::ApiError;
use serde_json::{Map, Value};

type Object = Map<String, Value>;
type Type = Option<&'static TypeDef>;

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// `mergepatch.ErrBadPatchFormatForRetainKeys`.
const BAD_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
/// `mergepatch.ErrBadPatchFormatForPrimitiveList`.
const BAD_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
/// `mergepatch.ErrBadPatchFormatForSetElementOrderList`.
const BAD_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";

/// An error upstream's `interpretStrategicMergePatchError` leaves unclassified. Upstream
/// answers those 500 with an empty reason (`Error from server: <message>`); they are all
/// caused by the patch, so skiff answers 400 BadRequest with the same message.
fn unclassified(message: String) -> ApiError {
    ApiError::bad_request(message)
}

/// `mergepatch.ErrBadArgType`.
fn bad_arg_type(expected: &str, actual: &Value) -> ApiError {
    unclassified(format!(
        "expected a {expected}, but received a {}",
        gofmt::type_name(actual)
    ))
}

/// `mergepatch.ErrNoMergeKey`.
fn no_merge_key(map: &Object, key: &str) -> ApiError {
    unclassified(format!(
        "map: {} does not contain declared merge key: {key}",
        gofmt::v(&Value::Object(map.clone()))
    ))
}

/// `mergepatch.ErrBadPatchType`.
fn bad_patch_type(directive: &Value, map: &Object) -> ApiError {
    unclassified(format!(
        "unknown patch type: {} in map: {}",
        gofmt::s(directive),
        gofmt::v(&Value::Object(map.clone()))
    ))
}

/// `mergepatch.ErrNoListOfLists`: upstream answers 422 without repeating the message.
fn list_of_lists() -> ApiError {
    super::rejected()
}

/// The field named `key` of a struct type.
fn field_of(ty: Type, key: &str) -> Option<&'static Field> {
    ty.and_then(|t| t.field(key))
}

/// The type of a field's struct value, or of its elements.
fn type_of(field: Option<&'static Field>) -> Type {
    field.and_then(|f| f.shape.elem_type())
}

/// The merge key of a field's list: `Some(key)` for merge lists of structs, `Some("")` for
/// merged sets of scalars, `None` for lists replaced whole.
fn list_merge_key(field: Option<&'static Field>) -> Option<&'static str> {
    match field.map(|f| f.shape) {
        Some(Shape::MergeList { key, .. }) => Some(key),
        Some(Shape::PrimitiveSet) => Some(""),
        _ => None,
    }
}

/// Strips `prefix` + `/` from a parallel-list directive key (`extractKey`).
fn directive_field<'k>(key: &'k str, prefix: &str, malformed: &str) -> Result<&'k str, ApiError> {
    match key.split_once('/') {
        Some((head, field)) if head == prefix && !field.is_empty() => Ok(field),
        _ => Err(ApiError::bad_request(malformed)),
    }
}

/// Merges `patch` into `original`, a map of type `ty` (`mergeMap`).
pub(super) fn merge_map(
    mut original: Object,
    patch: &Object,
    ty: Type,
) -> Result<Object, ApiError> {
    if let Some(directive) = patch.get(PATCH) {
        return match directive.as_str() {
            Some("replace") => {
                let mut replacement = patch.clone();
                replacement.remove(PATCH);
                merge_map(Object::new(), &replacement, ty)
            }
            Some("delete") => Ok(Object::new()),
            _ => Err(bad_patch_type(directive, patch)),
        };
    }
    let mut patch = patch.clone();
    apply_retain_keys(&mut original, &mut patch)?;
    apply_element_orders(&mut original, &mut patch, ty)?;

    for (key, patch_value) in patch {
        let (key, is_delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            (
                directive_field(&key, DELETE_FROM_PRIMITIVE_LIST, BAD_PRIMITIVE_LIST)?.to_string(),
                true,
            )
        } else {
            (key, false)
        };
        let field = field_of(ty, &key);
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let Some(current) = original.get_mut(&key) else {
            // Deleting from a list that is not there leaves it absent.
            if !is_delete_list {
                original.insert(key, fresh(&patch_value, field)?);
            }
            continue;
        };
        let merged = match (current.take(), &patch_value) {
            (Value::Object(current), Value::Object(patch)) => {
                Value::Object(merge_map(current, patch, type_of(field))?)
            }
            (Value::Array(current), Value::Array(patch)) if is_delete_list => Value::Array(
                current
                    .into_iter()
                    .filter(|item| !patch.contains(item))
                    .collect(),
            ),
            (Value::Array(current), Value::Array(patch)) => {
                Value::Array(merge_list(current, patch, field)?)
            }
            (_, _) if is_delete_list => return Err(ApiError::bad_request(BAD_PRIMITIVE_LIST)),
            // Scalars, and values whose JSON type changed, are replaced.
            (_, patch_value) => fresh(patch_value, field)?,
        };
        *current = merged;
    }
    Ok(original)
}

/// A patch value for a key the original lacks: the patch merged into nothing, so that its
/// directives are applied rather than stored.
fn fresh(patch: &Value, field: Option<&'static Field>) -> Result<Value, ApiError> {
    Ok(match patch {
        Value::Object(patch) => Value::Object(merge_map(Object::new(), patch, type_of(field))?),
        Value::Array(items) => {
            let elem = type_of(field);
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                // In a merge list, `$patch` elements act on the original, which is empty.
                let special = list_merge_key(field).is_some() && item.get(PATCH).is_some();
                if !special {
                    out.push(fresh_element(item, elem)?);
                }
            }
            Value::Array(out)
        }
        scalar => scalar.clone(),
    })
}

/// One list element merged into nothing.
fn fresh_element(item: &Value, elem: Type) -> Result<Value, ApiError> {
    match item {
        Value::Object(map) => Ok(Value::Object(merge_map(Object::new(), map, elem)?)),
        other => Ok(other.clone()),
    }
}

/// Merges two lists per the field's strategy (`mergeSliceHandler`).
fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    field: Option<&'static Field>,
) -> Result<Vec<Value>, ApiError> {
    match list_merge_key(field) {
        Some(key) => merge_slice(original, patch, key, type_of(field)),
        None => match fresh(&Value::Array(patch.to_vec()), field)? {
            Value::Array(items) => Ok(items),
            _ => unreachable!("a fresh list is a list"),
        },
    }
}

/// What the elements of some lists are (`sliceElementType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElementKind {
    Map,
    Scalar,
}

fn element_kind(lists: &[&[Value]]) -> Result<ElementKind, ApiError> {
    let mut first: Option<&Value> = None;
    for item in lists.iter().flat_map(|l| l.iter()) {
        match first {
            None if item.is_array() => return Err(list_of_lists()),
            None => first = Some(item),
            Some(prev) if !same_go_type(prev, item) => {
                let printed: Vec<String> = lists.iter().map(|l| gofmt::list(l)).collect();
                return Err(unclassified(format!(
                    "list element types are not identical: [{}]",
                    printed.join(" ")
                )));
            }
            Some(_) => {}
        }
    }
    match first {
        None => Err(unclassified(
            "no elements in any of the given slices".into(),
        )),
        Some(Value::Object(_)) => Ok(ElementKind::Map),
        Some(_) => Ok(ElementKind::Scalar),
    }
}

/// Whether two values decode to the same Go type.
fn same_go_type(a: &Value, b: &Value) -> bool {
    gofmt::type_name(a) == gofmt::type_name(b)
}

/// The identity of a list element: its merge key's value, or the element itself for scalars.
fn identity<'v>(item: &'v Value, merge_key: &str) -> Option<&'v Value> {
    if merge_key.is_empty() {
        Some(item)
    } else {
        item.get(merge_key)
    }
}

/// Where an element sits in `list`, matching by merge key (`index`).
fn position(list: &[Value], item: &Value, merge_key: &str) -> Option<usize> {
    let wanted = identity(item, merge_key);
    list.iter()
        .position(|candidate| identity(candidate, merge_key) == wanted)
}

/// Merges a merge-strategy list (`mergeSlice`); `merge_key` is empty for sets of scalars.
fn merge_slice(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    elem: Type,
) -> Result<Vec<Value>, ApiError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let kind = element_kind(&[&original, patch])?;
    let mut patch = patch.to_vec();
    let merged = if kind == ElementKind::Scalar {
        let mut merged = original.clone();
        for item in &patch {
            if !merged.contains(item) {
                merged.push(item.clone());
            }
        }
        merged
    } else {
        if merge_key.is_empty() {
            return Err(unclassified(
                "cannot merge lists without merge key for type string".into(),
            ));
        }
        (original, patch) = apply_special_elements(original, patch, merge_key, elem)?;
        let mut merged = original.clone();
        for item in &patch {
            let Value::Object(item_map) = item else {
                unreachable!("elements of a list of maps are maps")
            };
            let Some(wanted) = item_map.get(merge_key) else {
                return Err(no_merge_key(item_map, merge_key));
            };
            match merged.iter().position(|m| m.get(merge_key) == Some(wanted)) {
                Some(at) => {
                    let Value::Object(current) = merged[at].take() else {
                        unreachable!("elements of a list of maps are maps")
                    };
                    merged[at] = Value::Object(merge_map(current, item_map, elem)?);
                }
                None => merged.push(fresh_element(item, elem)?),
            }
        }
        merged
    };
    let (in_patch, server_only) = partition(merged, &patch, merge_key)?;
    normalize_element_order(in_patch, server_only, &patch, &original, merge_key, kind)
}

/// Applies the `$patch` elements of a merge list (`mergeSliceWithSpecialElements`): deletions
/// remove matching originals, `replace` makes the remaining patch elements the whole list.
/// Returns the new original and the patch without special elements.
fn apply_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
    elem: Type,
) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Value::Object(map) = &item else {
            unreachable!("elements of a list of maps are maps")
        };
        let Some(directive) = map.get(PATCH) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(wanted) = map.get(merge_key) else {
                    return Err(no_merge_key(map, merge_key));
                };
                original.retain(|o| o.get(merge_key) != Some(wanted));
            }
            // Later elements may still carry directives to prune.
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(unclassified(
                    "merging lists cannot yet be specified in the patch".into(),
                ));
            }
            _ => return Err(bad_patch_type(directive, map)),
        }
    }
    if replace {
        let replacement = plain
            .iter()
            .map(|item| fresh_element(item, elem))
            .collect::<Result<_, _>>()?;
        Ok((replacement, Vec::new()))
    } else {
        Ok((original, plain))
    }
}

/// Splits `merged` into the elements present in `by` and the others, keeping their order
/// (`partitionMapsByPresentInList` / `partitionPrimitivesByPresentInList`).
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
    let mut present = Vec::new();
    let mut absent = Vec::new();
    if !merge_key.is_empty()
        && !merged.is_empty()
        && let Some(at) = by.iter().position(|b| !b.is_object())
    {
        return Err(unclassified(format!("value for key {at} is not a map.")));
    }
    for item in merged {
        if !merge_key.is_empty() {
            let wanted = merge_key_value(&item, merge_key)?;
            if by.iter().any(|b| b.get(merge_key) == Some(wanted)) {
                present.push(item);
            } else {
                absent.push(item);
            }
        } else if by.contains(&item) {
            present.push(item);
        } else {
            absent.push(item);
        }
    }
    Ok((present, absent))
}

/// Orders a merged list (`normalizeElementOrder`): patch elements in `patch_order`, server-only
/// elements in `server_order`, the two interleaved so each keeps its relative order and
/// server-only elements stay before the patch elements that followed them on the server.
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: ElementKind,
) -> Result<Vec<Value>, ApiError> {
    let patch_items = sort_by_order(patch_items, patch_order, merge_key, kind)?;
    let server_only = sort_by_order(server_only, server_order, merge_key, kind)?;

    // `mergeSortedSlice`: a server-only element goes first only when both are on the server
    // and it came first there.
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (position(server_order, l, merge_key), position(server_order, r, merge_key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

/// Stable-sorts `items` by their place in `order` (`normalizeSliceOrder`); `$patch: delete`
/// elements go last.
fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    kind: ElementKind,
) -> Result<Vec<Value>, ApiError> {
    let (mut keep, deleted): (Vec<Value>, Vec<Value>) = if kind == ElementKind::Map {
        for item in items.iter().chain(order) {
            let Value::Object(map) = item else {
                return Err(bad_arg_type("map[string]interface {}", item));
            };
            if !map.contains_key(merge_key) {
                return Err(no_merge_key(map, merge_key));
            }
        }
        items
            .into_iter()
            .partition(|item| item.get(PATCH).and_then(Value::as_str) != Some("delete"))
    } else {
        (items, Vec::new())
    };
    keep.sort_by_key(|item| position(order, item, merge_key).unwrap_or(usize::MAX));
    keep.extend(deleted);
    Ok(keep)
}

/// Applies and removes `$retainKeys` (`applyRetainKeysDirective`): every key the patch sets
/// must be listed, and original keys not listed are cleared.
fn apply_retain_keys(original: &mut Object, patch: &mut Object) -> Result<(), ApiError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(ApiError::bad_request(BAD_RETAIN_KEYS));
    };
    let retained = |key: &str| retain.iter().any(|r| r.as_str() == Some(key));
    for (key, value) in patch.iter() {
        let parallel =
            key.starts_with(DELETE_FROM_PRIMITIVE_LIST) || key.starts_with(SET_ELEMENT_ORDER);
        if !value.is_null() && !parallel && !retained(key) {
            return Err(ApiError::bad_request(BAD_RETAIN_KEYS));
        }
    }
    original.retain(|key, _| retained(key));
    Ok(())
}

/// Applies and removes every `$setElementOrder/<field>` with its list
/// (`mergePatchIntoOriginal`): the list is merged, then ordered as the directive says, with
/// elements only the server has kept near their server neighbours.
fn apply_element_orders(
    original: &mut Object,
    patch: &mut Object,
    ty: Type,
) -> Result<(), ApiError> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let order = patch.remove(&directive).unwrap_or_default();
        let Value::Array(order) = order else {
            return Err(bad_arg_type("[]interface {}", &order));
        };
        let key = directive_field(&directive, SET_ELEMENT_ORDER, BAD_SET_ELEMENT_ORDER)?;
        let original_list = as_list(original.get(key))?;
        let patch_list = as_list(patch.get(key))?;
        let field = field_of(ty, key);
        let merge_key = list_merge_key(field).unwrap_or("");
        validate_order(patch_list.unwrap_or_default(), &order, merge_key)?;

        let merged = match (original_list, patch_list) {
            (None, None) => continue,
            (Some(current), None) => current.to_vec(),
            (None, Some(patch_list)) => merge_list(Vec::new(), patch_list, field)?,
            (Some(current), Some(patch_list)) => merge_list(current.to_vec(), patch_list, field)?,
        };
        let server_order = original_list.unwrap_or_default().to_vec();
        let kind = element_kind(&[&server_order, patch_list.unwrap_or_default()])?;
        let (in_order, server_only) = partition(merged, &order, merge_key)?;
        let ordered = normalize_element_order(
            in_order,
            server_only,
            &order,
            &server_order,
            merge_key,
            kind,
        )?;
        original.insert(key.to_string(), Value::Array(ordered));
        patch.remove(key);
    }
    Ok(())
}

/// A present value that must be a list.
fn as_list(value: Option<&Value>) -> Result<Option<&[Value]>, ApiError> {
    match value {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(other) => Err(bad_arg_type("[]interface {}", other)),
    }
}

/// Checks that the patch list's elements appear in the `$setElementOrder` list, in the same
/// relative order (`validatePatchWithSetOrderList`); deletions are ignored.
fn validate_order(patch_list: &[Value], order: &[Value], merge_key: &str) -> Result<(), ApiError> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::with_capacity(patch_list.len());
    for item in patch_list {
        if merge_key.is_empty() {
            kept.push(item);
            continue;
        }
        let Value::Object(map) = item else {
            return Err(bad_arg_type("map[string]interface {}", item));
        };
        if map.get(PATCH).and_then(Value::as_str) != Some("delete") {
            kept.push(item);
        }
    }
    let (mut at_patch, mut at_order) = (0, 0);
    while at_patch < kept.len() && at_order < order.len() {
        if kept[at_patch].get(PATCH).is_some() {
            at_patch += 1;
            continue;
        }
        if merge_key_equal(kept[at_patch], &order[at_order], merge_key)? {
            at_patch += 1;
        }
        at_order += 1;
    }
    if at_patch < kept.len() {
        return Err(unclassified(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            gofmt::list(patch_list),
            gofmt::list(order)
        )));
    }
    Ok(())
}

/// Whether two elements share a merge key value (`mergeKeyValueEqual`).
fn merge_key_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool, ApiError> {
    if merge_key.is_empty() {
        return Ok(left == right);
    }
    Ok(merge_key_value(left, merge_key)? == merge_key_value(right, merge_key)?)
}

/// The merge key value of an element that must be a map holding it.
fn merge_key_value<'v>(item: &'v Value, merge_key: &str) -> Result<&'v Value, ApiError> {
    let Value::Object(map) = item else {
        return Err(bad_arg_type("map[string]interface {}", item));
    };
    map.get(merge_key)
        .ok_or_else(|| no_merge_key(map, merge_key))
}
