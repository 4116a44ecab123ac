//! The per-request context ([`RequestCtx`]) the pipeline's phases carry.
//!
//! The gates' own per-request types ([`GatePlan`], [`crate::gates::GateSubject`],
//! [`crate::gates::ResponseShape`]) live in [`crate::gates::plan`], beside
//! the gates that fill them; this context holds the plan once the input gate
//! made it. Nothing here decides anything: phases read and write it.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderValue};
use palisade_openai::request::Endpoint;

use crate::gates::GatePlan;
use crate::limits::accounting::{LedgerRow, RowFacts, TokenAccounting};
use crate::limits::admission::apply_headers;
use crate::metrics::InFlight;

/// One request's context, carried through every phase of
/// [`crate::pipeline`] and, for a stream, until its last event: who asked,
/// what the limits granted (slots, reservation, headers), what the gates
/// decided ([`GatePlan`]), and where its ledger row goes. Finishing it (or
/// dropping it unfinished) writes metrics, the access-log line and the ledger
/// row exactly once.
#[derive(Debug)]
pub(crate) struct RequestCtx {
    /// The proxied endpoint.
    pub(crate) endpoint: Endpoint,
    pub(crate) route: &'static str,
    pub(crate) request_id: Arc<str>,
    /// Minted here, never taken from the client: keys the token reservation
    /// and the ledger row, where a client-chosen id could collide.
    pub(crate) internal_id: String,
    pub(crate) tenant: Option<Arc<str>>,
    /// The caller's key name, once authenticated (a response id's owner).
    pub(crate) key_name: Option<Arc<str>>,
    /// Records the owner of the Responses API id the answer carries.
    pub(crate) response_owner: Option<crate::api::responses::OwnerStamp>,
    pub(crate) model_label: Arc<str>,
    /// `model_label` may label metrics: a routed name, or a wildcard name the
    /// upstream served. Until then a client's name is counted as `other`, so
    /// made-up names never become (permanent) series.
    pub(crate) labelled: bool,
    pub(crate) started: Instant,
    /// Rate-limit headers for the response, set by the rate gate.
    pub(crate) limit_headers: palisade_limits::RateLimitHeaders,
    /// The key is on the escalation ladder's warning rung.
    pub(crate) warned: bool,
    /// How the request was degraded under overload, if it was.
    pub(crate) degraded: Option<String>,
    /// The in-flight slot, released when the request (or stream) ends.
    pub(crate) _slot: Option<crate::limits::admission::InFlightSlot>,
    /// The stream slot, for streaming requests under a stream limit.
    pub(crate) _stream_slot: Option<crate::limits::admission::InFlightSlot>,
    /// Token accounting, when a token budget or the ledger needs it.
    pub(crate) tokens: Option<TokenAccounting>,
    /// Where the request's ledger row goes, and what the row needs to know.
    pub(crate) ledger: Option<LedgerRow>,
    /// The request's place at a backend with a downstream budget.
    pub(crate) _backend_slot: Option<crate::limits::scheduler::BackendSlot>,
    /// The backend that served the request (`x-palisade-backend`).
    pub(crate) served_by: Option<Arc<str>>,
    /// Upstream attempts made (`x-palisade-attempts`; more than 1 after a
    /// retry or fallback).
    pub(crate) attempts: u32,
    /// A hedge was sent for this request (`x-palisade-hedged: 1`).
    pub(crate) hedged: bool,
    /// A cascade's outcome (`x-palisade-cascade`): `first` or `escalated`.
    pub(crate) cascade: Option<&'static str>,
    /// The request counted as outstanding at its backend until it ends.
    pub(crate) _outstanding: Option<crate::balancer::Outstanding>,
    /// The routing snapshot the request was routed by, held to its last
    /// byte (streams included) so a reload never re-routes it midway.
    pub(crate) routing: Option<Arc<crate::snapshot::RoutingSnapshot>>,
    /// What the request gates decided that the output gate needs.
    pub(crate) gates: Option<GatePlan>,
    /// The idempotency key this request holds and the cache slot it may
    /// fill; dropping it unfilled releases the key.
    pub(crate) replay: Option<crate::replay::Recorder>,
    /// The request span, re-entered for the access-log line: a stream ends
    /// after the handler returned, outside the span.
    pub(crate) span: tracing::Span,
    /// The request's OpenTelemetry trace: phase spans, exported at the end.
    pub(crate) trace: crate::telemetry::RequestTrace,
    /// The connection's peer (none when served without the listener).
    pub(crate) peer: Option<std::net::IpAddr>,
    /// The id of the route the client's model resolved to, before any
    /// degradation or cascade stage: its residency rule holds for them.
    pub(crate) named_route: Option<usize>,
    pub(crate) _in_flight: InFlight,
    pub(crate) done: bool,
}

impl RequestCtx {
    pub(crate) fn new(endpoint: Endpoint, request_id: &str, started: Instant) -> Self {
        Self {
            endpoint,
            route: endpoint.label(),
            request_id: request_id.into(),
            internal_id: uuid::Uuid::new_v4().to_string(),
            peer: None,
            named_route: None,
            tenant: None,
            key_name: None,
            response_owner: None,
            model_label: "none".into(),
            labelled: true,
            started,
            limit_headers: palisade_limits::RateLimitHeaders::default(),
            warned: false,
            degraded: None,
            _slot: None,
            _stream_slot: None,
            tokens: None,
            ledger: None,
            _backend_slot: None,
            served_by: None,
            attempts: 0,
            hedged: false,
            cascade: None,
            _outstanding: None,
            routing: None,
            gates: None,
            replay: None,
            span: tracing::Span::current(),
            trace: crate::telemetry::RequestTrace::default(),
            _in_flight: InFlight::enter(),
            done: false,
        }
    }

