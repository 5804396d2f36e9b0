//! JSON values printed the way Go prints the `interface{}` trees upstream's patch errors
//! embed (`fmt` verbs `%v` and `%s`, `reflect.TypeOf`), so messages match byte for byte.

use serde_json::{Number, Value};

/// Go's `%v` of a decoded JSON value: `map[a:1 b:[x y]]`, `<nil>`, bare strings.
pub fn v(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => s.clone(),
        Value::Array(items) => list(items),
        Value::Object(map) => {
            // Go prints map keys sorted.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, val)| format!("{k}:{}", v(val)))
                .collect();
            format!("map[{}]", inner.join(" "))
        }
    }
}

/// Go's `%v` of a `[]interface{}`.
pub fn list(items: &[Value]) -> String {
    format!("[{}]", items.iter().map(v).collect::<Vec<_>>().join(" "))
}

/// Go's `%s` of a decoded JSON value: strings bare, anything else flagged as a bad verb.
pub fn s(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "%!s(<nil>)".into(),
        Value::Bool(_) | Value::Number(_) => format!("%!s({}={})", type_name(value), v(value)),
        // Containers print their elements with `%s` too.
        Value::Array(items) => format!("[{}]", items.iter().map(s).collect::<Vec<_>>().join(" ")),
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, val)| format!("{k}:{}", s(val)))
                .collect();
            format!("map[{}]", inner.join(" "))
        }
    }
}

/// `reflect.TypeOf(x).String()` for a value decoded by the apiserver (integers stay `int64`).
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "%!s(<nil>)",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Integers as digits; floats as Go's shortest `%v` (`%g` with exponents below 1e-4 and from
/// 1e21 on).
fn number(n: &Number) -> String {
    let Some(f) = n.as_f64().filter(|_| n.is_f64()) else {
        return n.to_string();
    };
    let magnitude = f.abs();
    if magnitude != 0.0 && !(1e-4..1e21).contains(&magnitude) {
        // Rust writes `1e21` / `1.5e-5`; Go writes `1e+21` / `1.5e-05`.
        let formatted = format!("{f:e}");
        let (mantissa, exponent) = formatted.split_once('e').unwrap_or((&formatted, "0"));
        let (sign, digits) = exponent
            .strip_prefix('-')
            .map_or(("+", exponent), |d| ("-", d));
        format!("{mantissa}e{sign}{digits:0>2}")
    } else {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prints_like_go() {
        assert_eq!(
            v(&json!({"b": [1, "x"], "a": null})),
            "map[a:<nil> b:[1 x]]"
        );
        assert_eq!(v(&json!(1.5)), "1.5");
        assert_eq!(v(&json!(1e21)), "1e+21");
        assert_eq!(v(&json!(0.00001)), "1e-05");
        assert_eq!(s(&json!(5)), "%!s(int64=5)");
        assert_eq!(s(&json!("merge")), "merge");
        assert_eq!(type_name(&json!([])), "[]interface {}");
    }
}
