//! Robustness check (measurement only): applies each obfuscation to the attack rows of the
//! given JSONL files and reports the flag rate at the operating threshold, next to the plain
//! rate. The README of the datasets calls obfuscated variants of eval attacks a fair
//! robustness test; nothing here feeds back into training.
//! `cargo run --release -p palisade-eval --example robustness -- FILE.jsonl...`
//! (`PALISADE_DETECT_MODEL=ARTIFACT` measures that artifact instead of the embedded one).

use palisade_detect::{Detector, ScanInput, Verdict};
use palisade_eval::synth::{obfuscate_as, OBFUSCATIONS};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let d = match std::env::var("PALISADE_DETECT_MODEL") {
        Ok(p) => Detector::from_model_bytes(&std::fs::read(p)?)?,
        Err(_) => Detector::embedded()?,
    };
    let names = [
        "homoglyph",
        "zero_width",
        "spaced",
        "leet",
        "base64",
        "hex",
        "rot13",
        "url",
        "unicode_tags",
        "upper",
    ];
    print!("| file | plain |");
    for n in names {
        print!(" {n} |");
    }
    println!("\n|---|---:|{}", "---:|".repeat(OBFUSCATIONS));
    for f in std::env::args().skip(1) {
        let rows = palisade_eval::read_jsonl(f.as_ref())?;
        let attacks: Vec<_> = rows
            .iter()
            .filter(|r| matches!(r.label(), "injection" | "jailbreak" | "indirect_injection"))
            .collect();
        let rate = |k: Option<usize>| {
            let mut rng = palisade_eval::rng::Rng::new(7);
            let hits = attacks
                .iter()
                .filter(|r| {
                    let text = match k {
                        Some(k) => obfuscate_as(&r.text, k, &mut rng, false).0,
                        None => r.text.clone(),
                    };
                    let input = ScanInput {
                        text: &text,
                        channel: r.channel(None).unwrap_or_default(),
                        system_prompt: r.system_prompt.as_deref(),
                    };
                    d.scan(&input).verdict != Verdict::Allow
                })
                .count();
            100.0 * hits as f64 / attacks.len().max(1) as f64
        };
        let name = std::path::Path::new(&f)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        print!("| {name} | {:.1}% |", rate(None));
        for k in 0..OBFUSCATIONS {
            print!(" {:.1}% |", rate(Some(k)));
        }
        println!();
    }
    Ok(())
}
