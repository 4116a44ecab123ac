//! The tool gate: which tools a request's model may be offered and may call, with what
//! arguments, and which calls need a confirmation first.
//!
//! The catalog (`[tools.<name>]`, once per document) says what each tool *is*: its side
//! effect, whether it sends data out, the JSON Schema of its arguments. A tier's
//! `[tiers.<tier>.tool]` table says what requests of that tier may *do*: the allowlist
//! (tiers are assigned per tenant, route and model, so this is the per-tenant and per-route
//! allowlist), what an irreversible call or an egress after untrusted content needs, and
//! the loop caps.
//!
//! ```toml
//! [tools.search_docs]
//! effect = "read_only"
//! schema = { type = "object", properties = { q = { type = "string" } }, required = ["q"] }
//!
//! [tools.send_email]
//! effect = "write"
//! egress = true
//!
//! [tools.delete_file]
//! effect = "irreversible"
//!
//! [tiers.standard.tool]
//! allow = ["search_docs", "send_email", "delete_file"]   # "*": any tool, catalogued or not
//! unlisted_offer = "remove"        # or "refuse": offered tools not allowed
//! irreversible = "confirm"         # allow | flag | confirm | block
//! untrusted_egress = "confirm"     # egress tools once untrusted content is in context
//! untrusted = "flagged"            # "flagged": content the context gate flagged; "any"
//! max_calls_per_response = 8
//! max_rounds = 16                  # tool rounds per conversation
//! max_loop_tokens = 200000         # tokens spent in one conversation's tool loop
//! ```
//!
//! A call's decision ([`Snapshot::decide_tool`]) is `block` (withhold) for a tool not
//! allowed, arguments that are not JSON or fail the schema, or a cap exceeded; `confirm`
//! (or what the tier says) for an irreversible tool or an egress after untrusted content;
//! `allow` otherwise. Every reason is reported, the most severe action wins.

use crate::decide::Decision;
use crate::evidence::Evidence;
use crate::snapshot::{Snapshot, Subject};
use crate::types::{Action, Gate, ReasonCode};

use crate::tool_spec::*;

impl Snapshot {
    /// Judges one tool call (`evidence.tool`) for `subject`. `allow` with no reasons when
    /// the tier has no tool gate or the evidence has no call. Total: never panics.
    pub fn decide_tool(&self, subject: &Subject<'_>, evidence: &Evidence) -> Decision {
        let tier = self.tier_for(subject);
        let mut d = Decision::allow(Gate::Tool, tier.name(), self.version());
        let (Some(gate), Some(call)) = (tier.tool_gate(), evidence.tool.as_ref()) else {
            return d;
        };
        let mut hit = |action: Action, reason: ReasonCode| {
            if action != Action::Allow {
                d.enforced_action = d.enforced_action.max(action);
                d.reasons.push(reason);
            }
        };
        if !gate.allows(&call.name) {
            hit(Action::Block, ReasonCode::ToolNotAllowed);
        }
        if !call.args_json {
            hit(Action::Block, ReasonCode::ToolArgumentsInvalid);
        }
        if call.schema_violation.is_some() {
            hit(Action::Block, ReasonCode::ToolSchemaViolation);
        }
        if gate
            .max_calls_per_response
            .is_some_and(|cap| call.position >= cap)
        {
            hit(Action::Block, ReasonCode::ToolCallLimit);
        }
        if gate.max_rounds.is_some_and(|cap| call.round > cap) {
            hit(Action::Block, ReasonCode::ToolRoundLimit);
        }
        if gate
            .max_loop_tokens
            .is_some_and(|cap| call.loop_tokens > cap)
        {
            hit(Action::Block, ReasonCode::ToolTokenLimit);
        }
        let info = self.tools().info(&call.name);
        if info.effect == SideEffect::Irreversible {
            hit(gate.irreversible, ReasonCode::ToolIrreversible);
        }
        let tainted = match gate.untrusted {
            UntrustedScope::Flagged => call.flagged_context,
            UntrustedScope::Any => call.untrusted_context || call.flagged_context,
        };
        if info.egress && tainted {
            hit(gate.untrusted_egress, ReasonCode::ToolEgressAfterUntrusted);
        }
        d.action = d.enforced_action;
        d
    }
}
