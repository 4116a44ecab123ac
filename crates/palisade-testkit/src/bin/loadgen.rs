//! An open-loop load generator for latency at a fixed request rate.
//!
//! `palisade-loadgen URL [--rate N] [--duration SECS] [--stream]`
//!
//! Requests are *scheduled* at a fixed rate and each latency is measured from
//! its scheduled start, not from when a free connection picked it up, so a
//! stall shows up in the percentiles instead of silently lowering the offered
//! rate (the coordinated-omission trap of closed-loop tools such as wrk).
//! Prints one JSON line. Loopback targets only; bounded in time and count.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

struct Args {
    url: String,
    rate: u64,
    duration: Duration,
    stream: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut out = Args {
        url: String::new(),
        rate: 200,
        duration: Duration::from_secs(10),
        stream: false,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rate" => out.rate = args.next().and_then(|v| v.parse().ok()).ok_or("--rate N")?,
            "--duration" => {
                out.duration = Duration::from_secs_f64(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .ok_or("--duration SECS")?,
                )
            }
            "--stream" => out.stream = true,
            url if out.url.is_empty() => out.url = url.to_owned(),
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    if !(out.url.starts_with("http://127.") || out.url.starts_with("http://localhost")) {
        return Err("the target must be a loopback http:// URL".into());
    }
    if out.rate == 0 || out.rate > 100_000 || out.duration > Duration::from_secs(120) {
        return Err("rate must be 1..=100000 and duration at most 120 s".into());
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("usage: palisade-loadgen URL [--rate N] [--duration SECS] [--stream]: {e}");
            std::process::exit(2);
        }
    };
    let body = if args.stream {
        r#"{"model":"bench","stream":true,"messages":[{"role":"user","content":"hello"}]}"#
    } else {
        r#"{"model":"bench","messages":[{"role":"user","content":"hello"}]}"#
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let total = args.rate * args.duration.as_secs_f64() as u64;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<Duration, ()>>();
    let start = Instant::now() + Duration::from_millis(100);
    for i in 0..total {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let (client, url, tx) = (client.clone(), args.url.clone(), tx.clone());
        tokio::spawn(async move {
            let result = async {
                let resp = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|_| ())?;
                if !resp.status().is_success() {
                    return Err(());
                }
                resp.bytes().await.map_err(|_| ())?;
                Ok(scheduled.elapsed())
            }
            .await;
            let _ = tx.send(result);
        });
    }
    drop(tx);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let (mut ok, mut errors) = (0u64, 0u64);
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(Some(r)) = tokio::time::timeout_at(drain_deadline.into(), rx.recv()).await {
        match r {
            Ok(d) => {
                ok += 1;
                let _ = hist.record(d.as_micros().max(1) as u64);
            }
            Err(()) => errors += 1,
        }
    }
    println!(
        "{{\"rate\":{},\"sent\":{},\"ok\":{},\"errors\":{},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
        args.rate,
        total,
        ok,
        errors,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.9),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max()
    );
}
