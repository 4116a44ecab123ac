//! The `adversarial_suffix` statistics are computed for user and system text only: data
//! channels (where the rule never fires) must not pay for tokenizing, and user text must
//! still be judged. Uses a small token LM trained here, not the shipped artifact (which
//! carries none).

use palisade_detect::model::Model;
use palisade_detect::suffix::SuffixStats;
use palisade_detect::tokenlm::tokens;
use palisade_detect::{Channel, Detector, ScanInput};
use palisade_eval::train::train_token_lm;

const SHIPPED: &[u8] = include_bytes!("../../palisade-detect/model/palisade-detect.model");

fn detector_with_token_lm() -> Detector {
    let benign = [
        "Could you help me plan a three-day trip to Porto in late spring?",
        "I like old bookshops, tiled churches and long walks by the river.",
        "Please summarise the attached report in three short paragraphs.",
        "What is the difference between a list and a tuple in Python?",
    ];
    let seqs: Vec<Vec<u32>> = benign.iter().map(|t| tokens(t)).collect();
    let mut model = Model::from_bytes(SHIPPED).expect("shipped artifact");
    model.tok = train_token_lm(seqs.iter().map(Vec::as_slice));
    model.meta.token_lm = true;
    Detector::from_model(model)
}

#[test]
fn suffix_statistics_only_for_user_and_system_text() {
    let d = detector_with_token_lm();
    let text = "I like old bookshops, tiled churches and long walks by the river. \
                vel}}] xkcd!!--( Regiment quadratwayne]); sorted/**@ Mumbai>(); tonnes ^[ penetr";
    for channel in [Channel::User, Channel::System] {
        let s = d.analyze(&ScanInput::new(text, channel)).signals.suffix;
        assert!(s.judged > 0 && s.worst > 0.0, "{channel:?}: {s:?}");
    }
    for channel in [Channel::Retrieved, Channel::ToolOutput] {
        let s = d.analyze(&ScanInput::new(text, channel)).signals.suffix;
        assert_eq!(s, SuffixStats::default(), "{channel:?}");
    }
}
