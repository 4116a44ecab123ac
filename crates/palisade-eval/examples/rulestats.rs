//! Developer aid: how often each attack rule fires per train file (precision check).
//! `cargo run --release -p palisade-eval --example rulestats -- TRAIN_DIR`
use palisade_detect::rules::{match_rules, ATTACK_RULES};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/work/shared/datasets/train".into());
    for f in [
        "benign",
        "harmful_request",
        "injection",
        "jailbreak",
        "indirect",
    ] {
        let rows =
            palisade_eval::read_jsonl(&std::path::Path::new(&dir).join(format!("{f}.jsonl")))?;
        let mut counts = vec![0usize; ATTACK_RULES.len()];
        for r in &rows {
            let n = palisade_detect::normalize(&r.text);
            for i in match_rules(&n.combined()) {
                counts[i] += 1;
            }
        }
        let cells: Vec<String> = ATTACK_RULES
            .iter()
            .zip(&counts)
            .map(|(r, c)| format!("{}={c}", r.code))
            .collect();
        println!("{f} ({} rows): {}", rows.len(), cells.join(" "));
    }
    Ok(())
}
