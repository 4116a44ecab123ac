//! Developer aid for train rows only: `explain_rows MODEL FILE.jsonl SUBTYPE_PREFIX [N]`
//! prints score and the largest final-layer contributions of the first N matching rows.
//! (Scores are in-sample for the heads: use it to read features, not to measure quality.)

use palisade_detect::features::STAGE2_NAMES;
use palisade_detect::{Channel, Detector, ScanInput};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let d = Detector::from_model_bytes(&std::fs::read(&args[0])?)?;
    let rows = palisade_eval::data::read_jsonl(args[1].as_ref())?;
    let n: usize = args.get(3).map_or(Ok(5), |s| s.parse())?;
    let channel = if args[1].contains("indirect") {
        Channel::Retrieved
    } else {
        Channel::User
    };
    for r in rows
        .iter()
        .filter(|r| r.subtype.as_deref().unwrap_or("").starts_with(&args[2]))
        .take(n)
    {
        let a = d.analyze(&ScanInput::new(&r.text, channel));
        let s2 = match (&d.model().meta.stage2_data, channel.is_data()) {
            (Some(s), true) => s,
            _ => &d.model().meta.stage2,
        };
        let mut c: Vec<(f32, &str, f32)> = (0..STAGE2_NAMES.len())
            .map(|i| {
                (
                    s2.weights[i] * (a.stage2[i] - s2.mean[i]) / s2.std[i],
                    STAGE2_NAMES[i],
                    a.stage2[i],
                )
            })
            .collect();
        c.sort_by(|x, y| y.0.abs().total_cmp(&x.0.abs()));
        let t: String = r.text.chars().take(160).collect();
        println!("score {:.3} {t:?}", a.score);
        for (v, name, x) in c.iter().take(8) {
            println!("   {name:<24} x={x:+.2} contrib={v:+.2}");
        }
    }
    Ok(())
}
