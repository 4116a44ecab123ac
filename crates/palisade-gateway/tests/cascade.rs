//! Cascades over real HTTP: a cheap and a strong fake deployment on
//! loopback (testkit's `Deployment`); the cheap one refuses, returns broken
//! JSON, low log-probabilities or an unreadable body, and the strong one
//! answers. Gateway start-up and record reading: `support`.

mod support;

use palisade_testkit::{Deployment as Fake, DeploymentMode as Mode};
use serde_json::{json, Value};
use support::records::{audit_records, ledger_rows};
use support::{gateway, Reply, CHAT};

fn says(content: &str, logprob: f64) -> Mode {
    Mode::Answer {
        content: content.to_owned(),
        logprob,
        raw: None,
    }
}

async fn post(gw: &palisade_gateway::RunningGateway, body: Value) -> Reply {
    support::post(gw, CHAT, body, None).await
}

fn ask(extra: Value) -> Value {
    let mut body = json!({"model": "smart", "messages": [{"role": "user", "content": "What is the capital of France?"}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

fn config(cheap: &Fake, strong: &Fake, gates: &str, extra: &str) -> String {
    format!(
        r#"
        {extra}
        [backends.cheap]
        base_url = "{}"
        [backends.strong]
        base_url = "{}"
        [[routes]]
        model = "smart"
        backend = "strong"
        cascade = {{ first = "small", escalate_on = {gates} }}
        [[routes]]
        model = "small"
        backend = "cheap"
        "#,
        cheap.base_url(),
        strong.base_url()
    )
}

#[tokio::test]
async fn a_good_cheap_answer_stands_and_a_refusal_escalates_with_both_calls_in_the_ledger() {
    let cheap = Fake::start("cheap", says("Paris.", -0.1)).await;
    let strong = Fake::start("strong", says("The capital of France is Paris.", -0.1)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let gw = gateway(&config(
        &cheap,
        &strong,
        r#"["refusal", "json_invalid"]"#,
        &format!(
            "[ledger]\nurl = \"sqlite:{}\"\n[policy]\naudit_url = \"sqlite:{}\"",
            db.display(),
            dir.path().join("audit.db").display()
        ),
    ))
    .await;
    let r = post(&gw, ask(json!({}))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.cascade.as_deref(), Some("first"));
    assert_eq!(r.backend.as_deref(), Some("cheap"));
    assert_eq!(r.content(), "Paris.");
    assert_eq!(strong.hits(), 0, "the strong model was not asked");
    let first_id = r.ledger_id.clone().expect("ledger id");
    assert_eq!(
        cheap.received()[0]["model"],
        "small",
        "the cheap model's name"
    );

    cheap.set(says("I'm sorry, but I can't help with that.", -0.1));
    let r = post(&gw, ask(json!({}))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.cascade.as_deref(), Some("escalated"));
    assert_eq!(r.backend.as_deref(), Some("strong"));
    assert_eq!(r.content(), "The capital of France is Paris.");
    assert_eq!(strong.received()[0]["model"], "smart");
    // Both calls are in the ledger: the escalation under the response's
    // id (`<id>.escalated`), the cheap call under `<id>`, each with its
    // own usage.
    let id = r.ledger_id.expect("ledger id");
    let cheap_id = id.strip_suffix(".escalated").expect("the escalation's id");
    let rows = ledger_rows(&db, |rows| rows.len() >= 3).await;
    let row = |id: &str| rows.iter().find(|r| r["request_id"] == id).cloned();
    let strong_row = row(&id).unwrap_or_else(|| panic!("{id} in {rows:?}"));
    let cheap_row = row(cheap_id).expect("the cheap call's row");
    let kept = row(&first_id).expect("the kept cheap answer's row");
    assert_eq!(
        (kept["model"].as_str(), kept["backend"].as_str()),
        (Some("small"), Some("cheap")),
        "priced as the model that answered"
    );
    assert_eq!(strong_row["backend"], "strong");
    assert_eq!(cheap_row["backend"], "cheap");
    assert_eq!(cheap_row["model"], "small");
    assert_eq!(cheap_row["completion_tokens"], 20);
    assert_eq!(strong_row["completion_tokens"], 20);
    // The escalation is audited with its reason.
    let found = audit_records(
        &dir.path().join("audit.db"),
        50,
        |r| r["gate"] == "routing" && r["action"] == "cascade_escalated",
        |found| !found.is_empty(),
    )
    .await;
    let record = found
        .into_iter()
        .next()
        .expect("a cascade_escalated record")
        .to_string();
    assert!(
        record.contains("refusal") && record.contains("cheap"),
        "{record}"
    );
}

#[tokio::test]
async fn broken_json_and_unreadable_answers_escalate() {
    let cheap = Fake::start("cheap", says("{\"city\": \"Par", -0.1)).await;
    let strong = Fake::start("strong", says("{\"city\": \"Paris\"}", -0.1)).await;
    let gw = gateway(&config(&cheap, &strong, r#"["json_invalid"]"#, "")).await;
    let r = post(
        &gw,
        ask(json!({"response_format": {"type": "json_object"}})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.cascade.as_deref(), Some("escalated"));
    assert_eq!(r.content(), "{\"city\": \"Paris\"}");
    // Without response_format the same text is fine.
    let r = post(&gw, ask(json!({}))).await;
    assert_eq!(r.cascade.as_deref(), Some("first"));
    // A body that is not a completion at all escalates, whatever the gates.
    cheap.set(Mode::Answer {
        content: String::new(),
        logprob: 0.0,
        raw: Some("<html>oops</html>".to_owned()),
    });
    let r = post(&gw, ask(json!({}))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.cascade.as_deref(), Some("escalated"));
    assert_eq!(strong.hits(), 2);
}

#[tokio::test]
async fn low_confidence_asks_for_logprobs_escalates_below_the_threshold_and_hides_them() {
    let cheap = Fake::start("cheap", says("Paris is the capital", -0.2)).await;
    let strong = Fake::start("strong", says("Paris.", -0.1)).await;
    let gw = gateway(&config(&cheap, &strong, r#"["low_confidence"]"#, "")).await;
    let r = post(&gw, ask(json!({}))).await;
    assert_eq!(r.cascade.as_deref(), Some("first"));
    assert_eq!(
        cheap.received()[0]["logprobs"],
        true,
        "the gateway asked for them"
    );
    assert!(
        r.body["choices"][0].get("logprobs").is_none(),
        "the client did not ask: {:?}",
        r.body
    );
    cheap.set(says("Paris is the capital", -2.5));
    let r = post(&gw, ask(json!({}))).await;
    assert_eq!(r.cascade.as_deref(), Some("escalated"));
    assert_eq!(r.content(), "Paris.");
}

#[tokio::test]
async fn streamed_requests_go_straight_to_the_routes_own_model() {
    let cheap = Fake::start("cheap", says("Paris.", -0.1)).await;
    let strong = Fake::start("strong", says("Paris.", -0.1)).await;
    let gw = gateway(&config(&cheap, &strong, r#"["refusal"]"#, "")).await;
    let r = post(&gw, ask(json!({"stream": true}))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.cascade, None);
    assert_eq!((cheap.hits(), strong.hits()), (0, 1));
}

/// `cascade` reloads with the routes: a reload that adds it cascades the
/// next request, one that removes it sends straight to the route's model.
#[tokio::test]
async fn a_reload_turns_the_cascade_on_and_off() {
    let cheap = Fake::start("cheap", says("Paris.", -0.1)).await;
    let strong = Fake::start("strong", says("Paris, France.", -0.1)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.toml");
    let write = |gates: Option<&str>| {
        let mut text = config(
            &cheap,
            &strong,
            gates.unwrap_or("[]"),
            "[reload]\nconfig_poll_ms = 0",
        );
        if gates.is_none() {
            text = text.replace("cascade = { first = \"small\", escalate_on = [] }", "");
        }
        std::fs::write(&path, text).unwrap();
    };
    write(None);
    let gw = support::reloadable(&path).await;
    let reload = || async {
        let (status, text) = support::reload(&gw).await;
        assert_eq!(status, 200, "{text}");
    };
    let r = post(&gw, ask(json!({}))).await;
    assert_eq!(
        (r.cascade.as_deref(), r.backend.as_deref()),
        (None, Some("strong"))
    );
    write(Some(r#"["refusal"]"#));
    reload().await;
    let r = post(&gw, ask(json!({}))).await;
    assert_eq!(
        (r.cascade.as_deref(), r.backend.as_deref()),
        (Some("first"), Some("cheap"))
    );
    write(None);
    reload().await;
    let r = post(&gw, ask(json!({}))).await;
    assert_eq!(
        (r.cascade.as_deref(), r.backend.as_deref()),
        (None, Some("strong"))
    );
    assert_eq!((cheap.hits(), strong.hits()), (1, 2));
}

/// An operator's judge route: shown the question and the cheap answer
/// under its instructions; "yes" escalates, "no" keeps the cheap answer;
/// its call has its own ledger row and its answer never reaches the client.
#[tokio::test]
async fn a_judge_route_decides_and_its_call_is_accounted() {
    let cheap = Fake::start("cheap", says("Lyon.", -0.1)).await;
    let strong = Fake::start("strong", says("Paris.", -0.1)).await;
    let judge = Fake::start("judge", says("no", -0.1)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let gw = gateway(&format!(
        r#"
        [ledger]
        url = "sqlite:{}"
        [backends.cheap]
        base_url = "{}"
        [backends.strong]
        base_url = "{}"
        [backends.judge]
        base_url = "{}"
        [[routes]]
        model = "smart"
        backend = "strong"
        cascade = {{ first = "small", escalate_on = ["refusal", "judge"], judge = {{ model = "referee", prompt = "Say yes if the answer is wrong, else no." }} }}
        [[routes]]
        model = "small"
        backend = "cheap"
        [[routes]]
        model = "referee"
        backend = "judge"
        "#,
        db.display(),
        cheap.base_url(),
        strong.base_url(),
        judge.base_url()
    ))
    .await;
    let r = post(&gw, ask(json!({}))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.cascade.as_deref(), Some("first"), "the judge said no");
    assert_eq!(r.content(), "Lyon.");
    assert_eq!(strong.hits(), 0);
    let seen = judge.received()[0].to_string();
    assert!(
        seen.contains("Say yes if the answer is wrong")
            && seen.contains("capital of France")
            && seen.contains("Lyon."),
        "{seen}"
    );
    assert_eq!(judge.received()[0]["model"], "referee");

    judge.set(says("Yes", -0.1));
    let r = post(&gw, ask(json!({}))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.cascade.as_deref(), Some("escalated"));
    assert_eq!(r.content(), "Paris.", "the judge's own answer never shows");
    let id = r.ledger_id.expect("ledger id");
    let base = id
        .strip_suffix(".escalated")
        .expect("escalation id")
        .to_owned();
    let rows = ledger_rows(&db, |rows| rows.len() >= 5).await;
    let model_of = |id: &str| {
        rows.iter()
            .find(|r| r["request_id"] == id)
            .map(|r| r["model"].as_str().unwrap_or("").to_owned())
    };
    // The second request: cheap, judge, escalation; each its own row.
    assert_eq!(model_of(&base).as_deref(), Some("small"), "{rows:?}");
    assert_eq!(
        model_of(&format!("{base}.judge")).as_deref(),
        Some("referee")
    );
    assert_eq!(model_of(&id).as_deref(), Some("smart"));
    assert_eq!(rows.len(), 5, "2 + 3 rows: {rows:?}");
}
