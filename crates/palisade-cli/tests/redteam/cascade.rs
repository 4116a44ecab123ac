//! Cascades under attack (issue #19): a client provoking escalation after
//! escalation to spend the strong model on the tenant's budget, and a
//! hostile cheap upstream whose huge or malformed answer tries to crash the
//! cascade or slip past the output gate.

use palisade_testkit::{HostileUpstream, RawResponse, ScriptedUpstream};
use serde_json::json;

use crate::harness::{start, Client, AWS_KEY};

fn cascade_config(cheap: &str, strong: &str, extra: &str) -> String {
    format!(
        r#"
        {extra}
        [backends.cheap]
        base_url = "{cheap}"
        [backends.strong]
        base_url = "{strong}"
        [[routes]]
        model = "smart"
        backend = "strong"
        cascade = {{ first = "small", escalate_on = ["refusal", "json_invalid"] }}
        [[routes]]
        model = "small"
        backend = "cheap"
        "#
    )
}

fn completion(content: &str) -> String {
    json!({"id": "x", "object": "chat.completion", "created": 0, "model": "small",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}})
    .to_string()
}

fn ask() -> serde_json::Value {
    json!({"model": "smart", "max_tokens": 40,
           "messages": [{"role": "user", "content": "What is the capital of France?"}]})
}

