//! Synthetic tool outputs of many kinds (mail, calendar, chat, web page, JSON API, file
//! listing, search results, logs, tickets, TODO lists), each drawn clean — with the
//! legitimate imperatives such documents carry — and as a twin with one instruction planted
//! in a random style and position; plus the same planted instructions in clean Debian chunks.
//!
//! Clean/injected twins teach the data-channel heads that the *planted instruction* is the
//! attack, not the imperative mood of the document around it. Must not read `eval/`.

use palisade_detect::Channel;

use super::super::compose::fill_slots;
use super::super::lexicon::benign::NAMES;
use super::super::lexicon::tool_docs::{
    API_DESCRIPTIONS, CAL_NOTES, CAL_TITLES, CHAT_MESSAGES, FILE_NAMES, LOG_MESSAGES, MAIL_BODIES,
    MAIL_SUBJECTS, PLANTED_ACTIONS, PLANTED_OPENERS, PLANTED_STEERING, PLANTED_STYLES,
    PLANTED_TASKS, SEARCH_SNIPPETS, TICKET_COMMENTS, TICKET_TITLES, TODO_ITEMS, WEB_PARAGRAPHS,
    WEB_TITLES,
};
use super::super::{pick, Example, Kind};
use crate::rng::Rng;

/// The kinds of tool output, in the order their index is drawn.
const KINDS: &[&str] = &[
    "mail", "calendar", "chat", "web", "api", "files", "search", "logs", "ticket", "todo",
];

/// Source tags of what this module generates.
pub(crate) const CLEAN_SOURCE: &str = "synth/tool_doc_clean";
pub(crate) const INJECTED_SOURCE: &str = "synth/tool_doc_injected";
pub(crate) const DEBIAN_INJECTED_SOURCE: &str = "synth/debian_injected";

/// A JSON string literal (quotes and escapes included).
fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The free-text items of a document of `kind` (what a planted instruction can sit in).
fn items(kind: &str, rng: &mut Rng) -> Vec<String> {
    let n = 2 + rng.below(4);
    let pool: &[&str] = match kind {
        "mail" => MAIL_BODIES,
        "calendar" => CAL_NOTES,
        "chat" => CHAT_MESSAGES,
        "web" => WEB_PARAGRAPHS,
        "api" => API_DESCRIPTIONS,
        "files" => FILE_NAMES,
        "search" => SEARCH_SNIPPETS,
        "logs" => LOG_MESSAGES,
        "ticket" => TICKET_COMMENTS,
        _ => TODO_ITEMS,
    };
    (0..n).map(|_| fill_slots(pick(rng, pool), rng)).collect()
}

