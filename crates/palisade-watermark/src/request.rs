//! Putting the watermark into a request: the green list becomes the body's
//! `logit_bias` (`{"<token id>": delta}`, the OpenAI shape that vLLM and
//! the llama.cpp servers accept), and the client's own `logit_bias` is
//! stripped, merged or refused per the configuration.
//!
//! Log-probabilities are the fast way to learn a green list: two tenants
//! (or one tenant across a key rotation) asking the same prompt see each
//! token's log-probability move by ±delta exactly where their lists differ,
//! a few queries instead of thousands of outputs. So on a watermarked model
//! they are refused by default ([`LogprobsAction`]).
//!
//! Fields that would change how an upstream reads the map are removed
//! whatever the setting: llama-cpp-python's `logit_bias_type: "tokens"`
//! makes it read the keys as text to tokenize, which would silently turn
//! the watermark off. A `logit_bias` hidden in an `extra_body`-style
//! container (merged into the top level by SDKs and some upstreams) is the
//! client's `logit_bias` too.
//!
//! Must not: keep the request's text, or touch any other field.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::GreenList;

/// Containers whose keys an SDK or upstream merges into the top level (the
/// same list parameter hardening judges).
pub use palisade_extraction::params::MERGED_CONTAINERS;

/// Fields that change how an upstream interprets `logit_bias`.
pub const BIAS_MODIFIERS: [&str; 1] = ["logit_bias_type"];

/// Most entries a client's own map may carry when merged (OpenAI's limit).
pub const MAX_CLIENT_ENTRIES: usize = 300;

/// What a watermarked route does with the client's own `logit_bias`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientBias {
    /// Drop it and serve. Rationale for the default: the client's map is
    /// the one lever that can push against the green list, and an SDK that
    /// sends an empty or small map keeps working.
    #[default]
    Strip,
    /// Add it to the watermark's (each entry clamped to ±100), at most
    /// [`MAX_CLIENT_ENTRIES`] entries of in-vocabulary ids.
    Merge,
    /// Refuse the request (400 `watermark_logit_bias_refused`).
    Refuse,
}

/// Fields that ask an upstream for log-probabilities (OpenAI, vLLM's
/// `prompt_logprobs`, llama.cpp's `n_probs` and `post_sampling_probs`).
pub const LOGPROB_FIELDS: [&str; 5] = [
    "logprobs",
    "top_logprobs",
    "prompt_logprobs",
    "n_probs",
    "post_sampling_probs",
];

/// What a watermarked model does with a request for log-probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogprobsAction {
    /// Forward it (the operator accepts that logprobs reveal the list).
    Allow,
    /// Remove the fields and serve without log-probabilities.
    Strip,
    /// Refuse the request (400 `watermark_logprobs_refused`). Rationale for
    /// the default: a client learns why, instead of silently missing data.
    #[default]
    Refuse,
}

/// How to mark one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Marking {
    /// Bias added to green tokens.
    pub delta: f32,
    /// The client's own `logit_bias`.
    pub client_bias: ClientBias,
    /// Requests for log-probabilities.
    pub logprobs: LogprobsAction,
}

/// What applying the watermark did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    /// Where the client had put a `logit_bias` (`logit_bias`,
    /// `extra_body.logit_bias`, …), or a modifier such as `logit_bias_type`.
    pub client_fields: Vec<String>,
    /// Entries of the map sent upstream.
    pub entries: usize,
    /// Log-probability fields removed (with [`LogprobsAction::Strip`]).
    pub stripped_logprobs: Vec<String>,
}

/// Why a request cannot be watermarked as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The client sent a `logit_bias` and the route refuses them.
    #[error("`{0}` is not accepted on a watermarked route")]
    ClientBias(String),
    /// The client's map is not an object of integer ids to numbers, or
    /// holds more than [`MAX_CLIENT_ENTRIES`] entries (merge only).
    #[error("`{0}` must map at most 300 token ids to numbers")]
    Malformed(String),
    /// The client asked for log-probabilities and the route refuses them.
    #[error("`{0}` (log-probabilities) is not served on a watermarked model")]
    Logprobs(String),
}

/// Whether a field's value asks for something (`false`, `0`, `null` and
/// empty strings do not).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty() && s != "false" && s != "0",
        _ => true,
    }
}

