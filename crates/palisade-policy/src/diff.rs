//! [`diff`]: what changed between two policy documents, one human-readable line per change,
//! for review before a rollout and for the reload log line.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::document::PolicyDocument;

/// The kind of a [`Change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Only in the new document.
    Added,
    /// Only in the old document.
    Removed,
    /// In both, with different values.
    Modified,
}

/// One change. Displays as `tiers.standard.input.injection.threshold: 0.90 → 0.80`,
/// `tiers.high: added`, `links.allowed_domains: removed example.com`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Key path, e.g. `tiers.standard.input.injection.threshold` or `assign[1]`.
    pub path: String,
    /// Added, removed or modified.
    pub kind: ChangeKind,
    /// The old value, rendered; `None` when added or too long to be useful on one line.
    pub old: Option<String>,
    /// The new value, rendered; `None` when removed or too long to be useful on one line.
    pub new: Option<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (word, value) = match self.kind {
            ChangeKind::Added => ("added", &self.new),
            ChangeKind::Removed => ("removed", &self.old),
            ChangeKind::Modified => {
                let old = self.old.as_deref().unwrap_or("…");
                let new = self.new.as_deref().unwrap_or("…");
                return write!(f, "{}: {old} → {new}", self.path);
            }
        };
        match value {
            Some(v) => write!(f, "{}: {word} {v}", self.path),
            None => write!(f, "{}: {word}", self.path),
        }
    }
}

/// The changes from `old` to `new`, compared in canonical form (so reordered domains are
/// not a change). Order: keys sorted within each table, assignments by position (inserting
/// an entry shows the entries after it as modified: their position is their precedence),
/// domains as a set (removed, then added).
pub fn diff(old: &PolicyDocument, new: &PolicyDocument) -> Vec<Change> {
    // Cannot fail for these types (every map key is a string); a Null would show up as a
    // whole-document change rather than hide one.
    let to_value = |d: &PolicyDocument| serde_json::to_value(d.canonical()).unwrap_or(Value::Null);
    let mut out = Vec::new();
    walk(&mut String::new(), &to_value(old), &to_value(new), &mut out);
    out
}

fn walk(path: &mut String, old: &Value, new: &Value, out: &mut Vec<Change>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            // serde_json's map is sorted, so merging the two key lists is deterministic.
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                walk_pair(path, a.get(k.as_str()), b.get(k.as_str()), out);
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(b)) if all_strings(a) && all_strings(b) => {
            for v in a.iter().filter(|v| !b.contains(v)) {
                out.push(change(path, ChangeKind::Removed, Some(v), None));
            }
            for v in b.iter().filter(|v| !a.contains(v)) {
                out.push(change(path, ChangeKind::Added, None, Some(v)));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk_pair(path, a.get(i), b.get(i), out);
                path.truncate(len);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(change(path, ChangeKind::Modified, Some(a), Some(b))),
    }
}

fn walk_pair(path: &mut String, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Change>) {
    match (old, new) {
        (Some(a), Some(b)) => walk(path, a, b, out),
        (Some(a), None) => out.push(change(path, ChangeKind::Removed, Some(a), None)),
        (None, Some(b)) => out.push(change(path, ChangeKind::Added, None, Some(b))),
        (None, None) => {}
    }
}

fn all_strings(v: &[Value]) -> bool {
    v.iter().all(Value::is_string)
}

/// Values longer than this are left out of a change line (an added tier is a whole table).
const MAX_RENDERED: usize = 80;

fn change(path: &str, kind: ChangeKind, old: Option<&Value>, new: Option<&Value>) -> Change {
    let show = |v: Option<&Value>| {
        v.map(|v| render(v, true))
            .filter(|s| s.chars().count() <= MAX_RENDERED)
    };
    Change {
        path: path.to_owned(),
        kind,
        old: show(old),
        new: show(new),
    }
}

/// Renders a value in TOML-like syntax; strings are bare at the top level (`flag → block`)
/// and quoted inside tables.
fn render(v: &Value, top: bool) -> String {
    match v {
        Value::String(s) if top => s.clone(),
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), render_number),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_owned(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(|v| render(v, false)).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k} = {}", render(v, false)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
    }
}

/// At least two decimals, as thresholds are usually written (`0.90`), but never fewer
/// digits than the value has (`0.9693`).
fn render_number(f: f64) -> String {
    let s = f.to_string();
    match s.split_once('.') {
        Some((_, frac)) if frac.len() >= 2 => s,
        Some((_, frac)) => format!("{s}{}", "0".repeat(2 - frac.len())),
        None if f.is_finite() => format!("{s}.00"),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> PolicyDocument {
        PolicyDocument::from_toml(text).unwrap()
    }

    fn lines(old: &str, new: &str) -> Vec<String> {
        diff(&doc(old), &doc(new))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const BASE: &str = r#"
        label = "a"
        default_tier = "standard"
        [tiers.standard.input]
        injection = { threshold = 0.90, action = "block" }
        [links]
        allowed_domains = ["example.com", "*.docs.example.com"]
        [[assign]]
        tenant = "acme"
        tier = "standard"
    "#;

    #[test]
    fn identical_documents_have_no_changes() {
        assert!(lines(BASE, BASE).is_empty());
    }

    #[test]
    fn threshold_action_label_and_domains() {
        let new = BASE
            .replace("0.90, action = \"block\"", "0.8, action = \"flag\"")
            .replace("label = \"a\"", "label = \"b\"")
            .replace("\"example.com\", ", "\"Other.example.net\", ");
        assert_eq!(
            lines(BASE, &new),
            [
                "label: a → b",
                "links.allowed_domains: removed example.com",
                "links.allowed_domains: added other.example.net",
                "tiers.standard.input.injection.action: block → flag",
                "tiers.standard.input.injection.threshold: 0.90 → 0.80",
            ]
        );
    }

    #[test]
    fn tiers_and_assignments_added_and_removed() {
        let new = format!(
            "{BASE}
            [tiers.high.input]
            injection = {{ threshold = 0.5, action = \"block\" }}
            pii = {{ action = \"redact\" }}
            [tiers.high.output]
            canaries = true
            [[assign]]
            model = \"gpt-4o*\"
            tier = \"high\"
            "
        );
        assert_eq!(
            lines(BASE, &new),
            [
                "assign[1]: added { model = \"gpt-4o*\", tier = \"high\" }",
                "tiers.high: added",
            ]
        );
        assert_eq!(
            lines(&new, BASE),
            [
                "assign[1]: removed { model = \"gpt-4o*\", tier = \"high\" }",
                "tiers.high: removed",
            ]
        );
        let moved = BASE.replace("tenant = \"acme\"", "tenant = \"acme-*\"");
        assert_eq!(lines(BASE, &moved), ["assign[0].tenant: acme → acme-*"]);
    }

    #[test]
    fn rules_added_and_removed_inside_a_gate() {
        let new = BASE.replace(
            "[links]",
            "secrets = { action = \"shadow\", shadow_action = \"redact\" }\n[links]",
        );
        assert_eq!(
            lines(BASE, &new),
            ["tiers.standard.input.secrets: added { action = \"shadow\", shadow_action = \"redact\" }"]
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(render_number(0.9), "0.90");
        assert_eq!(render_number(0.9693), "0.9693");
        assert_eq!(render_number(1.0), "1.00");
        assert_eq!(render_number(0.0), "0.00");
    }
}