/// Sends `n` cascaded requests; counts those served (200) and those refused
/// by the token budget (429 `tokens_exhausted`). Any other answer fails
/// the test: a budget must refuse cleanly, never crash or relay an error.
async fn served_and_refused(client: &Client, n: usize) -> (u64, u64) {
    let (mut served, mut refused) = (0u64, 0u64);
    for _ in 0..n {
        let (status, body) = client.chat(&ask()).await;
        match status {
            200 => served += 1,
            429 => {
                assert_eq!(body["error"]["code"], "tokens_exhausted", "{body}");
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    (served, refused)
}

/// The cheap model refuses everything, so every request escalates: the
/// escalation takes its own reservation, and once the tenant's token budget
/// cannot hold it the escalation is refused with the budget error — the
/// strong model is never called on credit.
#[tokio::test]
async fn provoked_escalations_cannot_spend_past_the_token_budget() {
    let cheap = HostileUpstream::start(RawResponse::json(completion(
        "I'm sorry, but I can't help with that.",
    )))
    .await;
    let strong = ScriptedUpstream::start().await;
    let budget = 400u64;
    let client = Client::new(
        start(&cascade_config(
            &cheap.base_url(),
            &strong.base_url(),
            &format!("[limits]\ntokens_per_minute = {budget}"),
        ))
        .await,
    );
    let (served, refused) = served_and_refused(&client, 12).await;
    assert!(refused >= 1, "the budget ran out: {served} served");
    assert!(served >= 1, "the budget held some escalations");
    let cheap_calls = cheap.received().len() as u64;
    let strong_calls = strong.received().len() as u64;
    assert_eq!(
        strong_calls, served,
        "every strong call was a served request"
    );
    // Each call is reserved in full (prompt estimate + 40) before it is
    // sent, so what was sent fits the budget (plus the refill of the
    // seconds the test ran, 400/min: a few tokens).
    let per_call_max = 40 + 64;
    assert!(
        (cheap_calls + strong_calls) * 20 <= budget + 40,
        "completion tokens spent past the budget: {cheap_calls} cheap, {strong_calls} strong"
    );
    assert!(
        strong_calls * per_call_max <= budget * 2,
        "escalations beyond what the budget could reserve"
    );
}

/// A hostile cheap upstream: an answer carrying a secret (no gate fires,
/// so it stands) still passes the output gate; a truncated body and a
/// large non-JSON one escalate instead of crashing or reaching the client.
#[tokio::test]
async fn a_hostile_cheap_answer_cannot_crash_the_cascade_or_pass_the_output_gate() {
    let cheap = HostileUpstream::start(RawResponse::json(completion(&format!(
        "Paris. Also, the deploy key is {AWS_KEY}."
    ))))
    .await;
    let strong = ScriptedUpstream::start().await;
    let client =
        Client::new(start(&cascade_config(&cheap.base_url(), &strong.base_url(), "")).await);
    let (status, body) = client.chat(&ask()).await;
    assert_eq!(status, 200, "{body}");
    let text = body.to_string();
    assert!(text.contains("Paris"), "{text}");
    assert!(
        !text.contains(AWS_KEY),
        "the cheap answer skipped the output gate: {text}"
    );
    assert!(
        strong.received().is_empty(),
        "a standing answer needs no escalation"
    );

    for raw in [
        completion("Paris.")[..40].to_owned(),
        format!("{{\"choices\": \"{}\"", "A".repeat(4 * 1024 * 1024)),
    ] {
        let before = strong.received().len();
        cheap.script(RawResponse::json(raw));
        let (status, body) = client.chat(&ask()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(strong.received().len(), before + 1, "escalated");
        assert!(
            !body.to_string().contains("AAAA"),
            "nothing of the cheap body"
        );
    }
}

/// With a judge that always says "yes", each request makes three calls
/// (cheap, judge, strong); every one is reserved before it is sent, so the
/// budget runs out into 429s instead of calls on credit.
#[tokio::test]
async fn a_judge_that_always_escalates_cannot_spend_past_the_token_budget() {
    let cheap = HostileUpstream::start(RawResponse::json(completion("Lyon."))).await;
    let judge = HostileUpstream::start(RawResponse::json(completion("yes"))).await;
    let strong = ScriptedUpstream::start().await;
    let budget = 600u64;
    let client = Client::new(
        start(&format!(
            r#"
            [limits]
            tokens_per_minute = {budget}
            [backends.cheap]
            base_url = "{}"
            [backends.strong]
            base_url = "{}"
            [backends.judge]
            base_url = "{}"
            [[routes]]
            model = "smart"
            backend = "strong"
            cascade = {{ first = "small", escalate_on = ["judge"], judge = {{ model = "referee", prompt = "Say yes if wrong." }} }}
            [[routes]]
            model = "small"
            backend = "cheap"
            [[routes]]
            model = "referee"
            backend = "judge"
            "#,
            cheap.base_url(),
            strong.base_url(),
            judge.base_url()
        ))
        .await,
    );
    let (served, refused) = served_and_refused(&client, 12).await;
    assert!(
        refused >= 1 && served >= 1,
        "{served} served, {refused} refused"
    );
    let calls = (cheap.received().len() + judge.received().len() + strong.received().len()) as u64;
    assert_eq!(strong.received().len() as u64, served);
    // 20 completion tokens per cheap and judge call (the scripted strong
    // reports fewer): what was spent fits the budget plus the refill of the
    // seconds the test ran.
    assert!(calls * 20 <= budget + 60, "{calls} calls");
}

/// The finding this closes: the cascade's cheap stage was sent like the
/// route's own request. The cheap model's answer was judged under the
/// route's (laxer) tier although the policy assigns the cheap model a
/// stricter one, and the cheap model's own rate was never charged: a
/// cascade route was a way around both. Now the cheap stage is taken only
/// on the terms it would have if the client named it; otherwise the
/// route's own model answers.
#[tokio::test]
async fn the_cheap_stage_keeps_its_own_tier_and_rate() {
    let dir = tempfile::tempdir().unwrap();
    let policy = crate::harness::policy_file(&dir, &crate::harness::stricter_tier_for("small"));
    let cheap = HostileUpstream::start(RawResponse::json(completion(&format!(
        "Sure, the deploy key is {AWS_KEY}"
    ))))
    .await;
    let strong = ScriptedUpstream::start().await;
    let client = Client::new(
        start(&cascade_config(
            &cheap.base_url(),
            &strong.base_url(),
            &policy,
        ))
        .await,
    );
    let (status, body) = client.chat(&ask()).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains(AWS_KEY), "{body}");
    assert_eq!(
        cheap.received().len(),
        0,
        "the stricter tier's model is not a cheap stage here"
    );
    assert_eq!(strong.received().len(), 1);

    // Same tier, the cheap model's own rate: one request a minute.
    let cheap = HostileUpstream::start(RawResponse::json(completion("Paris."))).await;
    let strong = ScriptedUpstream::start().await;
    let client = Client::new(
        start(&cascade_config(
            &cheap.base_url(),
            &strong.base_url(),
            "[limits.models.small]\nrequests_per_minute = 1\nburst = 1",
        ))
        .await,
    );
    for _ in 0..3 {
        let (status, body) = client.chat(&ask()).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        cheap.received().len(),
        1,
        "the cheap model's rate holds through the cascade"
    );
    assert_eq!(
        strong.received().len(),
        2,
        "the rest went to the route's own model"
    );
}
