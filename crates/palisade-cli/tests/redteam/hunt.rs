//! Threat hunting across accounts: an extractor spreads a PRADA-style
//! perturbation campaign over 12 keys in 4 accounts, with a new user agent
//! and client address on every request and jittered pacing, so that no
//! key's window fills and no client fingerprint repeats. The hunt must
//! still find it as one campaign (shared templates at the same time) and
//! never put the benign users sending beside it in it; the alert goes out
//! once; confirming it refuses its keys; only admin keys list or mark.

use std::time::{Duration, Instant};

use palisade_testkit::{ScriptedUpstream, WebhookRecorder};
use serde_json::{json, Value};

use crate::harness::{start, Client};

const ADMIN: &str = "sk-ops-hunt-0123456789";

fn hash(key: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()))
}

fn evil(i: usize) -> String {
    format!("sk-evil-{i}-0123456789")
}

fn user(i: usize) -> String {
    format!("sk-user-{i}-0123456789")
}

/// Forty distinct requests, five for each of eight benign users.
const PEOPLE: [&str; 40] = [
    "What should I pack for a weekend hiking trip in the Alps?",
    "Can you explain how compound interest works with an example?",
    "Write a birthday message for my grandmother who turns ninety.",
    "How do I fix a leaking kitchen faucet without calling a plumber?",
    "Suggest a vegetarian dinner I can cook in twenty minutes.",
    "Translate 'where is the train station' into Portuguese.",
    "What are the main causes of the French Revolution?",
    "Help me outline a presentation on renewable energy for school.",
    "Why does my sourdough starter smell like acetone?",
    "Draft a polite email asking my landlord to repair the heating.",
    "Summarize the plot of Pride and Prejudice in three sentences.",
    "Which houseplants survive in a dark north-facing room?",
    "How many cups of rice should I cook for six people?",
    "Give me a beginner running plan to reach five kilometres.",
    "What is the difference between a virus and a bacterium?",
    "Recommend three board games for a family with young kids.",
    "Explain recursion to a ten year old using a story.",
    "How do solar panels turn sunlight into electricity?",
    "Write a haiku about the first snow of winter.",
    "What questions should I ask at the end of a job interview?",
    "How long should I boil an egg for a runny yolk?",
    "List the planets of the solar system from smallest to largest.",
    "Is it safe to give my dog grapes as a treat?",
    "How can I improve my handwriting as an adult?",
    "Plan a two-day itinerary for a first visit to Kyoto.",
    "What does a Python list comprehension look like?",
    "Help me write a thank-you note to my child's teacher.",
    "Why is the sky blue during the day and red at sunset?",
    "What are good stretches after sitting at a desk all day?",
    "Explain what inflation means for my savings account.",
    "Suggest a name for a small bakery by the sea.",
    "How do I politely decline a wedding invitation?",
    "What is the capital of Australia and why is it not Sydney?",
    "Describe the rules of chess castling in plain words.",
    "How can I keep basil fresh for more than a few days?",
    "Write a short bedtime story about a brave little turtle.",
    "What is a good way to learn the guitar chords quickly?",
    "How do vaccines train the immune system?",
    "Give me tips for a first-time volunteer at a food bank.",
    "Which documents do I need to renew a passport?",
];

const WORDS: [&str; 32] = [
    "river", "market", "quantum", "violet", "ledger", "harbor", "cactus", "engine", "orbit",
    "salad", "kernel", "mirror", "glacier", "novel", "pixel", "tundra", "sonnet", "vector",
    "lantern", "canyon", "falcon", "meadow", "copper", "thistle", "beacon", "saddle", "quartz",
    "willow", "ember", "plaza", "summit", "delta",
];

