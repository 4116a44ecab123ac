//! The audit log: one append-only row per gate decision, in the same
//! database as the ledger and written by the same writer (same queue, same
//! batches, same transaction in SQLite), so it inherits the ledger's
//! durability: [`Ledger::audit`](crate::Ledger::audit) returns once the row is
//! committed, and a `kill -9` loses no row whose `audit` returned.
//!
//! The record itself is opaque JSON text (the gateway serializes
//! `palisade_policy::AuditRecord` into [`AuditEntry::json`]); this crate
//! copies out only the fields worth an index, so it needs no dependency on
//! the policy crate. Export and tail give the stored text back byte for
//! byte, one record per line.
//!
//! Append-only: there is no update or delete API, and the database refuses
//! `UPDATE` on the table (a trigger), so a stored decision cannot be
//! rewritten in place. `DELETE` is left possible on purpose, for retention
//! (pruning old rows by `ts_ms`); `seq` is never reused after it (SQLite
//! `AUTOINCREMENT`, a PostgreSQL sequence).
//!
//! `seq` is assigned by the store, in queue order within one writer, so two
//! rows are never the same row even when they carry the same request id and
//! gate (a request's context gate may decide once per document). With
//! several PostgreSQL writers, `seq` follows the order in which each
//! writer reserved its numbers, which is close to but not exactly commit
//! order: an export running while replicas write may pass over a row
//! committed just after it read that part of the table.

use std::future::Future;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::LedgerError;

/// Rows read per query by `audit_export`.
pub(crate) const AUDIT_PAGE: i64 = 1000;

/// One gate decision to store.
///
/// The indexed fields are copies of fields inside `json`, taken by the
/// caller when it serializes the record; they are what `audit_tail` filters
/// and `audit_export` orders by, never what is exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When the decision was taken, in Unix milliseconds (the caller's
    /// clock). At most `i64::MAX`.
    pub ts_ms: u64,
    /// The gateway-minted request id. Not unique here: a request has one
    /// decision per gate, and sometimes several at one gate.
    pub request_id: String,
    /// The tenant the request was for.
    pub tenant: String,
    /// The route the request took.
    pub route: String,
    /// The upstream model.
    pub model: String,
    /// The gate (`input`, `context`, `output`).
    pub gate: String,
    /// The enforced action (`allow`, `flag`, `redact`, `block`).
    pub action: String,
    /// The live policy's version (`sha256:…`).
    pub policy_version: String,
    /// The whole record as one line of JSON (an object, no newline): what
    /// `audit_tail` and `audit_export` give back.
    pub json: String,
}

/// Which rows `audit_tail` returns: each field set narrows to rows with
/// exactly that value; the default matches every row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// Only this tenant's decisions.
    pub tenant: Option<String>,
    /// Only decisions at this gate.
    pub gate: Option<String>,
    /// Only decisions enforcing this action.
    pub action: Option<String>,
    /// Only this request's decisions.
    pub request_id: Option<String>,
    /// Only decisions under this policy version.
    pub policy_version: Option<String>,
}

impl AuditFilter {
    /// `(column, value)` of each field that is set, in a fixed order.
    fn conditions(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("tenant", &self.tenant),
            ("gate", &self.gate),
            ("action", &self.action),
            ("request_id", &self.request_id),
            ("policy_version", &self.policy_version),
        ]
        .into_iter()
        .filter_map(|(column, value)| value.as_deref().map(|v| (column, v)))
    }
}

/// An entry checked so the writer cannot fail on a value: its timestamp
/// converted to what both databases store (`BIGINT` is signed), the rest
/// as given.
#[derive(Debug, Clone)]
pub(crate) struct AuditRow {
    pub ts_ms: i64,
    pub entry: AuditEntry,
}

impl AuditRow {
    pub(crate) fn from_entry(e: AuditEntry) -> Result<Self, LedgerError> {
        let invalid = |field, reason| LedgerError::InvalidEntry { field, reason };
        let ts_ms = i64::try_from(e.ts_ms)
            .map_err(|_| invalid("ts_ms", "larger than a signed 64-bit integer"))?;
        if e.request_id.is_empty() {
            return Err(invalid("request_id", "empty"));
        }
        // A raw line break would split the record across two lines of the
        // export (JSON escapes them inside strings, so a valid single-line
        // record never has one), and a non-object would not be a record.
        let one_object = !e.json.contains(['\n', '\r'])
            && e.json.trim_start().starts_with('{')
            && serde_json::from_str::<serde::de::IgnoredAny>(&e.json).is_ok();
        if !one_object {
            return Err(invalid("json", "not a JSON object on one line"));
        }
        Ok(Self { ts_ms, entry: e })
    }
}

