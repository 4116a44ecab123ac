//! The extraction defence across a fleet: two gateways share one real
//! PostgreSQL server as their extraction store (`extraction.store =
//! "postgres://…"`). A key driven up the ladder on one replica is refused
//! by the other, which never saw its traffic; both replicas' rows land in
//! the one store the hunt reads; two replicas hunting the same campaign at
//! once send its alert once.

mod support;

use std::time::{Duration, Instant};

use palisade_gateway::hunt::{run_once, HuntStore};
use palisade_gateway::RunningGateway;
use palisade_testkit::{PostgresServer, ScriptedUpstream};
use serde_json::{json, Value};
use support::extraction::{random_query, FAST_LADDER};
use support::{gateway as start, key_hash};

const KEY_ATTACKER: &str = "sk-fleet-attacker-0123456789ab";
const KEY_BENIGN: &str = "sk-fleet-benign-0123456789abcd";

fn config(upstream: &str, store: &str, hunt: bool) -> String {
    format!(
        "[[auth.keys]]\nname = \"attacker\"\ntenant = \"shop\"\nsha256 = \"{}\"\n\
         [[auth.keys]]\nname = \"benign\"\ntenant = \"shop\"\nsha256 = \"{}\"\n\
         [backends.main]\nbase_url = \"{upstream}\"\n{FAST_LADDER}\
         [extraction]\nstore = \"{store}\"\n\
         [extraction.hunt]\nenabled = {hunt}\n",
        key_hash(KEY_ATTACKER),
        key_hash(KEY_BENIGN),
    )
}