/// Handles log-probability fields, top level and in merged containers.
fn logprobs(
    fields: &mut Map<String, Value>,
    action: LogprobsAction,
    applied: &mut Applied,
) -> Result<(), Refusal> {
    if action == LogprobsAction::Allow {
        return Ok(());
    }
    let mut found = Vec::new();
    for f in LOGPROB_FIELDS {
        if fields.get(f).is_some_and(truthy) {
            found.push(f.to_owned());
        }
        if action == LogprobsAction::Strip {
            fields.remove(f);
        }
    }
    for container in MERGED_CONTAINERS {
        if let Some(Value::Object(inner)) = fields.get_mut(container) {
            for f in LOGPROB_FIELDS {
                if inner.get(f).is_some_and(truthy) {
                    found.push(format!("{container}.{f}"));
                }
                if action == LogprobsAction::Strip {
                    inner.remove(f);
                }
            }
        }
    }
    match (action, found.first()) {
        (LogprobsAction::Refuse, Some(field)) => Err(Refusal::Logprobs(field.clone())),
        _ => {
            applied.stripped_logprobs = found;
            Ok(())
        }
    }
}

/// Sets the watermark's `logit_bias` on a request body's fields.
pub fn apply(
    fields: &mut Map<String, Value>,
    list: &GreenList,
    marking: Marking,
) -> Result<Applied, Refusal> {
    let Marking {
        delta,
        client_bias: client,
        logprobs: logprobs_action,
    } = marking;
    let mut applied = Applied::default();
    logprobs(fields, logprobs_action, &mut applied)?;
    let mut client_maps: Vec<(String, Value)> = Vec::new();
    if let Some(v) = fields.remove("logit_bias") {
        client_maps.push(("logit_bias".to_owned(), v));
    }
    for modifier in BIAS_MODIFIERS {
        if fields.remove(modifier).is_some() {
            applied.client_fields.push(modifier.to_owned());
        }
    }
    for container in MERGED_CONTAINERS {
        if let Some(Value::Object(inner)) = fields.get_mut(container) {
            if let Some(v) = inner.remove("logit_bias") {
                client_maps.push((format!("{container}.logit_bias"), v));
            }
            for modifier in BIAS_MODIFIERS {
                if inner.remove(modifier).is_some() {
                    applied
                        .client_fields
                        .push(format!("{container}.{modifier}"));
                }
            }
        }
    }
    // `null` and `{}` are what SDKs send for "no bias": not a client map.
    client_maps
        .retain(|(_, v)| !matches!(v, Value::Null) && v.as_object().is_none_or(|m| !m.is_empty()));
    applied
        .client_fields
        .extend(client_maps.iter().map(|(f, _)| f.clone()));

    let mut bias: Vec<f64> = vec![0.0; list.vocab() as usize];
    for t in list.green_ids() {
        bias[t as usize] = f64::from(delta);
    }
    match client {
        ClientBias::Refuse => {
            if let Some(field) = applied.client_fields.first() {
                return Err(Refusal::ClientBias(field.clone()));
            }
        }
        ClientBias::Strip => {}
        ClientBias::Merge => {
            let mut total = 0;
            for (field, map) in &client_maps {
                let Value::Object(map) = map else {
                    return Err(Refusal::Malformed(field.clone()));
                };
                total += map.len();
                if total > MAX_CLIENT_ENTRIES {
                    return Err(Refusal::Malformed(field.clone()));
                }
                for (id, value) in map {
                    let (Ok(id), Some(value)) = (id.trim().parse::<u32>(), value.as_f64()) else {
                        return Err(Refusal::Malformed(field.clone()));
                    };
                    if let Some(b) = bias.get_mut(id as usize) {
                        *b = (*b + value).clamp(-100.0, 100.0);
                    }
                }
            }
        }
    }
    let map: Map<String, Value> = bias
        .iter()
        .enumerate()
        .filter(|(_, b)| **b != 0.0)
        .map(|(t, b)| (t.to_string(), Value::from(*b)))
        .collect();
    applied.entries = map.len();
    fields.insert("logit_bias".to_owned(), Value::Object(map));
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive_key;
    use serde_json::json;

    fn list() -> GreenList {
        GreenList::new(&derive_key(&[9; 32], "t", 0), 40, 0.25).unwrap()
    }

    fn run(body: Value, client: ClientBias) -> (Result<Applied, Refusal>, Value) {
        let Value::Object(mut fields) = body else {
            panic!("object")
        };
        let marking = Marking {
            delta: 2.0,
            client_bias: client,
            logprobs: LogprobsAction::Refuse,
        };
        let out = apply(&mut fields, &list(), marking);
        (out, Value::Object(fields))
    }

    #[test]
    fn the_green_list_becomes_the_bias_map_and_the_clients_is_stripped() {
        let (out, body) = run(
            json!({"model": "m", "logit_bias": {"3": -100}, "logit_bias_type": "tokens",
                   "extra_body": {"logit_bias": {"4": 5}, "top_k": 3}}),
            ClientBias::Strip,
        );
        let out = out.unwrap();
        assert_eq!(out.entries, 10);
        assert_eq!(
            out.client_fields,
            ["logit_bias_type", "logit_bias", "extra_body.logit_bias"]
        );
        let map = body["logit_bias"].as_object().unwrap();
        let green: Vec<String> = list().green_ids().map(|t| t.to_string()).collect();
        assert_eq!(map.keys().cloned().collect::<Vec<_>>().len(), 10);
        for t in &green {
            assert_eq!(map[t], json!(2.0));
        }
        assert!(body.get("logit_bias_type").is_none());
        assert_eq!(body["extra_body"], json!({"top_k": 3}));
        assert_eq!(body["model"], "m");
    }

    #[test]
    fn merging_adds_and_clamps_and_refusing_names_the_field() {
        let g = list().green_ids().next().unwrap();
        let r = (0..40).find(|&t| !list().is_green(t)).unwrap();
        let (out, body) = run(
            json!({"logit_bias": {g.to_string(): 99.5, r.to_string(): -100, "7000": 5}}),
            ClientBias::Merge,
        );
        assert_eq!(out.unwrap().entries, 11);
        assert_eq!(body["logit_bias"][g.to_string()], json!(100.0));
        assert_eq!(body["logit_bias"][r.to_string()], json!(-100.0));
        assert!(body["logit_bias"].get("7000").is_none());

        let many: Map<String, Value> = (0..301).map(|t| (t.to_string(), json!(1))).collect();
        let (out, _) = run(json!({"logit_bias": many}), ClientBias::Merge);
        assert_eq!(out, Err(Refusal::Malformed("logit_bias".into())));
        let (out, _) = run(json!({"logit_bias": {"x": 1}}), ClientBias::Merge);
        assert!(out.is_err());

        let (out, _) = run(
            json!({"nvext": {"logit_bias": {"1": 1}}}),
            ClientBias::Refuse,
        );
        assert_eq!(out, Err(Refusal::ClientBias("nvext.logit_bias".into())));
        // An SDK's empty map is not a client bias.
        let (out, _) = run(json!({"logit_bias": {}}), ClientBias::Refuse);
        assert!(out.unwrap().client_fields.is_empty());
    }

    #[test]
    fn log_probabilities_are_refused_or_stripped_wherever_they_hide() {
        for (body, field) in [
            (json!({"logprobs": true}), "logprobs"),
            (json!({"top_logprobs": 3}), "top_logprobs"),
            (json!({"logprobs": 5}), "logprobs"),
            (json!({"extra_body": {"n_probs": 10}}), "extra_body.n_probs"),
            (
                json!({"vllm_xargs": {"prompt_logprobs": 1}}),
                "vllm_xargs.prompt_logprobs",
            ),
        ] {
            let (out, _) = run(body.clone(), ClientBias::Strip);
            assert_eq!(out, Err(Refusal::Logprobs(field.into())), "{body}");
            let Value::Object(mut fields) = body else {
                panic!()
            };
            let marking = Marking {
                delta: 2.0,
                client_bias: ClientBias::Strip,
                logprobs: LogprobsAction::Strip,
            };
            let applied = apply(&mut fields, &list(), marking).unwrap();
            assert_eq!(applied.stripped_logprobs, [field]);
            let sent = Value::Object(fields).to_string();
            assert!(!sent.contains("probs"), "{sent}");
        }
        // `false` and `0` ask for nothing.
        let (out, _) = run(
            json!({"logprobs": false, "top_logprobs": 0}),
            ClientBias::Strip,
        );
        assert!(out.is_ok());
    }
}
