//! [`Snapshot::decide_loop`]: whether a request may continue a conversation's tool loop, by
//! the tier's caps on tool rounds and tool-loop tokens.
//!
//! The per-call side of the same caps is [`Snapshot::decide_tool`] (a call that makes one
//! round too many, or comes after the token cap, is withheld); this is the request side: a
//! client that ignored withheld calls, or replays history, is stopped before the request goes
//! upstream. It decides on counts the caller gathered (history, counters); it must not count
//! anything itself, read a clock or do I/O.

use serde::{Deserialize, Serialize};

use crate::decide::Decision;
use crate::snapshot::{Snapshot, Subject};
use crate::types::{Action, Gate, ReasonCode};

/// What the request side knows about a conversation's tool loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoopEvidence {
    /// Tool rounds (assistant turns with tool calls) before this request.
    pub rounds: u32,
    /// Tokens spent in the conversation's tool loop before this request.
    pub loop_tokens: u64,
    /// The request continues the loop (its last message is a tool result). A request that
    /// does not is never stopped here: a new user turn is not the loop running on.
    pub continuing: bool,
}

impl Snapshot {
    /// Judges whether `subject` may continue its tool loop. `block` with
    /// [`ReasonCode::ToolRoundLimit`] when more rounds than the cap were made,
    /// [`ReasonCode::ToolTokenLimit`] when the loop has spent its token cap (in that order
    /// when both apply); `allow` with no reasons otherwise, or when the tier has no tool gate.
    /// Total: never panics.
    pub fn decide_loop(&self, subject: &Subject<'_>, evidence: &LoopEvidence) -> Decision {
        let tier = self.tier_for(subject);
        let mut d = Decision::allow(Gate::Tool, tier.name(), self.version());
        let Some(gate) = tier.tool_gate() else {
            return d;
        };
        if !evidence.continuing {
            return d;
        }
        if gate.max_rounds().is_some_and(|cap| evidence.rounds > cap) {
            d.reasons.push(ReasonCode::ToolRoundLimit);
        }
        // Reaching the cap stops the loop: the next round would spend past it.
        if gate
            .max_loop_tokens()
            .is_some_and(|cap| evidence.loop_tokens >= cap)
        {
            d.reasons.push(ReasonCode::ToolTokenLimit);
        }
        if !d.reasons.is_empty() {
            d.enforced_action = Action::Block;
            d.action = Action::Block;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
        default_tier = "standard"
        [tiers.standard.tool]
        allow = ["*"]
        max_rounds = 3
        max_loop_tokens = 1000

        [tiers.rounds_only.tool]
        allow = ["*"]
        max_rounds = 1

        [tiers.uncapped.tool]
        allow = ["*"]

        [tiers.open]

        [[assign]]
        tenant = "r"
        tier = "rounds_only"
        [[assign]]
        tenant = "u"
        tier = "uncapped"
        [[assign]]
        tenant = "lab"
        tier = "open"
    "#;

    fn who(tenant: &str) -> Subject<'_> {
        Subject {
            tenant,
            route: "chat",
            model: "m",
        }
    }

    #[test]
    fn loop_caps_by_tier() {
        use ReasonCode::{ToolRoundLimit as Rounds, ToolTokenLimit as Tokens};
        let p = Snapshot::from_toml(POLICY).unwrap();
        // (tenant, rounds, loop tokens, continuing, reasons)
        let cases: &[(&str, u32, u64, bool, &[ReasonCode])] = &[
            ("acme", 0, 0, true, &[]),
            ("acme", 3, 999, true, &[]),
            ("acme", 4, 0, true, &[Rounds]),
            ("acme", 3, 1000, true, &[Tokens]),
            ("acme", 4, 5000, true, &[Rounds, Tokens]),
            // A new user turn is never stopped, however long the loop was.
            ("acme", 40, 5000, false, &[]),
            ("r", 2, u64::MAX, true, &[Rounds]),
            ("r", 1, u64::MAX, true, &[]),
            ("u", u32::MAX, u64::MAX, true, &[]),
            // A tier without a tool gate has no caps.
            ("lab", u32::MAX, u64::MAX, true, &[]),
        ];
        for (tenant, rounds, loop_tokens, continuing, reasons) in cases {
            let evidence = LoopEvidence {
                rounds: *rounds,
                loop_tokens: *loop_tokens,
                continuing: *continuing,
            };
            let d = p.decide_loop(&who(tenant), &evidence);
            let case = format!("{tenant}: {evidence:?}");
            assert_eq!(d.gate, Gate::Tool, "{case}");
            assert_eq!(d.policy_version, p.version(), "{case}");
            assert_eq!(d.reasons, *reasons, "{case}");
            let expected = if reasons.is_empty() {
                Action::Allow
            } else {
                Action::Block
            };
            assert_eq!(
                (d.action, d.enforced_action),
                (expected, expected),
                "{case}"
            );
            assert_eq!(d.shadowed, None, "{case}");
            assert_eq!(d.tier.as_str(), p.tier_for(&who(tenant)).name().as_str());
        }
    }
}
