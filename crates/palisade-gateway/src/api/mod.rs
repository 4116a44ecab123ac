//! The gateway's own endpoints, beside the proxied ones: the guard APIs,
//! the tool-confirmation APIs, `/v1/models`, the admin endpoints and the
//! probes.
//!
//! Each handler starts with the same front as the proxy
//! ([`crate::pipeline::front`]: authenticate, rate gate, read) and calls the
//! gates; none of them forwards to an upstream except `/v1/models`.

pub(crate) mod admin;
pub(crate) mod admin_read;
pub(crate) mod admin_views;
pub(crate) mod guard;
pub(crate) mod key_budgets;
pub(crate) mod keys;
pub(crate) mod models;
pub(crate) mod probes;
pub(crate) mod responses;
pub(crate) mod tools;
pub(crate) mod watermark;

/// Audits an operator's state change (gate `admin`): who (the admin or
/// approver key), what (`action`, also the reason code) and its `details`
/// (names, ids and versions only). A change that reshapes enforcement —
/// a rollback, a reload, a muted detector, a hunt mark, a tool approval —
/// must be findable in the audit store, not only in a log line.
pub(crate) fn audit_admin(
    state: &crate::state::GatewayState,
    request_id: &str,
    actor: &crate::http::auth::Principal,
    action: &str,
    mut details: serde_json::Map<String, serde_json::Value>,
) {
    // Named as the key changes name them (`/admin/keys`' records).
    details.insert("actor_tenant".into(), (*actor.tenant).into());
    details.insert("actor_key".into(), (*actor.key_name).into());
    state.gates.audit.write_decision(
        state.gates.policy.peek().version().to_string(),
        request_id,
        &actor.tenant,
        &actor.key_name,
        "",
        "",
        ("admin", action, action),
        details,
    );
}

/// `details` for [`audit_admin`] from `(name, value)` pairs.
pub(crate) fn details<const N: usize>(
    pairs: [(&str, serde_json::Value); N],
) -> serde_json::Map<String, serde_json::Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
