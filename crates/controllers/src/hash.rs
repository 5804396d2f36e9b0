//! The short, stable hashes controllers name their children by (upstream's
//! `controller.ComputeHash` and `history.HashControllerRevision`): FNV-32a over a deterministic
//! dump, then over the collision count when there is one, printed in decimal with each digit
//! mapped into an alphabet without vowels (apimachinery's `rand.SafeEncodeString`), so that no
//! hash spells a word and every hash is a valid label value.
//!
//! The dump is JSON (k8s-openapi serializes fields in a fixed order and maps sorted), so hashes
//! are stable but not bit-for-bit upstream's, which hashes Go's `%#v`.

use serde::Serialize;

/// The alphabet of [`safe_encode`] (apimachinery's `alphanums`).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a, 32 bits.
fn fnv32a(bytes: impl IntoIterator<Item = u8>) -> u32 {
    bytes.into_iter().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// Maps each byte of `s` into [`SAFE_ALPHABET`].
fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

/// The hash of `object` and `collision_count` (the count as 8 little-endian bytes, when set).
pub fn compute_hash(object: &impl Serialize, collision_count: Option<i32>) -> String {
    let dump = serde_json::to_vec(object).expect("API objects always serialize");
    let collision = collision_count
        .map(|count| u64::from(count as u32).to_le_bytes())
        .into_iter()
        .flatten();
    safe_encode(&fnv32a(dump.into_iter().chain(collision)).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hashes_are_stable_safe_and_change_with_the_collision_count() {
        let object = json!({"spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        let hash = compute_hash(&object, None);
        assert_eq!(hash, compute_hash(&object, None));
        assert!(hash.len() <= 10 && hash.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
        assert_ne!(hash, compute_hash(&object, Some(1)));
        assert_ne!(
            compute_hash(&object, Some(1)),
            compute_hash(&object, Some(2))
        );
        assert_eq!(fnv32a(*b""), 0x811c_9dc5);
        assert_eq!(fnv32a(*b"a"), 0xe40c_292c);
    }
}
