//! What a hop to the detection pool costs, against the scan it carries, in
//! one run: a first-stage scan of a short prompt and of a 64 KiB text inline;
//! the same scans through tokio's blocking pool behind a semaphore (what
//! `gates/pool.rs` does); and through one dedicated thread fed by a channel
//! (the alternative). The ratio of hop to scan decides where the inline
//! threshold sits: a hop that costs more than the scan is not worth taking.

use std::sync::mpsc;
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use palisade_detect::{Detector, ScanInput};
use tokio::sync::Semaphore;

const SHORT: &str = "Can you summarize the attached quarterly report in three bullet points?";

fn long_text() -> String {
    let mut text = String::new();
    while text.len() < 64 * 1024 {
        text.push_str(
            "The quarterly report shows steady growth in the northern region, with costs flat. ",
        );
    }
    text
}

type Job = Box<dyn FnOnce() + Send>;

fn bench(c: &mut Criterion) {
    let detector = Arc::new(Detector::embedded().expect("embedded detector"));
    let _ = detector.scan(&ScanInput::user("warm up"));
    let long = Arc::new(long_text());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let permits = Arc::new(Semaphore::new(2));
    // The dedicated-thread alternative: one worker, jobs over a channel.
    let (jobs, rx) = mpsc::channel::<Job>();
    std::thread::spawn(move || {
        while let Ok(job) = rx.recv() {
            job();
        }
    });

    let mut group = c.benchmark_group("detection_pool");
    for (name, text) in [("short", Arc::new(SHORT.to_owned())), ("64k", long.clone())] {
        let d = detector.clone();
        let t = text.clone();
        // Every variant runs inside `block_on`, so its cost is common to all.
        group.bench_function(format!("{name}/inline"), |b| {
            b.iter(|| {
                runtime
                    .block_on(async { black_box(d.scan_first_stage(&ScanInput::user(&t)).score) })
            })
        });
        let (d, t, p) = (detector.clone(), text.clone(), permits.clone());
        group.bench_function(format!("{name}/spawn_blocking+semaphore"), |b| {
            b.iter(|| {
                let (d, t, p) = (d.clone(), t.clone(), p.clone());
                runtime.block_on(async move {
                    let permit = p.acquire_owned().await.expect("open");
                    tokio::task::spawn_blocking(move || {
                        let _permit = permit;
                        d.scan_first_stage(&ScanInput::user(&t)).score
                    })
                    .await
                    .expect("joined")
                })
            })
        });
        let (d, t, jobs) = (detector.clone(), text.clone(), jobs.clone());
        group.bench_function(format!("{name}/dedicated_thread"), |b| {
            b.iter(|| {
                let (d, t) = (d.clone(), t.clone());
                let (tx, rx) = tokio::sync::oneshot::channel();
                jobs.send(Box::new(move || {
                    let _ = tx.send(d.scan_first_stage(&ScanInput::user(&t)).score);
                }))
                .expect("worker alive");
                runtime.block_on(async move { rx.await.expect("answered") })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