async fn send(client: &Client, key: &str, text: &str, ua: &str, ip: &str) -> (u16, Value) {
    let resp = client
        .http
        .post(client.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("user-agent", ua)
        .header("x-forwarded-for", ip)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .expect("gateway answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn admin(
    client: &Client,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let req = match method {
        "GET" => client.http.get(client.url(path)),
        _ => client
            .http
            .post(client.url(path))
            .json(&body.unwrap_or(Value::Null)),
    };
    let resp = req.bearer_auth(key).send().await.expect("gateway answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_campaign_rotating_agents_and_jittering_is_still_one_campaign() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("extraction.db");
    let webhook = WebhookRecorder::start().await;
    let upstream = ScriptedUpstream::start().await;
    let mut keys = format!(
        "[[auth.keys]]\nname = \"ops\"\ntenant = \"ops\"\nsha256 = \"{}\"\nadmin = true\n",
        hash(ADMIN)
    );
    for i in 0..12 {
        keys.push_str(&format!(
            "[[auth.keys]]\nname = \"evil{i}\"\ntenant = \"acct{}\"\nsha256 = \"{}\"\n",
            i / 3,
            hash(&evil(i))
        ));
    }
    for i in 0..8 {
        keys.push_str(&format!(
            "[[auth.keys]]\nname = \"user{i}\"\ntenant = \"org{i}\"\nsha256 = \"{}\"\n",
            hash(&user(i))
        ));
    }
    // The test's client stands for a load balancer (loopback) that
    // forwards each simulated client's address.
    let gw = start(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n\
         [backends.main]\nbase_url = \"{}\"\n{keys}\
         [limits]\nalert_webhook_url = \"{}\"\n\
         [extraction]\nstore = \"sqlite:{}\"\n\
         [extraction.hunt]\ninterval_secs = 3600\nconfirmed_action = \"block\"\n",
        upstream.base_url(),
        webhook.url(),
        store.display()
    ))
    .await;
    let client = Client::new(gw);

    // The campaign: a seed every 8 queries, each query one word of it
    // swapped, fanned out over the 12 keys round-robin; a new agent and
    // address every request; 0-40 ms of jitter. People send beside it.
    let mut seed: Vec<&str> = Vec::new();
    let mut people = 0;
    for q in 0..240usize {
        if q % 8 == 0 {
            seed = (0..12)
                .map(|j| WORDS[(q * 7 + j * 5) % WORDS.len()])
                .collect();
        }
        let mut words = seed.clone();
        words[(q * 3) % 12] = WORDS[(q * 11) % WORDS.len()];
        let (status, body) = send(
            &client,
            &evil(q % 12),
            &words.join(" "),
            &format!("agent-{q}/{}", q * 31 % 97),
            &format!("10.{}.{}.9", q % 250, (q * 13) % 250),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        if q % 6 == 0 && people < 40 {
            let u = people % 8;
            // Each person their own browser and network (eight accounts
            // behind one /24 with one client, in lockstep, would be linked
            // by fingerprint and timing, and rightly).
            let (status, _) = send(
                &client,
                &user(u),
                PEOPLE[people],
                &format!("browser/{u}"),
                &format!("198.51.{u}.20"),
            )
            .await;
            assert_eq!(status, 200);
            people += 1;
        }
        tokio::time::sleep(Duration::from_millis((q as u64 * 17) % 40)).await;
    }

    // The worker writes in batches: poll the hunt until the rows are in.
    let until = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let (status, report) = admin(&client, ADMIN, "GET", "/admin/hunt?run=true", None).await;
        assert_eq!(status, 200, "{report}");
        let done = report["campaigns"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
            && report["keys"].as_u64() == Some(20);
        if done || Instant::now() > until {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let campaigns = report["campaigns"].as_array().expect("campaigns");
    assert_eq!(campaigns.len(), 1, "{report}");
    let c = &campaigns[0];
    let mut members: Vec<String> = c["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k.as_str().unwrap_or_default().to_owned())
        .collect();
    members.sort();
    let mut expected: Vec<String> = (0..12).map(|i| format!("acct{}/evil{i}", i / 3)).collect();
    expected.sort();
    assert_eq!(members, expected, "{report}");
    let kinds: Vec<&str> = c["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"template"), "{kinds:?}");
    assert!(
        !kinds.contains(&"fingerprint"),
        "rotating agents left no shared fingerprint: {kinds:?}"
    );
    assert_eq!(c["tenants"].as_array().map(Vec::len), Some(4));
    let id = c["id"].as_str().expect("id").to_owned();

    // One alert, and a second hunt sends none.
    let alerts = webhook.wait_for(1).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["category"], "hunt");
    assert_eq!(alerts[0]["campaign"]["id"], id.as_str());
    let (status, _) = admin(&client, ADMIN, "GET", "/admin/hunt?run=true", None).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(webhook.bodies().len(), 1, "deduplicated per campaign");

    // Only admins list or mark; bad marks and ids are refused cleanly.
    let (status, body) = admin(&client, &evil(0), "GET", "/admin/hunt", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("permission_denied"))
    );
    let path = format!("/admin/hunt/{id}");
    let (status, _) = admin(
        &client,
        &evil(0),
        "POST",
        &path,
        Some(json!({"mark": "benign"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = admin(&client, ADMIN, "POST", &path, Some(json!({"mark": "fine"}))).await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("mark"))
    );
    let (status, _) = admin(
        &client,
        ADMIN,
        "POST",
        "/admin/hunt/c-nope",
        Some(json!({"mark": "benign"})),
    )
    .await;
    assert_eq!(status, 404);

    // Confirmed: every key of the campaign is refused from its next
    // request (the floor is `block`); people are served.
    let (status, body) = admin(
        &client,
        ADMIN,
        "POST",
        &path,
        Some(json!({"mark": "confirmed"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for i in [0, 5, 11] {
        let resp = client
            .http
            .post(client.url("/v1/chat/completions"))
            .bearer_auth(evil(i))
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]}))
            .send()
            .await
            .expect("gateway answers");
        assert_eq!(resp.status().as_u16(), 429);
        assert!(resp.headers().get("retry-after").is_some());
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["code"], "extraction_blocked");
    }
    let (status, _) = send(
        &client,
        &user(0),
        "One more question about tea.",
        "browser/0",
        "198.51.0.20",
    )
    .await;
    assert_eq!(status, 200);

    // Benign after all: the floor lifts, and later hunts leave the keys out.
    let (status, _) = admin(
        &client,
        ADMIN,
        "POST",
        &path,
        Some(json!({"mark": "benign"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(&client, &evil(0), "hello again", "agent-x", "10.9.9.9").await;
    assert_eq!(status, 200);
    let (_, report) = admin(&client, ADMIN, "GET", "/admin/hunt?run=true", None).await;
    assert_eq!(report["benign_keys"], 12, "{report}");
    // (Their traffic is now the baseline, so what differs from it may be
    // found; the marked keys themselves never are.)
    for c in report["campaigns"].as_array().expect("campaigns") {
        let keys = c["keys"].as_array().expect("keys");
        assert!(
            keys.iter()
                .all(|k| !k.as_str().unwrap_or_default().contains("evil")),
            "{report}"
        );
    }
}
