//! Prints the score of a text and the largest final-layer contributions (developer aid).
//! `cargo run --release -p palisade-detect --example explain -- [--channel retrieved] TEXT`

use palisade_detect::features::STAGE2_NAMES;
use palisade_detect::{Channel, Detector, ScanInput};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut channel = Channel::User;
    if args.first().is_some_and(|a| a == "--channel") && args.len() >= 2 {
        channel = args[1].parse().expect("channel");
        args.drain(..2);
    }
    let text = args.join(" ");
    let d = Detector::embedded().expect("embedded model");
    let a = d.analyze(&ScanInput::new(&text, channel));
    let s2 = &d.model().meta.stage2;
    let mut contrib: Vec<(f32, &str, f32)> = (0..STAGE2_NAMES.len())
        .map(|i| {
            (
                s2.weights[i] * (a.stage2[i] - s2.mean[i]) / s2.std[i],
                STAGE2_NAMES[i],
                a.stage2[i],
            )
        })
        .collect();
    contrib.sort_by(|x, y| y.0.abs().total_cmp(&x.0.abs()));
    println!(
        "score {:.3} (flag {:.3}) attack {:.2} segmax {:.2} harm {:.2}",
        a.score,
        d.thresholds().flag,
        a.attack_logit,
        a.segment_max,
        a.harm_logit
    );
    for (c, name, v) in contrib.iter().take(10) {
        println!("  {c:+.2}  {name} = {v:.3}");
    }
}
