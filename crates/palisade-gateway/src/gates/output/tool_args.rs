//! The output gate's word on a tool call the model emitted: its name and
//! arguments are model output too, and a call carrying a key, the canary or
//! a URL that smuggles data would otherwise be released to the executor with
//! a capability token.
//!
//! Links to other hosts are normal in arguments (a browsing tool fetches
//! them), so only links the sanitizer denies for what they *carry* count:
//! encoded data, `data:` and script URLs.
//!
//! The gateway's report of the calls (`palisade.tool_calls`) and its note in
//! the content echo strings the upstream wrote: a call's id and name, and a
//! schema pointer made of its argument names. They are model output as well
//! and pass the same sanitizer on the way out ([`Echo`]); the output gate
//! leaves the gateway's own report alone, so nothing else would.
//!
//! Must not: rewrite a call (its capability token binds the exact
//! arguments); a call that leaks is withheld whole.

use std::borrow::Cow;
use std::time::Instant;

use palisade_output::Class;
use palisade_policy::{Action, Decision, Evidence, Gate};
use serde_json::Value;

use super::{absorb, canary_alert, OutputPolicy};
use crate::gates::GatePlan;

/// Sanitizes the upstream's strings the gateway echoes in its own report and
/// notes, with the output gate's settings for the plan's tier (nothing to do
/// when the output gate is off for it).
pub(crate) struct Echo(Option<OutputPolicy>);

impl Echo {
    pub(crate) fn of(plan: &GatePlan) -> Self {
        Self(OutputPolicy::of(plan))
    }

    /// `text` as the client may see it: redacted, links and hidden marks
    /// removed, a canary replaced.
    pub(crate) fn clean<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.0 {
            Some(policy) => palisade_output::sanitize(text, &policy.sanitize).text,
            None => Cow::Borrowed(text),
        }
    }
}

/// Link rules that mean the URL itself carries data out.
const CARRYING: &[&str] = &["exfil-url", "script-url", "data-url"];

/// The audited output decision for a call whose id, name or arguments leak,
/// when the policy would redact or block what they carry; `None` when the
/// call carries nothing the output gate stops.
pub(crate) fn tool_call_leaks(
    plan: &GatePlan,
    id: &str,
    name: &str,
    arguments: &str,
) -> Option<Decision> {
    let policy = OutputPolicy::of(plan)?;
    let started = Instant::now();
    // What an executor will read: the raw text, and the decoded string
    // values (`\u0041KIA…` is a key once parsed). The call's id is the
    // upstream's too, and reaches the client and the executor alike.
    let mut text = format!("{id}\n{name}\n{arguments}");
    if let Ok(value) = serde_json::from_str::<Value>(arguments) {
        collect_strings(&value, &mut text);
    }
    let s = palisade_output::sanitize(&text, &policy.sanitize);
    let leaks: Vec<_> = s
        .actions
        .iter()
        .filter(|a| a.class != Class::Link || CARRYING.contains(&a.rule))
        .filter(|a| a.class != Class::Hidden)
        .cloned()
        .collect();
    if leaks.is_empty() && !s.canary_leaked {
        return None;
    }
    let mut evidence = Evidence::default();
    absorb(&mut evidence, &leaks, s.canary_leaked);
    let decision = crate::gates::decide(plan, Gate::Output, evidence.clone(), started);
    if evidence.canary_leaked {
        canary_alert(plan);
    }
    (decision.enforced_action >= Action::Redact).then_some(decision)
}

fn collect_strings(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            out.push('\n');
            out.push_str(s);
        }
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push('\n');
            out.push_str(k);
            collect_strings(v, out);
        }),
        _ => {}
    }
}
