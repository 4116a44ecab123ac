//! Where gate decisions go: one JSON line per decision, allowed or not, with
//! the policy version and reason codes. Always to the log (target
//! `palisade::audit`); to the audit store (`policy.audit_url`: the ledger's
//! append-only `audit` table, SQLite or PostgreSQL) when configured.
//!
//! Records hold scores, rule names and counts only — never the text that was
//! judged — so the audit log can be kept and shipped without becoming a
//! second copy of users' prompts or of the secrets the gates caught.

use std::sync::{Arc, OnceLock};

use palisade_ledger::{AuditEntry, Ledger};
use palisade_policy::AuditRecord;

/// The destination of audit records; cheap to clone into each request.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditSink {
    /// The store, once opened by `Gateway::start`.
    store: Arc<OnceLock<Arc<Ledger>>>,
    /// Shadow-vs-active disagreements seen in the records written here.
    shadow: Arc<super::shadow_log::ShadowLog>,
}

impl AuditSink {
    /// Sends records to `store` from now on.
    pub(crate) fn attach(&self, store: Arc<Ledger>) {
        let _ = self.store.set(store);
    }

    /// The audit store, once attached (`/admin/audit` reads it).
    pub(crate) fn store(&self) -> Option<&Arc<Ledger>> {
        self.store.get()
    }

    /// The shadow divergence counters (`/admin/policy/shadow` reads them).
    pub(crate) fn shadow_log(&self) -> &super::shadow_log::ShadowLog {
        &self.shadow
    }

    /// Records one gate decision. Never waits: the store's writer commits it
    /// with its next batch; a failure is logged and counted, never dropped
    /// silently.
    pub(crate) fn write(&self, record: &AuditRecord) {
        self.shadow.observe(record);
        let line = match record.to_json_line() {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(error = %e, "audit record did not serialize");
                return;
            }
        };
        tracing::info!(target: "palisade::audit", record = %line, "gate decision");
        let Some(store) = self.store.get() else {
            return;
        };
        let entry = AuditEntry {
            ts_ms: record.ts_ms,
            request_id: record.request_id.clone(),
            tenant: record.tenant.clone(),
            route: record.route.clone(),
            model: record.model.clone(),
            gate: record.gate.as_str().to_owned(),
            action: record.action.as_str().to_owned(),
            policy_version: record.policy_version.to_string(),
            json: line,
        };
        if let Err(e) = store.audit_nowait(entry) {
            metrics::counter!(crate::metrics::AUDIT_ERRORS).increment(1);
            tracing::error!(error = %e, request_id = %record.request_id, "audit write failed");
        }
    }

    /// Records one decision made outside the policy's gates (a key budget,
    /// a routing decision) as a JSON record: the common fields (`ts_ms`,
    /// `request_id`, `gate`, `action`, `reason_code`, `policy_version`,
    /// `tenant`, `key`, `route`, `model`) plus the caller's `details`.
    /// Names and codes only, like every audit record.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_decision(
        &self,
        policy_version: String,
        request_id: &str,
        tenant: &str,
        key: &str,
        route: &str,
        model: &str,
        (gate, action, reason_code): (&str, &str, &str),
        details: serde_json::Map<String, serde_json::Value>,
    ) {
        let ts_ms = crate::clock::GatewayClock::system().unix_ms();
        let mut record = serde_json::json!({
            "ts_ms": ts_ms,
            "request_id": request_id,
            "gate": gate,
            "action": action,
            "reason_code": reason_code,
            "policy_version": policy_version,
            "tenant": tenant,
            "key": key,
            "route": route,
            "model": model,
        });
        if let Some(fields) = record.as_object_mut() {
            fields.extend(details);
        }
        self.write_admin(AuditEntry {
            ts_ms: u64::try_from(ts_ms).unwrap_or(0),
            request_id: request_id.to_owned(),
            tenant: tenant.to_owned(),
            route: route.to_owned(),
            model: model.to_owned(),
            gate: gate.to_owned(),
            action: action.to_owned(),
            policy_version,
            json: record.to_string(),
        });
    }

    /// Records one admin action (a key change): to the log, and to the
    /// store without waiting, like a gate decision. The record must hold no
    /// secret: callers pass ids, names and reason codes only.
    pub(crate) fn write_admin(&self, entry: AuditEntry) {
        tracing::info!(target: "palisade::audit", record = %entry.json, "admin action");
        let Some(store) = self.store.get() else {
            return;
        };
        let request_id = entry.request_id.clone();
        if let Err(e) = store.audit_nowait(entry) {
            metrics::counter!(crate::metrics::AUDIT_ERRORS).increment(1);
            tracing::error!(error = %e, request_id = %request_id, "audit write failed");
        }
    }
}