    /// The request id.
    pub(crate) fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The bounded model label.
    pub(crate) fn model_label(&self) -> &Arc<str> {
        &self.model_label
    }

    /// When the request head arrived.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Commits the ledger row now (awaiting the store), if there is a ledger.
    pub(crate) async fn write_ledger_now(
        &mut self,
        status: u16,
        stream_outcome: Option<&'static str>,
    ) {
        if let Some(row) = &mut self.ledger {
            row.write(RowFacts {
                tenant: self.tenant.as_deref().unwrap_or("-"),
                model: &self.model_label,
                status,
                stream_outcome,
                tokens: self.tokens.as_ref(),
                elapsed: self.started.elapsed(),
            })
            .await;
        }
    }

    /// Whether this request has a ledger row to write.
    pub(crate) fn has_ledger(&self) -> bool {
        self.ledger.is_some()
    }

    /// Adds the admission headers (`x-ratelimit-*`, the ladder's warning).
    pub(crate) fn stamp(&self, headers: &mut HeaderMap) {
        apply_headers(&self.limit_headers, headers);
        if self.ledger.is_some() {
            // The ledger row's key, so a client or operator can find it.
            if let Ok(v) = HeaderValue::from_str(&self.internal_id) {
                headers.insert("x-palisade-ledger-id", v);
            }
        }
        if let Some(b) = &self.served_by {
            if let Ok(v) = HeaderValue::from_str(b) {
                headers.insert("x-palisade-backend", v);
            }
        }
        if self.attempts > 1 {
            headers.insert("x-palisade-attempts", HeaderValue::from(self.attempts));
        }
        if let Some(c) = self.cascade {
            headers.insert("x-palisade-cascade", HeaderValue::from_static(c));
        }
        if self.hedged {
            headers.insert("x-palisade-hedged", HeaderValue::from_static("1"));
        }
        if let Some(d) = &self.degraded {
            if let Ok(v) = HeaderValue::from_str(d) {
                headers.insert("x-palisade-degraded", v);
            }
        }
        if self.warned {
            headers.insert(
                "x-palisade-warning",
                HeaderValue::from_static(
                    "repeated limit violations: further ones slow, then block, this key",
                ),
            );
        }
    }

    /// Records metrics and the access-log line.
    pub(crate) fn finish(&mut self, status: u16, stream_outcome: Option<&'static str>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        if let Some(tokens) = &mut self.tokens {
            tokens.settle(status);
        }
        if let Some(row) = &mut self.ledger {
            row.write_nowait(RowFacts {
                tenant: self.tenant.as_deref().unwrap_or("-"),
                model: &self.model_label,
                status,
                stream_outcome,
                tokens: self.tokens.as_ref(),
                elapsed,
            });
        }
        let metric_label = if self.labelled {
            &*self.model_label
        } else {
            "other"
        };
        crate::metrics::request_done(self.route, metric_label, status, elapsed);
        self.finish_trace(status);
        let _entered = self.span.enter();
        tracing::info!(
            status,
            tenant = self.tenant.as_deref().unwrap_or("-"),
            model = %OneLine(&self.model_label),
            latency_us = elapsed.as_micros() as u64,
            stream = stream_outcome.unwrap_or("-"),
            "served"
        );
    }
}

/// Client-chosen text (a wildcard route's model name) shown on one log line:
/// control characters (C0, DEL, C1 such as U+0085) and the Unicode line and
/// paragraph separators are written as `\u{…}`, everything else as is.
/// `tracing`'s text format writes a `%` value raw, so a model name carrying a
/// line break would otherwise forge a log line of its own.
struct OneLine<'a>(&'a str);

impl std::fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let breaks = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
        let mut rest = self.0;
        while let Some(at) = rest.find(breaks) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(f, "\\u{{{:04x}}}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

impl RequestCtx {
    /// The request span's closing attributes, then the export.
    fn finish_trace(&mut self, status: u16) {
        if !self.trace.recording() {
            return;
        }
        if let Some(tenant) = &self.tenant {
            self.trace.set("palisade.tenant", tenant.to_string());
        }
        if let Some(plan) = &self.gates {
            self.trace.set(
                "palisade.policy.version",
                plan.snapshot.version().to_string(),
            );
        }
        if let Some(usage) = self.tokens.as_ref().and_then(|t| t.tally.usage.as_ref()) {
            self.trace
                .set("gen_ai.usage.input_tokens", usage.prompt_tokens);
            self.trace
                .set("gen_ai.usage.output_tokens", usage.completion_tokens);
        }
        if let Some(backend) = &self.served_by {
            self.trace.set("palisade.backend", backend.to_string());
        }
        self.trace.finish(self.route, status);
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        // A request future dropped before it finished: the client went away
        // while we waited on the upstream. 499 is the de-facto code for it.
        if !self.done {
            self.finish(499, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OneLine;

    #[test]
    fn one_line_escapes_every_line_break_and_keeps_the_rest() {
        assert_eq!(OneLine("llama-3.1:8b").to_string(), "llama-3.1:8b");
        assert_eq!(OneLine("modèle ✓").to_string(), "modèle ✓");
        let forged = "m\nINFO forged\r\u{85}\u{2028}\u{2029}\u{1b}[2J\u{7f}";
        let shown = OneLine(forged).to_string();
        assert_eq!(
            shown,
            "m\\u{000a}INFO forged\\u{000d}\\u{0085}\\u{2028}\\u{2029}\\u{001b}[2J\\u{007f}"
        );
        assert!(shown.lines().count() == 1);
    }
}
