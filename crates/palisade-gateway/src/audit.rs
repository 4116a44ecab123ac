//! Where gate decisions go: one JSON line per decision, allowed or not, with
//! the policy version and reason codes. Always to the log (target
//! `palisade::audit`); to the audit store when `policy.audit_url` is set.
//!
//! Records hold scores, rule names and counts only — never the text that was
//! judged — so the audit log can be kept and shipped without becoming a
//! second copy of users' prompts or of the secrets the gates caught.

use palisade_policy::AuditRecord;

/// The destination of audit records; cheap to clone into each request.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditSink {}

impl AuditSink {
    /// Records one gate decision.
    pub(crate) fn write(&self, record: &AuditRecord) {
        let line = match record.to_json_line() {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(error = %e, "audit record did not serialize");
                return;
            }
        };
        tracing::info!(target: "palisade::audit", record = %line, "gate decision");
    }
}
