//! The local copy of monitored tables. A `monitor` reply and every `update` notification carry
//! `<table-updates>` (RFC 7047 4.1.6): `{table: {uuid: {"old": row?, "new": row?}}}`; a row
//! with `new` is inserted or modified (`new` holds every monitored column's value now), one with
//! only `old` is deleted. [`TableCache::apply`] keeps the copy in step.
//!
//! Bound: at most `max_rows` rows in all; an update that would pass it is refused (the server's
//! database is outside input too).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::OvsdbError;

/// A row: column name to value (RFC 7047 notation, see [`super::datum`]).
pub type Row = Map<String, Value>;

/// Default bound on cached rows (a node's bridge has ports in the hundreds or thousands).
pub const DEFAULT_MAX_ROWS: usize = 200_000;

/// Tables by name, rows by uuid.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableCache {
    tables: BTreeMap<String, BTreeMap<String, Row>>,
    rows: usize,
    max_rows: usize,
}

impl TableCache {
    pub fn new(max_rows: usize) -> TableCache {
        TableCache { tables: BTreeMap::new(), rows: 0, max_rows }
    }

    /// The rows of `table` by uuid (empty when none were seen).
    pub fn table(&self, table: &str) -> impl Iterator<Item = (&str, &Row)> {
        self.tables.get(table).into_iter().flat_map(|t| t.iter().map(|(u, r)| (u.as_str(), r)))
    }

    /// One row.
    pub fn row(&self, table: &str, uuid: &str) -> Option<&Row> {
        self.tables.get(table)?.get(uuid)
    }

    /// Rows held, all tables.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Applies a `<table-updates>` object. Checked before anything changes, so a malformed or
    /// oversized update leaves the cache as it was.
    pub fn apply(&mut self, updates: &Value) -> Result<(), OvsdbError> {
        let tables = updates.as_object().ok_or_else(|| bad("table-updates is not an object"))?;
        let mut growth: usize = 0;
        for (name, rows) in tables {
            let rows = rows.as_object().ok_or_else(|| bad("table-update is not an object"))?;
            for (uuid, change) in rows {
                let change = change.as_object().ok_or_else(|| bad("row-update is not an object"))?;
                match change.get("new") {
                    Some(Value::Object(_)) if self.row(name, uuid).is_none() => growth += 1,
                    Some(Value::Object(_)) | None => {}
                    Some(_) => return Err(bad("row-update \"new\" is not an object")),
                }
            }
        }
        if self.rows + growth > self.max_rows {
            return Err(OvsdbError::CacheFull { limit: self.max_rows });
        }
        for (name, rows) in tables {
            let table = self.tables.entry(name.clone()).or_default();
            for (uuid, change) in rows.as_object().into_iter().flatten() {
                match change.get("new").and_then(Value::as_object) {
                    Some(new) => {
                        let row = table.entry(uuid.clone()).or_insert_with(|| {
                            self.rows += 1;
                            Row::new()
                        });
                        for (col, v) in new {
                            row.insert(col.clone(), v.clone());
                        }
                    }
                    None => {
                        if table.remove(uuid).is_some() {
                            self.rows -= 1;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn bad(what: &str) -> OvsdbError {
    OvsdbError::Protocol(what.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn insert_modify_delete() {
        let mut c = TableCache::new(10);
        c.apply(&json!({"Interface": {"u1": {"new": {"name": "p1", "ofport": ["set", []]}}}})).unwrap();
        assert_eq!(c.len(), 1);
        c.apply(&json!({"Interface": {"u1": {"old": {"ofport": ["set", []]}, "new": {"name": "p1", "ofport": 3}}}}))
            .unwrap();
        assert_eq!(c.row("Interface", "u1").unwrap()["ofport"], json!(3));
        assert_eq!(c.len(), 1);
        c.apply(&json!({"Interface": {"u1": {"old": {"name": "p1", "ofport": 3}}}})).unwrap();
        assert!(c.is_empty());
        assert_eq!(c.table("Interface").count(), 0);
        // Deleting what is not there is harmless.
        c.apply(&json!({"Interface": {"u9": {"old": {}}}})).unwrap();
    }

    #[test]
    fn malformed_or_oversized_updates_change_nothing() {
        let mut c = TableCache::new(2);
        c.apply(&json!({"Port": {"a": {"new": {"name": "a"}}}})).unwrap();
        let before = c.clone();
        assert!(c.apply(&json!([1])).is_err());
        assert!(c.apply(&json!({"Port": {"b": {"new": 5}}})).is_err());
        assert!(c.apply(&json!({"Port": {"b": {"new": {"name": "b"}}, "a": 3}})).is_err());
        let e = c.apply(&json!({"Port": {"b": {"new": {}}, "c": {"new": {}}}})).unwrap_err();
        assert!(matches!(e, OvsdbError::CacheFull { limit: 2 }));
        assert_eq!(c, before);
    }
}
