//! Decision latency of the Redis GCRA, one caller, loopback:
//! `cargo run --release -p palisade-redis --example latency -- redis://127.0.0.1:6379/0 [N]`
//! Prints one JSON line with p50/p99/max in microseconds.

use std::time::{Duration, Instant};

use palisade_limits::{GcraConfig, Nanos};
use palisade_redis::RedisGcra;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: latency REDIS_URL [N]")?;
    let n: usize = args
        .next()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(20_000)
        .min(1_000_000);
    let gcra = RedisGcra::connect(
        &url,
        "bench",
        Duration::from_secs(2),
        Duration::from_secs(1),
    )
    .await?;
    let config = GcraConfig::new(u64::MAX / 4, Nanos::from_secs(60)).with_burst(1_000_000);
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("tenant-{}", i % 64);
        let t = Instant::now();
        gcra.check(&key, &config, 1).await?;
        samples.push(t.elapsed().as_nanos() as u64);
    }
    samples.sort_unstable();
    let q = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    println!(
        "{{\"decisions\":{n},\"p50_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1}}}",
        q(0.5),
        q(0.99),
        q(1.0)
    );
    Ok(())
}
