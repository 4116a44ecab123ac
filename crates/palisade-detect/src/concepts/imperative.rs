//! Imperative sentences: how many sentences open with a command verb (several languages).
//! Matched at the start of a sentence only. Linear time.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// Verbs that open an imperative sentence (commands addressed to the reader), several
/// languages. Matched at the start of a sentence only.
const IMPERATIVE_OPENERS: &[&str] = &[
    "please",
    "kindly",
    "ignore",
    "forget",
    "send",
    "transfer",
    "forward",
    "email",
    "delete",
    "remove",
    "grant",
    "give",
    "tell",
    "write",
    "print",
    "output",
    "say",
    "reply",
    "respond",
    "answer",
    "repeat",
    "translate",
    "summarize",
    "include",
    "add",
    "insert",
    "change",
    "update",
    "share",
    "post",
    "click",
    "visit",
    "go to",
    "open",
    "download",
    "upload",
    "install",
    "run",
    "execute",
    "make sure",
    "ensure",
    "remember",
    "do not",
    "don't",
    "never",
    "always",
    "stop",
    "start",
    "begin",
    "use",
    "create",
    "generate",
    "list",
    "show",
    "find",
    "search",
    "book",
    "buy",
    "pay",
    "move",
    "copy",
    "set",
    "enable",
    "disable",
    "unlock",
    "schedule",
    "call",
    "bitte",
    "sende",
    "schreibe",
    "schreib",
    "gib",
    "lösche",
    "veuillez",
    "envoie",
    "envoyez",
    "écris",
    "écrivez",
    "donne",
    "supprime",
    "por favor",
    "envía",
    "envia",
    "escribe",
    "borra",
    "elimina",
    "dame",
    "per favore",
    "invia",
    "scrivi",
    "cancella",
    "dai",
    "envie",
    "escreva",
    "apague",
    "пожалуйста",
    "отправь",
    "напиши",
    "удали",
    "переведи",
    "请",
    "发送",
    "删除",
    "写",
    "告诉",
    "してください",
    "送って",
];

static IMPERATIVE_AC: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .match_kind(MatchKind::LeftmostLongest)
        .start_kind(aho_corasick::StartKind::Anchored)
        .build(IMPERATIVE_OPENERS)
        .expect("static imperative list compiles")
});

/// Fraction of sentences (segments split at sentence ends and newlines) that open with an
/// imperative verb. Linear time.
pub fn imperative_ratio(text: &str) -> f32 {
    let (imperative, sentences) = imperative_counts(text);
    if sentences == 0 {
        0.0
    } else {
        imperative as f32 / sentences as f32
    }
}

/// Number of sentences that open with an imperative verb.
pub fn imperative_count(text: &str) -> usize {
    imperative_counts(text).0
}

fn imperative_counts(text: &str) -> (usize, usize) {
    let mut sentences = 0usize;
    let mut imperative = 0usize;
    for sent in text.split(['.', '!', '?', '\n', '。', '！', '？', ':', ';']) {
        let t = sent.trim_start_matches(|c: char| !crate::ctype::is_alphanumeric(c));
        if t.chars()
            .filter(|&c| crate::ctype::is_alphabetic(c))
            .count()
            < 3
        {
            continue;
        }
        sentences += 1;
        crate::work::add(crate::work::Unit::SearchBytes, t.len());
        let input = aho_corasick::Input::new(t).anchored(aho_corasick::Anchored::Yes);
        if let Some(m) = IMPERATIVE_AC.find(input) {
            let next = t[m.end()..].chars().next();
            if next.is_none_or(|c| !crate::ctype::is_alphanumeric(c))
                || !t.is_char_boundary(m.end())
                || !t[..m.end()].is_ascii()
            {
                imperative += 1;
            }
        }
    }
    (imperative, sentences)
}