/// Lays out `items` as a tool output of `kind`.
fn render(kind: &str, items: &[String], rng: &mut Rng) -> String {
    let mut out = String::new();
    match kind {
        "mail" => {
            out.push_str("{\"messages\": [");
            for (i, body) in items.iter().enumerate() {
                let subject = fill_slots(pick(rng, MAIL_SUBJECTS), rng);
                let from = pick(rng, NAMES).to_lowercase();
                out.push_str(&format!(
                    "{}{{\"id\": {}, \"from\": \"{from}@mail.example\", \"subject\": {}, \"body\": {}}}",
                    if i > 0 { ", " } else { "" },
                    4100 + rng.below(900),
                    json_str(&subject),
                    json_str(body)
                ));
            }
            out.push_str("]}");
        }
        "calendar" => {
            for note in items {
                let title = fill_slots(pick(rng, CAL_TITLES), rng);
                out.push_str(&format!(
                    "- {title} | {:02}:{:02} | {note}\n",
                    8 + rng.below(10),
                    15 * rng.below(4)
                ));
            }
        }
        "chat" => {
            for msg in items {
                out.push_str(&format!(
                    "[{:02}:{:02}] {}: {msg}\n",
                    9 + rng.below(9),
                    rng.below(60),
                    pick(rng, NAMES)
                ));
            }
        }
        "web" => {
            let title = pick(rng, WEB_TITLES);
            out.push_str(&format!(
                "<html><head><title>{title}</title></head><body>\n<h1>{title}</h1>\n"
            ));
            for p in items {
                out.push_str(&format!("<p>{p}</p>\n"));
            }
            out.push_str("<footer>© 2024 · Privacy · Contact us</footer></body></html>");
        }
        "api" => {
            out.push_str("{\"status\": 200, \"data\": [");
            for (i, d) in items.iter().enumerate() {
                out.push_str(&format!(
                    "{}{{\"id\": \"A{}\", \"price\": {}.99, \"description\": {}}}",
                    if i > 0 { ", " } else { "" },
                    1000 + rng.below(9000),
                    5 + rng.below(200),
                    json_str(d)
                ));
            }
            out.push_str("]}");
        }
        "files" => {
            out.push_str("$ ls -l ~/Documents\n");
            for f in items {
                out.push_str(&format!(
                    "-rw-r--r-- 1 user user {:>7} {} {f}\n",
                    100 + rng.below(900_000),
                    pick(rng, &["Jan 12", "Mar 3", "Jun 30", "Oct 8"])
                ));
            }
        }
        "search" => {
            for (i, s) in items.iter().enumerate() {
                out.push_str(&format!(
                    "{}. {} — https://{}.example/{}\n   {s}\n",
                    i + 1,
                    pick(rng, WEB_TITLES),
                    pick(rng, NAMES).to_lowercase(),
                    rng.below(1000)
                ));
            }
        }
        "logs" => {
            for m in items {
                out.push_str(&format!(
                    "2024-05-{:02}T{:02}:{:02}:11Z {} {m}\n",
                    1 + rng.below(28),
                    rng.below(24),
                    rng.below(60),
                    pick(rng, &["INFO", "WARN", "ERROR", "DEBUG"])
                ));
            }
        }
        "ticket" => {
            out.push_str(&format!(
                "Ticket #{}: {}\nStatus: open · Priority: {}\n",
                100 + rng.below(9000),
                pick(rng, TICKET_TITLES),
                pick(rng, &["low", "medium", "high"])
            ));
            for c in items {
                out.push_str(&format!("\n{} commented:\n{c}\n", pick(rng, NAMES)));
            }
        }
        _ => {
            out.push_str(pick(
                rng,
                &["TODO\n", "Shopping & errands\n", "## This week\n"],
            ));
            for t in items {
                out.push_str(&format!("- [ ] {t}\n"));
            }
        }
    }
    out
}

/// One planted instruction: an action, a replacement task or answer steering, opened and
/// dressed in a random style.
fn planted_instruction(rng: &mut Rng) -> String {
    let ask = match rng.below(3) {
        0 => pick(rng, PLANTED_ACTIONS),
        1 => pick(rng, PLANTED_TASKS),
        _ => pick(rng, PLANTED_STEERING),
    };
    let ask = fill_slots(ask, rng);
    let opener = pick(rng, PLANTED_OPENERS);
    let sentence = if opener.contains("{A}") {
        let mut c = ask.chars();
        let first: String = c
            .next()
            .map(|f| f.to_uppercase().collect())
            .unwrap_or_default();
        opener.replace("{A}", &(first + c.as_str()))
    } else {
        opener.replace("{a}", &ask)
    };
    let sentence = sentence.replace("?.", "?");
    pick(rng, PLANTED_STYLES).replace("{p}", &sentence)
}

/// `items` with `payload` placed at the start, in the middle or at the end: inside an item
/// (before or after its text) or as an item of its own.
fn place(items: &mut Vec<String>, payload: String, rng: &mut Rng) {
    let at = match rng.below(3) {
        0 => 0,
        1 => items.len() / 2,
        _ => items.len() - 1,
    };
    match rng.below(3) {
        0 => items[at] = format!("{payload} {}", items[at]),
        1 => items[at] = format!("{} {payload}", items[at]),
        _ => items.insert(at + usize::from(at + 1 == items.len()), payload),
    }
}

