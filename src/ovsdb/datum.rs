//! Reading and writing RFC 7047 values (5.1 "Notation"): an atom is a JSON string, number or
//! boolean, or `["uuid", "..."]`; a set with one element may be written as the element alone,
//! otherwise `["set", [...]]`; a map is `["map", [[k, v], ...]]`. Readers here never panic and
//! answer `None` (or an empty list) for anything of another shape.

use serde_json::{json, Value};

/// The elements of a set column (a lone atom is a set of one; `["set", []]` is empty).
pub fn set_elems(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) if a.len() == 2 && a[0] == "set" => match &a[1] {
            Value::Array(items) => items.iter().collect(),
            _ => Vec::new(),
        },
        Value::Array(a) if a.len() == 2 && (a[0] == "uuid" || a[0] == "named-uuid") => vec![v],
        Value::Array(_) | Value::Null | Value::Object(_) => Vec::new(),
        atom => vec![atom],
    }
}

/// The uuid of a `["uuid", "..."]` atom.
pub fn uuid(v: &Value) -> Option<&str> {
    match v {
        Value::Array(a) if a.len() == 2 && a[0] == "uuid" => a[1].as_str(),
        _ => None,
    }
}

/// The uuids of a set-of-uuid column (`Bridge.ports`, `Port.interfaces`).
pub fn uuids(v: &Value) -> Vec<&str> {
    set_elems(v).into_iter().filter_map(uuid).collect()
}

/// A string column, or an optional string column (`["set", []]` is `None`).
pub fn string(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        _ => set_elems(v).first().and_then(|e| e.as_str()),
    }
}

/// The strings of a set-of-string column.
pub fn strings(v: &Value) -> Vec<&str> {
    set_elems(v).into_iter().filter_map(Value::as_str).collect()
}

/// An integer column, or an optional one (`ofport`: `["set", []]` until assigned).
pub fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        _ => set_elems(v).first().and_then(|e| e.as_i64()),
    }
}

/// The pairs of a string-to-string map column (`external_ids`); pairs of other shapes are left out.
pub fn string_map(v: &Value) -> Vec<(&str, &str)> {
    match v {
        Value::Array(a) if a.len() == 2 && a[0] == "map" => a[1]
            .as_array()
            .map(|pairs| {
                pairs
                    .iter()
                    .filter_map(|p| match p.as_array().map(Vec::as_slice) {
                        Some([k, v]) => Some((k.as_str()?, v.as_str()?)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// `["set", [...]]` of strings, as written in an operation.
pub fn string_set<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
    json!(["set", items.into_iter().collect::<Vec<_>>()])
}

/// `["map", [[k, v], ...]]` of strings, as written in an operation.
pub fn map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    json!(["map", pairs.into_iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>()])
}

/// `["named-uuid", name]`: a row inserted earlier in the same transaction.
pub fn named_uuid(name: &str) -> Value {
    json!(["named-uuid", name])
}

/// `["uuid", u]`.
pub fn uuid_ref(u: &str) -> Value {
    json!(["uuid", u])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_shape_and_nothing_else() {
        let one = json!(["uuid", "a"]);
        let two = json!(["set", [["uuid", "a"], ["uuid", "b"]]]);
        assert_eq!(uuids(&one), vec!["a"]);
        assert_eq!(uuids(&two), vec!["a", "b"]);
        assert_eq!(uuids(&json!(["set", []])), Vec::<&str>::new());
        assert_eq!(integer(&json!(5)), Some(5));
        assert_eq!(integer(&json!(["set", [7]])), Some(7));
        assert_eq!(integer(&json!(["set", []])), None);
        assert_eq!(string(&json!("x")), Some("x"));
        assert_eq!(string(&json!(["set", []])), None);
        assert_eq!(strings(&json!(["set", ["OpenFlow10", "OpenFlow13"]])), vec!["OpenFlow10", "OpenFlow13"]);
        assert_eq!(strings(&json!("OpenFlow13")), vec!["OpenFlow13"]);
        assert_eq!(string_map(&json!(["map", [["a", "1"], ["b", 2], ["c"]]])), vec![("a", "1")]);
        assert!(string_map(&json!({"a": "1"})).is_empty());
        assert!(set_elems(&json!({"x": 1})).is_empty());
        assert_eq!(map([("k", "v")]), json!(["map", [["k", "v"]]]));
    }
}
