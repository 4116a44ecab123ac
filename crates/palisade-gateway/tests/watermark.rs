//! Output watermarking through the real gateway, against a scripted
//! upstream on loopback: the upstream receives the tenant's green list as
//! `logit_bias` (per tenant, streamed or not) and never the client's own
//! map or its modifiers; merge and refuse modes; an unwatermarked route is
//! left alone; and `POST /v1/watermark/detect` finds the tenant whose key a
//! text carries, for admin keys only by default.

mod support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade_gateway::RunningGateway;
use palisade_testkit::ScriptedUpstream;
use palisade_watermark::{derive_key, period_of, GreenList};
use serde_json::{json, Value};
use sha2::Digest;

const MASTER: [u8; 32] = [0x42; 32];
const KEY_ACME: &str = "sk-wm-acme-0123456789abcdef";
const KEY_GLOBEX: &str = "sk-wm-globex-0123456789abcd";
const KEY_ADMIN: &str = "sk-wm-admin-0123456789abcde";
const VOCAB: u32 = 201;

/// A word-level `tokenizer.json`: `[UNK]` is id 0, `w0`..`w199` are 1..=200.
fn tokenizer_file() -> tempfile::NamedTempFile {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), json!(0));
    for i in 0..200 {
        vocab.insert(format!("w{i}"), json!(i + 1));
    }
    let doc = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(doc.to_string().as_bytes()).unwrap();
    f
}

fn keys() -> String {
    let hash = |k: &str| hex::encode(sha2::Sha256::digest(k.as_bytes()));
    format!(
        "[[auth.keys]]\nname = \"acme\"\ntenant = \"acme\"\nsha256 = \"{}\"\n\
         [[auth.keys]]\nname = \"globex\"\ntenant = \"globex\"\nsha256 = \"{}\"\n\
         [[auth.keys]]\nname = \"ops\"\ntenant = \"ops\"\nadmin = true\nsha256 = \"{}\"\n",
        hash(KEY_ACME),
        hash(KEY_GLOBEX),
        hash(KEY_ADMIN)
    )
}

struct Harness {
    upstream: ScriptedUpstream,
    gw: RunningGateway,
    http: reqwest::Client,
    _tokenizer: tempfile::NamedTempFile,
}

impl Harness {
    async fn new(watermark: &str) -> Self {
        let upstream = ScriptedUpstream::start().await;
        let tokenizer = tokenizer_file();
        let toml = format!(
            "{}[backends.main]\nbase_url = \"{}\"\n\
             [[routes]]\nmodel = \"wm\"\nbackend = \"main\"\ntokenizer = \"{}\"\n\
             [[routes]]\nmodel = \"plain\"\nbackend = \"main\"\n\
             [watermark]\nenabled = true\nmodels = [\"wm\"]\n{watermark}",
            keys(),
            upstream.base_url(),
            tokenizer.path().display()
        );
        let master = hex::encode(MASTER);
        let gw = support::gateway_with_env(&toml, move |k| {
            (k == "PALISADE_WATERMARK_KEY").then(|| master.clone())
        })
        .await;
        Self {
            upstream,
            gw,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            _tokenizer: tokenizer,
        }
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("http://{}{path}", self.gw.local_addr()))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn last_body(&self) -> Value {
        self.upstream.received().last().unwrap().body.clone()
    }
}

fn now_period() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    period_of(ms, 168 * 3_600_000).unwrap()
}

fn green(tenant: &str, period: u64) -> GreenList {
    GreenList::new(&derive_key(&MASTER, tenant, period), VOCAB, 0.25).unwrap()
}

/// The ids in a body's `logit_bias`, each checked to carry `delta`.
fn bias_ids(body: &Value, delta: f64) -> BTreeSet<u32> {
    let map = body["logit_bias"].as_object().expect("logit_bias is a map");
    map.iter()
        .map(|(k, v)| {
            assert_eq!(v.as_f64(), Some(delta), "{k}");
            k.parse().unwrap()
        })
        .collect()
}

