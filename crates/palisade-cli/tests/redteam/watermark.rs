//! Output watermarking: a client that wants to learn its green list (to
//! scrub its outputs before distilling a model from them, or to forge
//! another tenant's mark) or to switch the watermark off.
//!
//! - through the detect endpoint: testing text against another tenant's
//!   key, reading scores that say which tokens are green, or asking often
//!   enough to learn the list one token at a time;
//! - through its own `logit_bias`: any shape that reaches the upstream
//!   (escaped or duplicate keys, `extra_body`-style containers,
//!   `logit_bias_type: "tokens"`, which makes llama-cpp-python read the
//!   gateway's ids as text), or a merged map large enough to push back;
//! - through log-probabilities, which reveal the list in a few queries.

use std::io::Write as _;

use palisade_config::{Config, Sources};
use palisade_gateway::{Gateway, RunningGateway};
use palisade_testkit::ScriptedUpstream;
use serde_json::{json, Value};
use sha2::Digest;

const ACME: &str = "sk-rt-wm-acme-0123456789abcd";
const ACME_2: &str = "sk-rt-wm-acme2-0123456789abc";
const GLOBEX: &str = "sk-rt-wm-globex-0123456789ab";

/// A word-level tokenizer: `[UNK]` = 0, `w0`..`w299` = 1..=300.
fn tokenizer_file() -> tempfile::NamedTempFile {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), json!(0));
    for i in 0..300 {
        vocab.insert(format!("w{i}"), json!(i + 1));
    }
    let doc = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(doc.to_string().as_bytes()).expect("write");
    f
}

struct Target {
    upstream: ScriptedUpstream,
    gw: RunningGateway,
    http: reqwest::Client,
    _tokenizer: tempfile::NamedTempFile,
}

impl Target {
    async fn new(watermark: &str) -> Self {
        let hash = |k: &str| hex::encode(sha2::Sha256::digest(k.as_bytes()));
        let upstream = ScriptedUpstream::start().await;
        let tokenizer = tokenizer_file();
        let toml = format!(
            "[[auth.keys]]\nname = \"a\"\ntenant = \"acme\"\nsha256 = \"{}\"\n\
             [[auth.keys]]\nname = \"a2\"\ntenant = \"acme\"\nsha256 = \"{}\"\n\
             [[auth.keys]]\nname = \"g\"\ntenant = \"globex\"\nsha256 = \"{}\"\n\
             [backends.main]\nbase_url = \"{}\"\n\
             [[routes]]\nmodel = \"wm\"\nbackend = \"main\"\ntokenizer = \"{}\"\n\
             [watermark]\nenabled = true\nmodels = [\"wm\"]\n{watermark}",
            hash(ACME),
            hash(ACME_2),
            hash(GLOBEX),
            upstream.base_url(),
            tokenizer.path().display()
        );
        let config = Config::load(&Sources {
            toml: Some(&toml),
            ..Sources::default()
        })
        .expect("config loads");
        let gw = Gateway::with_env(config, |k| {
            (k == "PALISADE_WATERMARK_KEY").then(|| "ab".repeat(32))
        })
        .expect("gateway builds")
        .start(Some("127.0.0.1:0".parse().expect("addr")))
        .await
        .expect("gateway starts");
        Self {
            upstream,
            gw,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            _tokenizer: tokenizer,
        }
    }

    /// Posts raw bytes; returns status, `Retry-After` and the parsed body.
    async fn post(&self, path: &str, key: &str, raw: String) -> (u16, Option<String>, Value) {
        let resp = self
            .http
            .post(format!("http://{}{path}", self.gw.local_addr()))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .expect("gateway answers");
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or_default();
        (status, retry, body)
    }
}