/// Clean tool outputs and their injected twins, `pairs` of each.
pub(super) fn tool_documents(pairs: usize, rng: &mut Rng, out: &mut Vec<Example>) {
    for i in 0..pairs {
        let kind = KINDS[rng.below(KINDS.len())];
        let channel = if i % 2 == 0 {
            Channel::ToolOutput
        } else {
            Channel::Retrieved
        };
        let clean_items = items(kind, rng);
        let mut injected_items = clean_items.clone();
        let payload = planted_instruction(rng);
        place(&mut injected_items, payload, rng);
        let mut layout = rng.clone();
        let clean = render(kind, &clean_items, &mut layout);
        let injected = render(kind, &injected_items, rng);
        let mut c = Example::new(clean, channel, Kind::BenignContext, CLEAN_SOURCE);
        c.group = format!("{CLEAN_SOURCE}|{kind}");
        out.push(c);
        let mut a = Example::attack(injected, channel, INJECTED_SOURCE, false);
        a.group = format!("{INJECTED_SOURCE}|{kind}");
        out.push(a);
    }
}

/// Instructions planted in clean Debian documentation chunks (at a sentence or line
/// boundary); the chunks' groups are kept so folds stay grouped by package.
pub(super) fn planted_in_documents(
    docs: &[(&str, &str)],
    count: usize,
    rng: &mut Rng,
    out: &mut Vec<Example>,
) {
    if docs.is_empty() {
        return;
    }
    for i in 0..count {
        let (text, group) = docs[rng.below(docs.len())];
        let payload = planted_instruction(rng);
        let cuts: Vec<usize> = text
            .match_indices(['\n', '.'])
            .map(|(i, _)| i + 1)
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        let at = match rng.below(3) {
            0 => 0,
            1 if !cuts.is_empty() => cuts[rng.below(cuts.len())],
            _ => text.len(),
        };
        let sep = if rng.chance(0.5) { "\n\n" } else { " " };
        let planted = format!("{}{sep}{payload}{sep}{}", &text[..at], &text[at..]);
        let channel = if i % 3 == 0 {
            Channel::ToolOutput
        } else {
            Channel::Retrieved
        };
        let mut a = Example::attack(
            planted.trim().to_string(),
            channel,
            DEBIAN_INJECTED_SOURCE,
            false,
        );
        a.group = format!("{DEBIAN_INJECTED_SOURCE}|{group}");
        out.push(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(seed: u64) -> Vec<Example> {
        let docs = [
            (
                "Run the installer. Then restart the service.\nSee the manual for details.",
                "debian/a",
            ),
            ("Edit the config file and set the port.", "debian/b"),
        ];
        let mut out = Vec::new();
        let mut rng = Rng::new(seed);
        tool_documents(40, &mut rng, &mut out);
        planted_in_documents(&docs, 20, &mut rng, &mut out);
        out
    }

    #[test]
    fn same_seed_gives_the_same_documents() {
        let a: Vec<String> = draw(3).into_iter().map(|e| e.text).collect();
        let b: Vec<String> = draw(3).into_iter().map(|e| e.text).collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 100);
    }

    #[test]
    fn twins_are_clean_then_injected_and_differ() {
        let all = draw(5);
        for pair in all[..80].chunks(2) {
            assert_eq!(pair[0].kind, Kind::BenignContext);
            assert_eq!(pair[0].source, CLEAN_SOURCE);
            assert_eq!(pair[1].kind, Kind::Attack);
            assert_eq!(pair[1].source, INJECTED_SOURCE);
            assert_ne!(pair[0].text, pair[1].text);
            assert!(pair[0].channel.is_data() && pair[0].channel == pair[1].channel);
        }
        assert!(all[80..]
            .iter()
            .all(|e| e.kind == Kind::Attack && e.group.starts_with(DEBIAN_INJECTED_SOURCE)));
    }

    #[test]
    fn json_tool_outputs_stay_valid_json_when_injected() {
        for e in draw(9)[..80].iter().filter(|e| e.text.starts_with('{')) {
            assert!(
                serde_json::from_str::<serde_json::Value>(&e.text).is_ok(),
                "{}",
                e.text
            );
        }
    }
}
