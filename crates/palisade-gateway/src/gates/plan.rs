//! The gates' per-request types: who the request is for ([`GateSubject`]),
//! what the request gates decided that the response gates need
//! ([`GatePlan`]), and which response shape they read ([`ResponseShape`]).
//!
//! Plain data: no gate logic, no I/O. The request keeps its plan from the
//! input gate to the last streamed event, so one policy version judges both.

use std::sync::Arc;

use palisade_detect::Canary;
use palisade_policy::{Snapshot, Subject};
use serde_json::Value;

use super::audit::AuditSink;
use super::tools::ToolPlan;

/// Who and what a request is, for tier selection and the audit log.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct GateSubject {
    pub(crate) request_id: String,
    pub(crate) tenant: String,
    pub(crate) route: String,
    pub(crate) model: String,
}

impl GateSubject {
    pub(crate) fn subject(&self) -> Subject<'_> {
        Subject {
            tenant: &self.tenant,
            route: &self.route,
            model: &self.model,
        }
    }
}

/// What the request gates decided that the output gate needs.
#[derive(Debug, Clone)]
pub(crate) struct GatePlan {
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) shadow: Option<Arc<Snapshot>>,
    pub(crate) subject: GateSubject,
    /// The canaries a leak is searched for: the one placed in this request's
    /// system prompt (if the tier asks for one); for a retrieved response,
    /// those of the hours it was made in.
    pub(crate) canaries: Vec<Canary>,
    /// The `response_format` JSON schema the completion must match.
    pub(crate) response_schema: Option<Arc<Value>>,
    /// The request asked for JSON (`response_format` `json_object` or
    /// `json_schema`): streamed content is judged by its decoded strings.
    pub(crate) json_mode: bool,
    /// Where decisions are recorded.
    pub(crate) sink: AuditSink,
    /// The output gate's hold-back bound for streams.
    pub(crate) stream_hold_bytes: usize,
    /// Retrieved content or tool output is in the conversation.
    pub(crate) untrusted_context: bool,
    /// The context gate (or the detector's own flag threshold) flagged some of
    /// it, or quarantined it.
    pub(crate) flagged_context: bool,
    /// What the tool gate needs to judge the response's tool calls.
    pub(crate) tools: Option<ToolPlan>,
    /// The response shape the output gate reads.
    pub(crate) shape: ResponseShape,
    /// Why the request was judged on less than the full cascade (the
    /// detection pool was saturated and the tier degrades): every audit
    /// record of the request carries it.
    pub(crate) degraded: Option<&'static str>,
    /// A request gate's enforced action was not `allow` (for the anomaly
    /// detector).
    pub(crate) flagged: bool,
}

impl GatePlan {
    /// A plan for a request the input gate has not seen (tenant `acme`, chat, no canary):
    /// for tests and the stream bench.
    pub(crate) fn for_test(snapshot: Snapshot) -> Self {
        Self {
            snapshot: Arc::new(snapshot),
            shadow: None,
            subject: GateSubject {
                request_id: "r".into(),
                tenant: "acme".into(),
                route: "m".into(),
                model: "m".into(),
            },
            canaries: Vec::new(),
            response_schema: None,
            json_mode: false,
            sink: AuditSink::default(),
            stream_hold_bytes: 512,
            untrusted_context: false,
            flagged_context: false,
            shape: ResponseShape::Chat,
            tools: None,
            degraded: None,
            flagged: false,
        }
    }

    /// The policy subject.
    pub(crate) fn subject_ref(&self) -> Subject<'_> {
        self.subject.subject()
    }
}

/// Which OpenAI response shape the output gate reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseShape {
    /// `/v1/chat/completions`: `choices[].message.content`, streamed as
    /// `choices[].delta.content`.
    Chat,
    /// `/v1/completions`: `choices[].text`, whole or streamed.
    Completion,
    /// `/v1/responses`: `output[]` items (`message` with `output_text`
    /// parts, `function_call`, `reasoning`), streamed as typed events
    /// (`response.output_text.delta`, …).
    Responses,
}

impl ResponseShape {
    pub(crate) fn body_text(self) -> &'static str {
        match self {
            Self::Chat => "/message/content",
            Self::Completion => "/text",
            // Output items are read whole (`gates::output::responses`).
            Self::Responses => "/content",
        }
    }
}
