//! JSON lines in on stdin (`text`, optional `channel`, `system_prompt`), one verdict line per
//! row out on stdout: the shipped detector alone (stage 1). Used to pair stage-1 scores with
//! the encoder trainer's held-out scores.
//!
//! `cargo run --release -p palisade-eval --example scan_stdin < rows.jsonl > scans.jsonl`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let opts = palisade_eval::ScanOptions {
        progress: Some(false),
        ..Default::default()
    };
    let stdin = std::io::stdin().lock();
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let summary = palisade_eval::run_scan(&opts, stdin, stdout)?;
    eprintln!("{} rows, {} errors", summary.rows, summary.errors);
    Ok(())
}
