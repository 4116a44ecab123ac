//! **Budget**: token accounting (the prompt estimate and completion
//! allowance reserved against the tenant's token budgets, reconciled when the
//! response ends), the backend's downstream queue, and the ledger row.
//!
//! Must not: hold limit logic; [`crate::limits::admission`] and
//! [`crate::limits::scheduler`] decide, this phase asks them.

use std::time::Instant;

use palisade_openai::request::{Endpoint, RequestBody};
use palisade_openai::ApiError;

use crate::context::RequestCtx;
use crate::http::auth::Principal;
use crate::limits::accounting::{LedgerRow, TokenAccounting};
use crate::routing::Route;
use crate::state::GatewayState;
use crate::upstream::Backend;

/// Reserves the request's tokens when the tenant has a token budget or the
/// ledger is on. `Ok(true)`: the body was rewritten (`max_tokens` injected,
/// stream usage asked for). `Err` is 429 (budget spent, with `Retry-After`)
/// or 503 when the budget store is unavailable in `deny` mode.
pub(crate) async fn reserve_tokens(
    state: &GatewayState,
    principal: &Principal,
    route: &Route,
    endpoint: Endpoint,
    request: &mut RequestBody,
    body_bytes: usize,
    ctx: &mut RequestCtx,
) -> Result<bool, ApiError> {
    let mut rewritten = false;
    // Token accounting: reserve the estimate now (when the tenant has a
    // budget), count usage as the response passes, reconcile and ledger later.
    let key_budget = state.admission.key_budget(principal);
    let budget = state.admission.has_token_budget(&principal.tenant) || key_budget.is_some();
    let ledger = state.ledger.get();
    if budget || ledger.is_some() {
        state
            .admission
            .prepare_spend(&principal.tenant, ledger)
            .await;
        if let Some(key_budget) = &key_budget {
            state
                .admission
                .key_budgets()
                .prepare(principal, key_budget, ledger)
                .await;
        }
        let tokenizer = route
            .tokenizer
            .clone()
            .unwrap_or_else(|| palisade_openai::usage::Tokenizer::for_model(request.model()));
        let prompt_estimate =
            estimate_prompt(state, request.fields_mut(), tokenizer, body_bytes).await?;
        let max_completion = if endpoint == Endpoint::Embeddings {
            0
        } else {
            if state.inject_max_tokens {
                rewritten |= request.set_max_tokens_if_absent(state.default_max_tokens);
            }
            // Every choice may use the whole limit: `n: 8` reserves eight.
            palisade_openai::usage::requested_max_tokens(request.fields())
                .unwrap_or(state.default_max_tokens)
                .saturating_mul(palisade_openai::usage::requested_choices(request.fields()))
        };
        let (reservation, info) = state
            .admission
            .reserve_tokens(
                principal,
                &ctx.internal_id,
                &ctx.model_label,
                prompt_estimate,
                max_completion,
            )
            .await
            .inspect_err(|e| {
                state.admission.offend(principal, 1);
                if e.code == palisade_openai::ErrorCode::KeyBudgetExceeded {
                    audit_key_budget_refusal(state, principal, ctx);
                }
            })?;
        ctx.limit_headers.tokens = info;
        let strip_usage_chunk = request.is_stream() && request.ensure_stream_usage();
        rewritten |= request.is_stream();
        ctx.tokens = Some(TokenAccounting::new(
            reservation,
            prompt_estimate,
            prompt_estimate + max_completion,
            strip_usage_chunk,
        ));
    }
    Ok(rewritten)
}

/// Audits a request refused for its key's budget (gate `limits`, action
/// `refuse`, reason code `key_budget_exceeded`): an operator looking for why
/// a key stopped working finds it in the audit tail, not only in metrics.
fn audit_key_budget_refusal(state: &GatewayState, principal: &Principal, ctx: &RequestCtx) {
    let mut details = serde_json::Map::new();
    details.insert(
        "key_id".into(),
        serde_json::json!(principal.key_id.as_deref()),
    );
    state.gates.audit.write_decision(
        state.gates.policy.peek().version().to_string(),
        // The gateway's id, as the gates' records: the client's
        // `x-request-id` could name another request's records.
        &ctx.internal_id,
        &principal.tenant,
        &principal.key_name,
        "",
        &ctx.model_label,
        ("limits", "refuse", "key_budget_exceeded"),
        details,
    );
}

/// Waits (fairly across tenants) for a slot in the backend's downstream
/// budget, then opens the request's ledger row. `Err` is 503 `overloaded`
/// when no slot frees up before the deadline.
pub(crate) async fn queue_and_open_row(
    state: &GatewayState,
    principal: &Principal,
    backend: &Backend,
    endpoint: Endpoint,
    deadline: Instant,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let ledger = state.ledger.get();
    // The backend's downstream budget: wait (fairly) for a slot.
    if let Some(scheduler) = &backend.scheduler {
        let cost = ctx.tokens.as_ref().map_or(1, TokenAccounting::reserved);
        ctx._backend_slot = Some(
            scheduler
                .acquire(&principal.tenant, principal.priority_class, cost, deadline)
                .await?,
        );
    }

    if let Some(ledger) = ledger {
        let mut row = LedgerRow::new(
            ledger.clone(),
            state.prices.clone(),
            &ctx.internal_id,
            &principal.key_name,
            &backend.name,
            endpoint.label(),
        );
        row.tool_loop = ctx
            .gates
            .as_ref()
            .and_then(|g| g.tools.as_ref())
            .is_some_and(crate::gates::tools::ToolPlan::in_loop);
        ctx.ledger = Some(row);
    }
    Ok(())
}

/// The prompt estimate for token accounting. Bounded (the tokenizer sees at
/// most 64 KiB), and on the CPU pool for a large prompt.
async fn estimate_prompt(
    state: &GatewayState,
    fields: &mut serde_json::Map<String, serde_json::Value>,
    tokenizer: palisade_openai::usage::Tokenizer,
    body_bytes: usize,
) -> Result<u64, ApiError> {
    let owned = std::mem::take(fields);
    let (estimate, owned) = state
        .cpu
        .run_or_inline(body_bytes <= crate::cpu::INLINE_BYTES, move || {
            let n = palisade_openai::usage::estimate_prompt_tokens_with(&owned, &tokenizer);
            (n, owned)
        })
        .await?;
    *fields = owned;
    Ok(estimate)
}
