//! The red-team suite: every way around the gates that was found (and every
//! variant we thought of), each as a test that failed before its fix. One
//! module per class of attack, so the list of attacks reads in one place:
//!
//! - `input_gates`: hostile request shapes against the input and context
//!   gates (the `prompt` bypass, unread text fields, client channel marks).
//! - `side_fields`: secrets and canaries leaving through response fields
//!   other than `content`, and upstream bodies the gate cannot parse.
//! - `starvation`: CPU, memory and connection exhaustion.
//! - `token_counts`: `n`, `best_of` and completion limits spelled so the
//!   token budget did not read them (`30000.0`, `"30000"`), and `n`
//!   choices reserved as one.
//! - `token_ids`: vLLM's `return_token_ids` (a choice's ids spelling the
//!   text the output gate redacted, the prompt's spelling the planted
//!   system prompt and canary).
//! - `tokens_keys`: capability tokens, canonical arguments, signatures, keys.
//! - `output_gate`: the output gate's second round (links, streams,
//!   encodings, holding back without holding up).
//! - `bundle`: a hostile bundle store and disk (replayed older bundles,
//!   untrusted and retired keys, a swapped cache, huge bundles).
//! - `markers`: the keyed canary and data boundaries (no cross-tenant
//!   canary, no closing a block with a boundary seen before).
//! - `extraction`: logit-stealing parameter shapes past hardening, and a
//!   flood against the extraction telemetry queue.
//! - `hunt`: a campaign spread over keys and accounts that rotates its
//!   client fingerprint and jitters its pacing, against the cross-account
//!   hunt (found, alerted once, confirmed, marked benign).
//! - `saturation`: a flooded detection pool (judged or refused, never
//!   skipped) and attempts to blind the anomaly detector with scale events.
//! - `logs`: a flood while the log reader is stalled (no audit record lost).
//! - `routing`: a hostile upstream steering retries and fallbacks (parking
//!   requests, pushing data out of its residency region), and a cheap
//!   model's fallback as a way around the expensive model's limits, prices
//!   and tier.
//! - `cascade`: cascades (escalations provoked to spend past the token
//!   budget; a hostile cheap answer, huge, malformed or carrying a secret).
//! - `hedging`: hedged requests (a flood of slow requests turning hedges
//!   into double load; a fast head with a stalled body winning the race).
//! - `canary`: model canaries against hostile upstreams (a huge body, a
//!   body that is not JSON, a stall: judged failing, the task never held
//!   up) and the known limit of an upstream that recognises golden prompts
//!   (what makes them look like user traffic is checked).
//! - `routes_reload`: routes and backends reloaded from the file (a reload
//!   storm mixing two tables, losing requests or leaking probe loops; an
//!   edit opening a residency hole).
//! - `replay`: idempotency keys and the response cache (planted entries,
//!   blocked or flagged requests served as allowed, another tenant's key,
//!   a replay that skips the output gate, eviction floods).
//! - `watermark`: learning the green list through the detect endpoint,
//!   log-probabilities or the client's own `logit_bias`, and switching the
//!   watermark off with it.
//! - `console`: the admin web console's sessions (CSRF without the token,
//!   a planted session id, a tenant key logging in, expiry, a login flood),
//!   a page that never builds HTML from data, and the Keys, Routes and
//!   shadow-divergence views (tenant keys, CSRF, a flood of divergent
//!   requests under hostile model names, key material in answers).
//! - `runtime_keys`: `/admin/keys` and `palisade keys` (escalation by a
//!   non-admin key, telling revoked from unknown keys, old secrets after a
//!   rotation, creation floods, secrets leaking into logs, audit or lists).
//! - `key_budgets`: per-key budgets (a concurrent large-`max_tokens` flood
//!   on a nearly spent key, rotation and revoke-and-recreate as ways to a
//!   fresh budget, a tenant key raising its own budget, NaN from the CLI).
//! - `telemetry`: huge and malformed trace-context headers, attribute and
//!   verdict injection, prompt text in spans, and a flood against the span
//!   export queue.
//! - `responses`: `POST /v1/responses` (injections in its item shapes,
//!   nested and unknown items, input floods, upstream events the stream
//!   guard does not know carrying a key, an output-part flood, another
//!   tenant's response id read, deleted, cancelled or continued, and an
//!   upstream answer naming it; a key split across output parts; an
//!   injection one turn before a `previous_response_id` continuation; a
//!   stored response read back under another tier; `item_reference`).
//! - `config_reload`: reload storms (no refilled limits, no dropped
//!   requests in flight) and a half-written config file (never applied).
//! - `ops`: 500 made-up model names do not blow up metric label cardinality.
//! - `streams`: text smuggled in SSE lines no gate reads (comments, event
//!   names, ids, `retry:`), and Responses streams built to get a function
//!   call past the tool gate (a refused call repeated in
//!   `response.completed`, endless arguments, a flood of calls, text at a
//!   call's index, a call announced twice).
//! - `stream_fast_path`: the stream gate's raw-bytes path for common chat
//!   chunks (a key split between it and the general path, or carried where
//!   it does not read: extra members, a changed `model`, the `role`, an
//!   escaped or duplicated `content` key).
//! - `stream_context`: the stream guard reading only a short context of
//!   released text in front of what it holds (a key's name pushed far back
//!   by invisible marks or split off by a line break, a link whose text
//!   spans sentences, a canary split around where the context begins).
//! - `hostile_upstream`: a `tool_calls` key written with a `\u` escape
//!   (missed by a raw precheck), a redirect to another host (followed with
//!   the prompt and the backend's key), calls in shapes the tool gate did
//!   not read (chat's legacy `function_call`, Responses' `custom_tool_call`
//!   and other call items).
//! - `disguises`: an instruction spaced out, rotated by ROT13 without an
//!   override word, in look-alike letters, shouted or with invisible marks,
//!   in a tool output or a user message: judged like the plain one.
//! - `tenants`: one tenant against another through shared limits (a key
//!   named like another tenant's key spending its rate).
//!
//! Everything runs on loopback against real processes or an in-process
//! gateway with the built-in policy, and a scripted or hostile upstream.

mod bundle;
mod canary;
mod cascade;
mod config_reload;
mod console;
mod disguises;
mod extraction;
mod harness;
mod hedging;
mod hostile_upstream;
mod hunt;
mod input_gates;
mod key_budgets;
mod logs;
mod markers;
mod ops;
mod output_gate;
mod replay;
mod responses;
mod routes_reload;
mod routing;
mod runtime_keys;
mod saturation;
mod side_fields;
mod starvation;
mod stream_context;
mod stream_fast_path;
mod streams;
mod telemetry;
mod tenants;
mod token_counts;
mod token_ids;
mod tokens_keys;
mod watermark;
