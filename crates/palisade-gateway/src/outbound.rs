//! How the gateway's own HTTP clients are built (the model servers, alert
//! webhooks, span export, fleet and canary calls).
//!
//! Must not: follow a redirect. A 307 or 308 re-sends the whole request —
//! a prompt with its canary, an alert, the backend's API key in a header
//! reqwest does not strip on a cross-host hop (`api-key`) — to wherever the
//! answer points, past the residency rules and the operator's choice of
//! peer. A redirect is an answer like any other: a model server's is an
//! upstream error (`pipeline::respond`), a webhook's a failed delivery.

/// A client builder that never follows redirects; callers add timeouts
/// and pools.
pub(crate) fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
}