/// The query of `audit_tail`: the newest `n` matching records, newest first
/// (the caller reverses them), and the values to bind in order.
/// `placeholder(i)` writes the i-th (1-based) parameter in the store's
/// dialect. `n` is an integer, so it is written into the text.
pub(crate) fn tail_query(
    filter: &AuditFilter,
    n: usize,
    placeholder: fn(usize) -> String,
) -> (String, Vec<&str>) {
    let mut sql = String::from("SELECT record FROM audit");
    let mut values = Vec::new();
    for (i, (column, value)) in filter.conditions().enumerate() {
        let joiner = if i == 0 { " WHERE " } else { " AND " };
        sql.push_str(&format!("{joiner}{column} = {}", placeholder(i + 1)));
        values.push(value);
    }
    // Beyond i64::MAX rows there is nothing more to return anyway.
    let limit = i64::try_from(n).unwrap_or(i64::MAX);
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT {limit}"));
    (sql, values)
}

/// Writes every record of the pages `page(after)` returns (records with
/// `seq > after`, in `seq` order, `(seq, json)`) as one line each, until an
/// empty page; returns how many. Both stores' exports are this loop around
/// their own page query.
pub(crate) async fn export_pages<W, F, Fut>(out: &mut W, mut page: F) -> Result<u64, LedgerError>
where
    W: Write + Send + ?Sized,
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = Result<Vec<(i64, String)>, LedgerError>>,
{
    let mut after = 0_i64;
    let mut count = 0_u64;
    loop {
        let rows = page(after).await?;
        let Some(last) = rows.last().map(|(seq, _)| *seq) else {
            return Ok(count);
        };
        for (_, json) in &rows {
            out.write_all(json.as_bytes()).map_err(LedgerError::Io)?;
            out.write_all(b"\n").map_err(LedgerError::Io)?;
            count += 1;
        }
        after = last;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> AuditEntry {
        AuditEntry {
            ts_ms: 1,
            request_id: "r".into(),
            tenant: "t".into(),
            route: "chat".into(),
            model: "m".into(),
            gate: "input".into(),
            action: "allow".into(),
            policy_version: "sha256:0000000000000000".into(),
            json: json.into(),
        }
    }

    #[test]
    fn only_single_line_json_objects_are_accepted() {
        let check = |json: &str, ok: bool| {
            let got = AuditRow::from_entry(entry(json));
            assert_eq!(got.is_ok(), ok, "{json:?}: {got:?}");
        };
        check(r#"{"a":1}"#, true);
        check(r#" {"a":"line\nbreak, escaped"}"#, true);
        check("{\"a\":1}\n", false);
        check("{\"a\":\n1}", false);
        check("{\"a\":1}\r", false);
        check("[1, 2]", false);
        check("\"text\"", false);
        check("{\"a\":1", false);
        check("{\"a\":1} {}", false);
        check("", false);
    }

    #[test]
    fn out_of_range_and_empty_fields_are_named() {
        let mut e = entry("{}");
        e.ts_ms = u64::MAX;
        assert!(matches!(
            AuditRow::from_entry(e),
            Err(LedgerError::InvalidEntry { field: "ts_ms", .. })
        ));
        let mut e = entry("{}");
        e.request_id.clear();
        assert!(matches!(
            AuditRow::from_entry(e),
            Err(LedgerError::InvalidEntry {
                field: "request_id",
                ..
            })
        ));
    }

    #[test]
    fn tail_queries_bind_only_the_set_filters() {
        let dollar = |i| format!("${i}");
        let all = AuditFilter::default();
        let (sql, values) = tail_query(&all, 20, dollar);
        assert_eq!(sql, "SELECT record FROM audit ORDER BY seq DESC LIMIT 20");
        assert!(values.is_empty());
        let filter = AuditFilter {
            tenant: Some("acme".into()),
            action: Some("block".into()),
            ..AuditFilter::default()
        };
        let (sql, values) = tail_query(&filter, usize::MAX, |i| format!("?{i}"));
        assert_eq!(
            sql,
            "SELECT record FROM audit WHERE tenant = ?1 AND action = ?2 \
             ORDER BY seq DESC LIMIT 9223372036854775807"
        );
        assert_eq!(values, ["acme", "block"]);
    }
}
