//! Decision latency of the Redis limiters, one caller, loopback:
//! `cargo run --release -p palisade-redis --example latency -- redis://127.0.0.1:6379/0 [N]`
//! Prints one JSON line per measurement with p50/p99/max in microseconds: GCRA decisions,
//! then token-budget round trips (a reserve followed by its reconcile, what every admitted
//! request costs the gateway).

use std::time::{Duration, Instant};

use palisade_limits::{BudgetConfig, GcraConfig, Nanos};
use palisade_redis::{RedisConnection, RedisGcra, RedisTokenBudget};

/// Sorts `samples` (nanoseconds) and prints them as one JSON line named `what`.
fn report(what: &str, mut samples: Vec<u64>) {
    samples.sort_unstable();
    let q = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    println!(
        "{{\"{what}\":{},\"p50_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1}}}",
        samples.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: latency REDIS_URL [N]")?;
    let n: usize = args
        .next()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(20_000)
        .clamp(1, 1_000_000);
    let conn =
        RedisConnection::connect(&url, Duration::from_secs(2), Duration::from_secs(1)).await?;

    let gcra = RedisGcra::new(conn.clone(), "bench");
    let config = GcraConfig::new(u64::MAX / 4, Nanos::from_secs(60)).with_burst(1_000_000);
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("tenant-{}", i % 64);
        let t = Instant::now();
        gcra.check(&key, &config, 1).await?;
        samples.push(t.elapsed().as_nanos() as u64);
    }
    report("decisions", samples);

    // A budget no run can exhaust, so every reservation is granted and reconciled.
    let budget = RedisTokenBudget::new(conn, "bench");
    let config = BudgetConfig::windowed(1 << 50, Nanos::from_secs(60));
    let run = std::process::id();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("tenant-{}", i % 64);
        let id = format!("bench-{run}-{i}");
        let t = Instant::now();
        let r = budget.reserve(&config, &key, &id, 1_000).await?;
        budget.reconcile(&config, &id, 400).await?;
        samples.push(t.elapsed().as_nanos() as u64);
        if !r.granted {
            return Err(format!("reservation {id} was refused: {r:?}").into());
        }
    }
    report("budget_round_trips", samples);
    Ok(())
}
