//! One policy decision on the request path, under the built-in policy plus a few tier
//! assignments: nothing triggers (the common case), one rule triggers (one small `Vec`),
//! and several rules trigger at the output gate. Target: well under 1 µs.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use palisade_policy::{Evidence, Gate, Snapshot, Subject};

/// The built-in policy with three assignments in front, so tier selection does real glob work.
fn policy() -> Snapshot {
    let text = palisade_policy::BUILTIN_TOML.replace(
        "[links]",
        r#"
[[assign]]
tenant = "bank-*"
tier = "high"
[[assign]]
route = "internal-*"
model = "llama*"
tier = "high"
[[assign]]
tenant = "acme"
model = "gpt-4o*"
tier = "high"

[links]"#,
    );
    match Snapshot::from_toml(&text) {
        Ok(s) => s,
        Err(e) => panic!("bench policy: {e}"),
    }
}

fn bench(c: &mut Criterion) {
    let p = policy();
    let subject = Subject {
        tenant: "tenant-42",
        route: "chat",
        model: "gpt-4o-mini",
    };
    let clean = Evidence {
        injection_score: 0.12,
        ..Evidence::default()
    };
    let attack = Evidence {
        injection_score: 0.99,
        ..Evidence::default()
    };
    let mut output = Evidence {
        canary_leaked: true,
        disallowed_links: 2,
        hidden_markup: true,
        ..Evidence::default()
    };
    output.secrets.insert("aws-access-token".to_owned(), 1);
    output.pii.insert("email".to_owned(), 3);

    let mut g = c.benchmark_group("decide");
    g.bench_function("input_clean", |b| {
        b.iter(|| p.decide(Gate::Input, black_box(&subject), black_box(&clean)))
    });
    g.bench_function("input_block", |b| {
        b.iter(|| p.decide(Gate::Input, black_box(&subject), black_box(&attack)))
    });
    g.bench_function("output_many", |b| {
        b.iter(|| p.decide(Gate::Output, black_box(&subject), black_box(&output)))
    });
    g.finish();
}

/// One tool call judged: the arguments checked against the catalog's schema, then the
/// decision. Both run once per emitted call on the response path.
fn bench_tools(c: &mut Criterion) {
    let p = match Snapshot::from_toml(
        r#"
default_tier = "agent"
[tools.send_email]
egress = true
schema = { type = "object", properties = { to = { type = "string" }, subject = { type = "string" }, body = { type = "string" }, cc = { type = "array", items = { type = "string" } } }, required = ["to", "body"], additionalProperties = false }
[tiers.agent.tool]
allow = ["search_docs", "send_email"]
max_calls_per_response = 8
max_rounds = 16
"#,
    ) {
        Ok(s) => s,
        Err(e) => panic!("bench tool policy: {e}"),
    };
    let subject = Subject {
        tenant: "acme",
        route: "agent",
        model: "gpt-4o",
    };
    let args = r#"{"to":"bob@example.com","subject":"Q3","body":"Hi Bob, revenue grew 4% quarter on quarter.","cc":["carol@example.com"]}"#;
    let evidence = Evidence {
        tool: Some(palisade_policy::ToolEvidence {
            name: "send_email".into(),
            call_id: "call_1".into(),
            args_json: true,
            untrusted_context: true,
            round: 2,
            ..Default::default()
        }),
        ..Evidence::default()
    };
    let mut g = c.benchmark_group("tool");
    g.bench_function("check_arguments_schema", |b| {
        b.iter(|| {
            p.tools()
                .check_arguments("send_email", black_box(args), None)
        })
    });
    g.bench_function("decide_tool", |b| {
        b.iter(|| p.decide_tool(black_box(&subject), black_box(&evidence)))
    });
    g.finish();
}

criterion_group!(benches, bench, bench_tools);
criterion_main!(benches);
