//! Bounds and identities for the tool gate's inputs, on every path a call can take.
//!
//! `tools.max_call_bytes` used to bound only streamed calls (the assembler's bound): a
//! whole response or a guard-API request could carry calls of any size, judged, signed and
//! parked in memory. The same bound now applies to all three: calls past it are withheld
//! as not the model's (like a stream cut by its bound), never released or held.
//!
//! The caps on a conversation's tool loop (rounds, loop tokens) are the policy's decision
//! ([`Snapshot::decide_loop`]); here they only become the client's error. This module must
//! not decide caps itself.

use palisade_openai::{ApiError, ErrorCode};
use palisade_policy::{LoopEvidence, ReasonCode};
use palisade_tools::ToolCall;
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::gates::GatePlan;

/// The detail of a call that should have waited for confirmation but found no room.
pub(crate) const NO_ROOM: &str =
    "no room to hold the call for confirmation (tools.max_pending calls are waiting)";

/// The detail of a call withheld for its size.
pub(crate) fn oversize_detail(max: usize) -> String {
    format!("the tool calls exceed tools.max_call_bytes ({max} bytes)")
}

/// Bytes of call data the stream assembler would hold for `calls`: ids, names and
/// arguments.
pub(crate) fn calls_bytes(calls: &[ToolCall]) -> usize {
    calls
        .iter()
        .map(|c| palisade_tools::ENTRY_BYTES + c.id.len() + c.name.len() + c.arguments.len())
        .fold(0, usize::saturating_add)
}

/// Whether the calls of a whole chat completion, all choices together (as a stream's
/// assembler counts them), exceed `max` bytes.
pub(crate) fn response_oversize(response: &Value, max: usize) -> bool {
    let Some(choices) = response.get("choices").and_then(Value::as_array) else {
        return false;
    };
    let total = choices
        .iter()
        .filter_map(|c| c.get("message"))
        .map(|m| {
            let legacy = m
                .get("function_call")
                .filter(|c| c.is_object())
                .map(|c| ToolCall::from_function_call(c, 0, String::new()));
            calls_bytes(&ToolCall::from_message(m)) + calls_bytes(legacy.as_slice())
        })
        .fold(0, usize::saturating_add);
    total > max
}

/// Refuses a request that continues a tool loop already past its caps (the client ignored
/// withheld calls, or replays history), as the policy decides.
pub(crate) fn check_loop_caps(plan: &GatePlan, evidence: LoopEvidence) -> Result<(), ApiError> {
    let started = std::time::Instant::now();
    let subject = plan.subject_ref();
    let decision = plan.snapshot.decide_loop(&subject, &evidence);
    let Some(&reason) = decision.reasons.first() else {
        return Ok(());
    };
    // A refusal is audited like every other gate decision (policy version,
    // reason code); the evidence is the counters, which carry no text.
    let shadow = plan
        .shadow
        .as_ref()
        .map(|s| s.decide_loop(&subject, &evidence));
    crate::gates::audit(
        plan,
        palisade_policy::Evidence::default(),
        &decision,
        shadow.as_ref(),
        started,
    );
    let gate = plan.snapshot.tier_for(&subject).tool_gate();
    let what = match reason {
        ReasonCode::ToolRoundLimit => format!(
            "{} tool rounds, the limit is {}",
            evidence.rounds,
            gate.and_then(|g| g.max_rounds()).unwrap_or_default()
        ),
        _ => format!(
            "{} tokens spent in this conversation's tool loop, the limit is {}",
            evidence.loop_tokens,
            gate.and_then(|g| g.max_loop_tokens()).unwrap_or_default()
        ),
    };
    Err(ApiError::policy(
        ErrorCode::PolicyBlocked,
        reason.as_str(),
        format!(
            "the tool loop is stopped: {what} (policy {}); start a new conversation",
            decision.policy_version
        ),
    ))
}

/// The arguments an executor sent to `/v1/tools/verify`, as the text to hash: the string's
/// content when it sent the JSON-encoded string the API uses, else the raw JSON it sent
/// (not re-serialized, so duplicate names and exact numbers reach the canonical hash).
pub(crate) fn raw_arguments(raw: &RawValue) -> Result<String, ApiError> {
    let text = raw.get();
    if text.starts_with('"') {
        serde_json::from_str::<String>(text).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("`arguments` is not a JSON string: {e}"),
            )
            .with_param("arguments")
        })
    } else {
        Ok(text.to_owned())
    }
}

/// A capability token's identity for single use: the hash of its signed claims, so two
/// tokens share it only if the gateway signed the same claims.
pub(crate) fn token_id(token: &str) -> String {
    let claims = token.split('.').nth(1).unwrap_or(token);
    hex::encode(Sha256::digest(claims.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(args: &str) -> Value {
        json!({"id": "c", "type": "function", "function": {"name": "t", "arguments": args}})
    }

    #[test]
    fn whole_responses_count_every_choice() {
        let big = "x".repeat(600);
        let resp = json!({"choices": [
            {"message": {"tool_calls": [call(&big)]}},
            {"message": {"tool_calls": [call(&big)]}},
        ]});
        assert!(!response_oversize(&resp, 2_000));
        assert!(response_oversize(&resp, 1_000));
        assert!(!response_oversize(&json!({"choices": "junk"}), 1));
    }

    #[test]
    fn raw_arguments_keep_their_text() {
        let raw: Box<RawValue> =
            serde_json::from_str(r#"{"n": 100000000000000000001, "n": 1}"#).unwrap();
        assert_eq!(
            raw_arguments(&raw).unwrap(),
            r#"{"n": 100000000000000000001, "n": 1}"#
        );
        let raw: Box<RawValue> = serde_json::from_str(r#""{\"a\":1}""#).unwrap();
        assert_eq!(raw_arguments(&raw).unwrap(), r#"{"a":1}"#);
    }

    #[test]
    fn loop_caps_become_policy_errors() {
        let snapshot = palisade_policy::Snapshot::from_toml(
            "default_tier = \"t\"\n[tiers.t.tool]\nallow = [\"*\"]\nmax_rounds = 3\nmax_loop_tokens = 1000",
        )
        .unwrap();
        let plan = GatePlan::for_test(snapshot);
        let check = |rounds, loop_tokens, continuing| {
            check_loop_caps(
                &plan,
                LoopEvidence {
                    rounds,
                    loop_tokens,
                    continuing,
                },
            )
        };
        assert!(check(3, 999, true).is_ok());
        assert!(check(9, 9_999, false).is_ok(), "a new turn is not stopped");
        let rounds = check(4, 5_000, true).unwrap_err();
        assert_eq!(rounds.code, ErrorCode::PolicyBlocked);
        assert!(
            rounds.message.contains("4 tool rounds, the limit is 3"),
            "{}",
            rounds.message
        );
        let tokens = check(3, 1_000, true).unwrap_err();
        assert!(
            tokens.message.contains(&format!(
                "1000 tokens spent in this conversation's tool loop, the limit is 1000 (policy {})",
                plan.snapshot.version()
            )),
            "{}",
            tokens.message
        );
    }

    #[test]
    fn token_ids_differ_with_the_claims() {
        assert_ne!(token_id("pcap1.AAA.sig"), token_id("pcap1.AAB.sig"));
        assert_eq!(token_id("pcap1.AAA.sig1"), token_id("pcap1.AAA.sig2"));
    }
}