fn words(range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn a_tenant_cannot_test_text_against_another_tenants_key() {
    let t = Target::new("tenant_detect_per_day = 100\ntenant_min_tokens = 10\n").await;
    let text = words(0..50);
    for victim in ["acme", "nosuch"] {
        let (status, _, v) = t
            .post(
                "/v1/watermark/detect",
                GLOBEX,
                json!({"model": "wm", "text": text, "tenant": victim}).to_string(),
            )
            .await;
        assert_eq!(status, 403, "{victim}: {v}");
        assert_eq!(v["error"]["code"], "watermark_detect_forbidden");
        // The same message whether the tenant exists or not.
        assert!(!v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(victim));
    }
    // Its own tenant: a verdict.
    let (status, _, v) = t
        .post(
            "/v1/watermark/detect",
            GLOBEX,
            json!({"model": "wm", "text": text}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn the_detect_endpoint_answers_one_bit_a_few_times_a_day_per_tenant() {
    let t = Target::new("tenant_detect_per_day = 3\ntenant_min_tokens = 20\n").await;
    // A one-token probe (the differential attack's unit) gets no verdict.
    let (status, _, v) = t
        .post(
            "/v1/watermark/detect",
            ACME,
            json!({"model": "wm", "text": "w7"}).to_string(),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "watermark_text_too_short");
    // A verdict carries no score, green count or period.
    let (status, _, v) = t
        .post(
            "/v1/watermark/detect",
            ACME,
            json!({"model": "wm", "text": words(0..40)}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let fields: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(fields, ["detected", "model", "tenant", "tokens"], "{v}");
    // The allowance is the tenant's: a second key does not add to it.
    let (status, _, _) = t
        .post(
            "/v1/watermark/detect",
            ACME_2,
            json!({"model": "wm", "text": words(40..80)}).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    let (status, retry, v) = t
        .post(
            "/v1/watermark/detect",
            ACME_2,
            json!({"model": "wm", "text": words(80..120)}).to_string(),
        )
        .await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["code"], "watermark_detect_quota");
    let secs: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=86_400).contains(&secs));
    // Another tenant is not affected.
    let (status, _, _) = t
        .post(
            "/v1/watermark/detect",
            GLOBEX,
            json!({"model": "wm", "text": words(0..40)}).to_string(),
        )
        .await;
    assert_eq!(status, 200);
}

/// The gateway's map: 75 green ids of 301, each +2.
fn assert_only_the_gateways_map(sent: &Value) {
    let map = sent["logit_bias"].as_object().expect("a logit_bias map");
    assert_eq!(map.len(), 75, "{sent}");
    assert!(map.values().all(|v| v.as_f64() == Some(2.0)), "{sent}");
    assert!(sent.get("logit_bias_type").is_none(), "{sent}");
    for c in ["extra_body", "extra_params", "vllm_xargs", "nvext"] {
        if let Some(inner) = sent.get(c) {
            assert!(inner.get("logit_bias").is_none(), "{c}: {sent}");
            assert!(inner.get("logit_bias_type").is_none(), "{c}: {sent}");
        }
    }
}

#[tokio::test]
async fn a_clients_own_logit_bias_never_reaches_the_upstream_in_any_shape() {
    let t = Target::new("").await;
    let chat = r#""model": "wm", "messages": [{"role": "user", "content": "hi"}]"#;
    let all_red: String = (0..301)
        .map(|i| format!("\"{i}\": -100"))
        .collect::<Vec<_>>()
        .join(", ");
    let shapes = [
        format!(r#"{{{chat}, "logit_bias": {{{all_red}}}}}"#),
        format!(r#"{{{chat}, "logit\u005fbias": {{"5": 100}}}}"#),
        format!(r#"{{{chat}, "logit_bias": {{"5": 100}}, "logit_bias": {{}}}}"#),
        format!(r#"{{{chat}, "logit_bias": {{}}, "logit_bias": {{"5": 100}}}}"#),
        format!(r#"{{{chat}, "logit_bias_type": "tokens"}}"#),
        format!(
            r#"{{{chat}, "extra_body": {{"logit_bias": {{"5": 100}}, "logit_bias_type": "tokens"}}}}"#
        ),
        format!(r#"{{{chat}, "nvext": {{"logit_bias": {{"5": 100}}}}}}"#),
        format!(r#"{{{chat}, "vllm_xargs": {{"logit_bias": {{"5": 100}}}}}}"#),
        format!(r#"{{{chat}, "extra_params": {{"logit_bias": {{"5": 100}}}}}}"#),
    ];
    for raw in shapes {
        let (status, _, v) = t.post("/v1/chat/completions", ACME, raw.clone()).await;
        assert_eq!(status, 200, "{raw}: {v}");
        let sent = t.upstream.received().last().expect("sent").body.clone();
        assert_only_the_gateways_map(&sent);
    }
}

#[tokio::test]
async fn a_merged_map_cannot_outvote_the_watermark_wholesale() {
    let t = Target::new("client_logit_bias = \"merge\"\n").await;
    let all_red: serde_json::Map<String, Value> =
        (0..301).map(|i| (i.to_string(), json!(-100))).collect();
    let before = t.upstream.received().len();
    let (status, _, v) = t
        .post(
            "/v1/chat/completions",
            ACME,
            json!({"model": "wm", "messages": [{"role": "user", "content": "hi"}],
                   "logit_bias": all_red})
            .to_string(),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "watermark_logit_bias_refused");
    assert_eq!(t.upstream.received().len(), before);
}

#[tokio::test]
async fn log_probabilities_of_a_watermarked_model_are_refused_in_any_container() {
    let t = Target::new("").await;
    let before = t.upstream.received().len();
    for (extra, field) in [
        (json!({"logprobs": true, "top_logprobs": 5}), "logprobs"),
        (json!({"top_logprobs": 2}), "top_logprobs"),
        (
            json!({"extra_body": {"top_logprobs": 5}}),
            "extra_body.top_logprobs",
        ),
        (json!({"nvext": {"logprobs": "yes"}}), "nvext.logprobs"),
    ] {
        let mut body = json!({"model": "wm", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, _, v) = t.post("/v1/chat/completions", ACME, body.to_string()).await;
        assert_eq!(status, 400, "{extra}: {v}");
        assert_eq!(v["error"]["code"], "watermark_logprobs_refused");
        assert_eq!(v["error"]["param"], field);
    }
    assert_eq!(t.upstream.received().len(), before, "nothing went upstream");
    // Engine probes are stripped earlier (parameter hardening): served, but
    // the upstream never hears them.
    let (status, _, _) = t
        .post(
            "/v1/chat/completions",
            ACME,
            json!({"model": "wm", "messages": [{"role": "user", "content": "hi"}],
                   "extra_body": {"n_probs": 5}, "post_sampling_probs": true})
            .to_string(),
        )
        .await;
    assert_eq!(status, 200);
    let sent = t.upstream.received().last().expect("sent").body.to_string();
    assert!(!sent.contains("probs"), "{sent}");
}