fn chat(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hello"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn the_upstream_gets_the_tenants_green_list_and_never_the_clients_bias() {
    let h = Harness::new("").await;
    let (status, _) = h
        .post(
            "/v1/chat/completions",
            KEY_ACME,
            chat(
                "wm",
                json!({"logit_bias": {"3": -100}, "logit_bias_type": "tokens",
                       "extra_body": {"logit_bias": {"4": 50}, "top_k": 2}}),
            ),
        )
        .await;
    assert_eq!(status, 200);
    let body = h.last_body();
    let period = now_period();
    let acme = bias_ids(&body, 2.0);
    let expected: BTreeSet<u32> = green("acme", period).green_ids().collect();
    // A period boundary between the two reads is the only other outcome.
    let previous: BTreeSet<u32> = green("acme", period - 1).green_ids().collect();
    assert!(
        acme == expected || acme == previous,
        "not acme's green list"
    );
    assert_eq!(acme.len(), 50);
    assert!(body.get("logit_bias_type").is_none());
    assert_eq!(body["extra_body"], json!({"top_k": 2}));

    // Another tenant, another list; streamed requests carry it too.
    let (status, _) = h
        .post(
            "/v1/chat/completions",
            KEY_GLOBEX,
            chat("wm", json!({"stream": true})),
        )
        .await;
    assert_eq!(status, 200);
    let globex = bias_ids(&h.last_body(), 2.0);
    assert_eq!(globex.len(), 50);
    assert_ne!(acme, globex);

    // An unwatermarked model is forwarded with the client's own map.
    let (status, _) = h
        .post(
            "/v1/chat/completions",
            KEY_ACME,
            chat("plain", json!({"logit_bias": {"3": -100}})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(h.last_body()["logit_bias"], json!({"3": -100}));
}

#[tokio::test]
async fn merge_adds_the_clients_map_and_refuse_names_its_field() {
    let h = Harness::new("client_logit_bias = \"merge\"\n").await;
    let list = green("acme", now_period());
    let g = list.green_ids().next().unwrap();
    let r = (0..VOCAB).find(|&t| !list.is_green(t)).unwrap();
    let (status, _) = h
        .post(
            "/v1/chat/completions",
            KEY_ACME,
            chat(
                "wm",
                json!({"logit_bias": {g.to_string(): 1.5, r.to_string(): -100}}),
            ),
        )
        .await;
    assert_eq!(status, 200);
    let body = h.last_body();
    assert_eq!(body["logit_bias"][g.to_string()], json!(3.5));
    assert_eq!(body["logit_bias"][r.to_string()], json!(-100.0));

    let h = Harness::new("client_logit_bias = \"refuse\"\n").await;
    let before = h.upstream.received().len();
    let (status, err) = h
        .post(
            "/v1/chat/completions",
            KEY_ACME,
            chat("wm", json!({"extra_body": {"logit_bias": {"5": 5}}})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "watermark_logit_bias_refused");
    assert_eq!(err["error"]["param"], "extra_body.logit_bias");
    assert_eq!(h.upstream.received().len(), before, "nothing went upstream");
}

/// The audit records (newest first) whose reasons mention `needle`,
/// waiting (bounded) for the audit writer to flush `want` of them.
async fn audited(db: &std::path::Path, needle: &str, want: usize) -> Vec<Value> {
    let ledger = palisade_ledger::Ledger::open(
        &format!("sqlite:{}", db.display()),
        palisade_ledger::WriteOptions::default(),
    )
    .await
    .unwrap();
    let mut found = Vec::new();
    for _ in 0..100 {
        let rows = ledger
            .audit_tail(100, &palisade_ledger::AuditFilter::default())
            .await
            .unwrap();
        found = rows
            .iter()
            .map(|r| serde_json::from_str::<Value>(r).unwrap())
            .filter(|r| r["evidence"].to_string().contains(needle))
            .collect();
        if found.len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    found
}

#[tokio::test]
async fn every_refusal_strip_and_merge_of_the_clients_fields_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let audit = format!("[policy]\naudit_url = \"sqlite:{}\"\n", db.display());
    // Refused: the field is named in the audit record, nothing went upstream.
    let h = Harness::new(&format!("client_logit_bias = \"refuse\"\n{audit}")).await;
    let (status, _) = h
        .post(
            "/v1/chat/completions",
            KEY_ACME,
            chat("wm", json!({"extra_body": {"logit_bias": {"5": 5}}})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = h
        .post(
            "/v1/chat/completions",
            KEY_ACME,
            chat("wm", json!({"logprobs": true})),
        )
        .await;
    assert_eq!(status, 400);
    let refused = audited(&db, "watermark_", 2).await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    for r in &refused {
        assert_eq!(r["tier"], "watermark");
        assert_eq!(r["action"], "block");
        assert_eq!(r["tenant"], "acme");
        assert_eq!(r["route"], "wm");
    }
    let reasons: Vec<Value> = refused
        .iter()
        .map(|r| r["evidence"]["detector_reasons"].clone())
        .collect();
    assert!(
        reasons.contains(&json!([
            "watermark_logit_bias_refused",
            "param:extra_body.logit_bias"
        ])),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r[0] == "watermark_logprobs_refused"),
        "{reasons:?}"
    );
    drop(h);

    // Stripped (the default): served, and the strip is on record.
    let db2 = dir.path().join("audit2.db");
    let h = Harness::new(&format!(
        "[policy]\naudit_url = \"sqlite:{}\"\n",
        db2.display()
    ))
    .await;
    let (status, _) = h
        .post(
            "/v1/chat/completions",
            KEY_GLOBEX,
            chat("wm", json!({"logit_bias": {"3": -100}})),
        )
        .await;
    assert_eq!(status, 200);
    let stripped = audited(&db2, "watermark_client_bias:strip", 1).await;
    assert_eq!(stripped.len(), 1, "{stripped:?}");
    assert_eq!(stripped[0]["action"], "redact");
    assert_eq!(stripped[0]["tenant"], "globex");
    assert_eq!(
        stripped[0]["evidence"]["detector_reasons"],
        json!(["watermark_client_bias:strip", "param:logit_bias"])
    );
}

/// A text of `n` distinct words, all green under `list` when `green`.
fn text_of(list: &GreenList, green: bool, n: usize) -> String {
    (1..VOCAB)
        .filter(|&t| list.is_green(t) == green)
        .take(n)
        .map(|t| format!("w{}", t - 1))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn detect_finds_the_tenant_for_admins_and_refuses_tenant_keys_by_default() {
    let h = Harness::new("").await;
    let period = now_period();
    let marked = text_of(&green("acme", period), true, 40);
    let (status, v) = h
        .post(
            "/v1/watermark/detect",
            KEY_ADMIN,
            json!({"model": "wm", "text": marked, "tenant": "acme"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["detected"], true);
    assert_eq!(v["tokens"], 40);
    assert_eq!(v["periods"].as_array().unwrap().len(), 9);
    assert!(v["periods"][0]["z"].as_f64().unwrap() > 6.0);
    assert!(v["periods"][0]["period"].as_u64().unwrap() >= period);

    // The same text is not globex's, and plain text is nobody's.
    let (_, v) = h
        .post(
            "/v1/watermark/detect",
            KEY_ADMIN,
            json!({"model": "wm", "text": marked, "tenant": "globex"}),
        )
        .await;
    assert_eq!(v["detected"], false);
    let red = text_of(&green("acme", period), false, 40);
    let (_, v) = h
        .post(
            "/v1/watermark/detect",
            KEY_ADMIN,
            json!({"model": "wm", "text": red, "tenant": "acme"}),
        )
        .await;
    assert_eq!(v["detected"], false);

    // Tenant keys may not ask by default; an unwatermarked model is 404.
    let (status, v) = h
        .post(
            "/v1/watermark/detect",
            KEY_ACME,
            json!({"model": "wm", "text": marked}),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(v["error"]["code"], "watermark_detect_forbidden");
    let (status, _) = h
        .post(
            "/v1/watermark/detect",
            KEY_ADMIN,
            json!({"model": "plain", "text": marked}),
        )
        .await;
    assert_eq!(status, 404);
}