async fn post(http: &reqwest::Client, gw: &RunningGateway, key: &str, text: &str) -> (u16, Value) {
    let resp = http
        .post(format!("http://{}/v1/chat/completions", gw.local_addr()))
        .bearer_auth(key)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn refused(status: u16, body: &Value) -> bool {
    (status == 429 || status == 403)
        && matches!(
            body["error"]["code"].as_str(),
            Some("extraction_blocked" | "extraction_reverify_required")
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_refused_on_one_replica_is_refused_on_the_other_and_the_hunt_sees_both() {
    let pg = PostgresServer::start();
    let upstream = ScriptedUpstream::start().await;
    let a = start(&config(&upstream.base_url(), &pg.url(), false)).await;
    let b = start(&config(&upstream.base_url(), &pg.url(), false)).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    // Replica B serves the attacker's key first: it knows nothing of it.
    let (status, body) = post(&http, &b, KEY_ATTACKER, "hello").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = post(&http, &b, KEY_BENIGN, "Where is my order?").await;
    assert_eq!(status, 200);

    // Replica A sees the extraction traffic and climbs the ladder.
    let mut at = None;
    for i in 0..300u64 {
        let (status, body) = post(&http, &a, KEY_ATTACKER, &random_query(i)).await;
        if refused(status, &body) {
            at = Some(i);
            break;
        }
        assert_eq!(status, 200, "{body}");
    }
    let at = at.expect("replica A never refused the extractor key");
    assert!(at >= 16, "refused before a window filled: {at}");

    // Replica B refuses it within a few sync periods (bounded), and keeps
    // serving the benign key of the same tenant.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut refused_on_b = false;
    while Instant::now() < deadline {
        let (status, body) = post(&http, &b, KEY_ATTACKER, "hello again").await;
        if refused(status, &body) {
            refused_on_b = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(refused_on_b, "replica B never learned of the block");
    let (status, body) = post(&http, &b, KEY_BENIGN, "Do you ship to Canada?").await;
    assert_eq!(status, 200, "{body}");

    // Both replicas' requests are in the one store the hunt reads.
    let url = pg.url();
    let rows = tokio::task::spawn_blocking(move || {
        let mut store = HuntStore::open(&url).unwrap();
        let mut set = palisade_extraction::hunt::ProfileSet::new();
        let config = palisade_extraction::hunt::HuntConfig::default();
        let mut rows = 0;
        for _ in 0..50 {
            set = palisade_extraction::hunt::ProfileSet::new();
            rows = store.read_rows(0, 100_000, &config, &mut set).unwrap();
            if rows >= at + 4 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let keys: Vec<String> = set.profiles().map(|p| p.key.clone()).collect();
        (rows, keys)
    })
    .await
    .unwrap();
    // A's extraction requests, B's two first requests and B's benign one.
    assert!(rows.0 >= at + 4, "{} rows for {} requests", rows.0, at + 4);
    assert!(rows.1.contains(&"shop/benign".to_owned()), "{:?}", rows.1);
    drop(a);
    drop(b);
}

/// Writes the rows of a perturbation campaign fanned out over `keys` keys
/// in lockstep (seed groups of eight one-word edits), as workers would.
fn write_campaign_rows(url: &str, keys: usize, queries: usize, start_ms: i64) {
    const WORDS: [&str; 16] = [
        "river", "market", "quantum", "violet", "ledger", "harbor", "cactus", "engine", "poem",
        "orbit", "salad", "kernel", "mirror", "glacier", "novel", "pixel",
    ];
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let mut seed: Vec<&str> = Vec::new();
    for q in 0..queries {
        if q % 8 == 0 {
            seed = (0..12).map(|_| WORDS[next(WORDS.len())]).collect();
        }
        let mut words = seed.clone();
        let i = next(words.len());
        words[i] = WORDS[next(WORDS.len())];
        let s = palisade_extraction::sketch(&words.join(" "));
        let minhash: String = s.minhash.iter().map(|v| format!("{v:08x}")).collect();
        let k = q % keys;
        client
            .execute(
                "INSERT INTO extraction_requests
                 (ts_ms, tenant, key, chars, entropy, simhash, minhash, config_hash, logprobs, outcome, fingerprint)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, false, 'passed', 0)",
                &[
                    &(start_ms + q as i64 * 700),
                    &format!("evil{}", k % 3),
                    &format!("evil{}/k{k}", k % 3),
                    &(s.chars as i32),
                    &f64::from(s.entropy_bits),
                    &(s.simhash as i64),
                    &minhash,
                ],
            )
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_hunting_the_same_campaign_alert_once() {
    let pg = PostgresServer::start();
    let url = pg.url();
    tokio::task::spawn_blocking(move || {
        // Rows of a campaign: 12 keys fanning out the same templates in
        // lockstep, written as the workers would (through the store).
        let job = palisade_config::ExtractionConfig::default().hunt;
        let mut first = HuntStore::open(&url).unwrap();
        let mut second = HuntStore::open(&url).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        write_campaign_rows(&url, 12, 600, now - 3_600_000);
        let (report_a, due_a) = run_once(&mut first, &job, now).unwrap();
        let (report_b, due_b) = run_once(&mut second, &job, now).unwrap();
        assert_eq!(report_a.campaigns.len(), 1, "{:?}", report_a.campaigns);
        assert_eq!(report_b.campaigns.len(), 1);
        assert_eq!(report_a.campaigns[0].id, report_b.campaigns[0].id);
        assert_eq!(
            due_a.len() + due_b.len(),
            1,
            "the alert went out {} times",
            due_a.len() + due_b.len()
        );
        // Marked benign on one replica's connection, no replica alerts it again.
        let id = report_a.campaigns[0].id.clone();
        assert!(second
            .mark(&id, palisade_gateway::hunt::Mark::Benign, now)
            .unwrap());
        let (_, due) = run_once(&mut first, &job, now + 1).unwrap();
        assert!(due.is_empty());
        let stored = first.campaigns(10).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(
            stored[0].campaign.mark,
            Some(palisade_gateway::hunt::Mark::Benign)
        );
    })
    .await
    .unwrap();
}

/// Red team: the extractor spreads one key over the fleet (round robin
/// behind a load balancer), so each replica's window of the key fills half
/// as fast and no replica alone sees all of it. The first replica to climb
/// the ladder refuses it, and the other follows through the shared store.
/// Measured: one replica alone refuses the key at its 46th request; spread
/// over two, both refused it between the 80th and the 205th (windows are
/// per replica, so spreading buys the attacker time, not a way through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extractor_spreading_one_key_over_replicas_is_refused_by_every_replica() {
    let pg = PostgresServer::start();
    let upstream = ScriptedUpstream::start().await;
    let replicas = [
        start(&config(&upstream.base_url(), &pg.url(), false)).await,
        start(&config(&upstream.base_url(), &pg.url(), false)).await,
    ];
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut refused_by = [None, None];
    // Bounded: 600 requests (one replica alone refuses within ~40).
    for i in 0..600u64 {
        let r = (i % 2) as usize;
        let (status, body) = post(&http, &replicas[r], KEY_ATTACKER, &random_query(i)).await;
        if refused(status, &body) {
            refused_by[r].get_or_insert(i);
        } else {
            assert_eq!(status, 200, "{body}");
        }
        if refused_by.iter().all(Option::is_some) {
            break;
        }
        if refused_by.iter().any(Option::is_some) {
            // Give the other replica's sync a moment, as a patient attacker would.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let [Some(first), Some(second)] = refused_by else {
        panic!("not refused by every replica: {refused_by:?}");
    };
    assert!(
        first.max(second) < 400,
        "refused at requests {first} and {second}"
    );
}
