//! The `scan` runner: JSONL in, one JSON verdict line per row out, in input order.

use std::io::{BufRead, IsTerminal as _, Write};
use std::time::Instant;

use palisade_detect::{Category, Channel, Detector, Scan, ScanInput, Verdict};
use serde::{Deserialize, Serialize};

use crate::data::Row;
use crate::EvalError;

/// Options of [`run_scan`].
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Scan every row on this channel (overrides row `channel` and label defaults).
    pub channel: Option<Channel>,
    /// Flag threshold override; `None` keeps the calibrated one.
    pub threshold: Option<f32>,
    /// Progress on stderr: `None` = only when stderr is a terminal.
    pub progress: Option<bool>,
}

/// Totals of a scan run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScanSummary {
    /// Rows read (including bad ones).
    pub rows: usize,
    /// Rows that could not be scanned.
    pub errors: usize,
    /// Rows per verdict.
    pub allow: usize,
    /// Flagged rows.
    pub flag: usize,
    /// Blocked rows.
    pub block: usize,
}

/// One reason in the scan output (code only, as in the wire shape).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ReasonCode {
    /// Stable reason code.
    pub code: String,
}

/// One output line.
#[derive(Debug, Serialize)]
pub struct ScanLine {
    /// Zero-based input row index.
    pub index: usize,
    /// Attack score in `[0, 1]`.
    pub score: f32,
    /// Verdict.
    pub verdict: Verdict,
    /// Category.
    pub category: Category,
    /// Reason codes.
    pub reasons: Vec<ReasonCode>,
    /// Scan latency in microseconds.
    pub latency_us: u64,
}

#[derive(Debug, Serialize)]
struct ErrorLine<'a> {
    index: usize,
    error: &'a str,
}

impl ScanLine {
    /// Builds an output line from a scan.
    pub fn new(index: usize, scan: &Scan, latency_us: u64) -> ScanLine {
        ScanLine {
            index,
            score: (scan.score * 10_000.0).round() / 10_000.0,
            verdict: scan.verdict,
            category: scan.category,
            reasons: scan
                .reasons
                .iter()
                .map(|r| ReasonCode {
                    code: r.code.to_string(),
                })
                .collect(),
            latency_us,
        }
    }
}

/// Scans one already-parsed row.
pub fn scan_row(
    detector: &Detector,
    row: &Row,
    opts: &ScanOptions,
) -> Result<(Scan, u64), EvalError> {
    let channel = row.channel(opts.channel)?;
    let input = ScanInput {
        text: &row.text,
        channel,
        system_prompt: row.system_prompt.as_deref(),
    };
    let t = Instant::now();
    let scan = match opts.threshold {
        Some(th) => detector.scan_with_threshold(&input, th),
        None => detector.scan(&input),
    };
    Ok((scan, t.elapsed().as_micros() as u64))
}

/// Reads JSONL rows from `input` and writes one JSON line per row to `out`, in order.
/// A row that is not valid JSON (or lacks `text`) gets `{"index": i, "error": "..."}` and the
/// scan goes on. Only I/O errors on `out`/`input` abort.
pub fn run_scan(
    opts: &ScanOptions,
    input: impl BufRead,
    mut out: impl Write,
) -> Result<ScanSummary, EvalError> {
    let detector = Detector::embedded()?;
    run_scan_with(&detector, opts, input, &mut out)
}

/// [`run_scan`] with a caller-provided detector.
pub fn run_scan_with(
    detector: &Detector,
    opts: &ScanOptions,
    input: impl BufRead,
    mut out: impl Write,
) -> Result<ScanSummary, EvalError> {
    let progress = opts
        .progress
        .unwrap_or_else(|| std::io::stderr().is_terminal());
    let mut sum = ScanSummary::default();
    let io = |e| EvalError::Io {
        path: "<scan>".into(),
        source: e,
    };
    for (index, line) in input.lines().enumerate() {
        let line = line.map_err(io)?;
        sum.rows += 1;
        let result = serde_json::from_str::<Row>(&line)
            .map_err(|e| EvalError::BadRow(e.to_string()))
            .and_then(|row| scan_row(detector, &row, opts));
        match result {
            Ok((scan, us)) => {
                match scan.verdict {
                    Verdict::Allow => sum.allow += 1,
                    Verdict::Flag => sum.flag += 1,
                    Verdict::Block => sum.block += 1,
                }
                serde_json::to_writer(&mut out, &ScanLine::new(index, &scan, us)).map_err(|e| {
                    EvalError::Io {
                        path: "<scan>".into(),
                        source: e.into(),
                    }
                })?;
            }
            Err(e) => {
                sum.errors += 1;
                let msg = e.to_string();
                serde_json::to_writer(&mut out, &ErrorLine { index, error: &msg }).map_err(
                    |e| EvalError::Io {
                        path: "<scan>".into(),
                        source: e.into(),
                    },
                )?;
            }
        }
        out.write_all(b"\n").map_err(io)?;
        if progress && sum.rows % 64 == 0 {
            eprint!(
                "\rscanned {} rows ({} flagged, {} blocked)",
                sum.rows, sum.flag, sum.block
            );
        }
    }
    if progress {
        eprintln!(
            "\rscanned {} rows ({} flagged, {} blocked, {} errors)",
            sum.rows, sum.flag, sum.block, sum.errors
        );
    }
    out.flush().map_err(io)?;
    Ok(sum)
}

/// Scans a single text (for `palisade scan TEXT`) and returns the output line.
pub fn scan_text(detector: &Detector, text: &str, opts: &ScanOptions) -> ScanLine {
    let row = Row {
        text: text.to_string(),
        ..Row::default()
    };
    match scan_row(detector, &row, opts) {
        Ok((scan, us)) => ScanLine::new(0, &scan, us),
        // Unreachable in practice: a plain row has no channel to mis-parse.
        Err(_) => ScanLine::new(0, &detector.scan(&ScanInput::user(text)), 0),
    }
}
