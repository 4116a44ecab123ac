//! Rule `error-codes-documented`: every wire error code is in the README.
//!
//! Clients branch on `error.code` and the HTTP status, so each code in
//! palisade-openai's `ErrorCode` must have a row in README's `Errors` table
//! that names it (backticked) and gives the status `ErrorCode::status` maps
//! it to. The codes are read from the source text, not by linking the crate:
//! this crate must not depend on the crates it checks. The parser knows the
//! enum's shape (unit variants, `serde(rename_all = "snake_case")`, and
//! `match self { Self::A | Self::B => value }` in `as_str` and `status`); if
//! that shape changes it fails loudly rather than passing on nothing.

use std::path::{Path, PathBuf};

use crate::{TidyError, Violation};

/// The rule's name in messages.
pub const RULE: &str = "error-codes-documented";

/// The README heading whose section documents the codes.
pub const README_SECTION: &str = "Errors";

/// One `ErrorCode` variant as the source defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCodeSpec {
    /// The Rust variant (`ModelNotFound`).
    pub variant: String,
    /// The name serde gives it (`model_not_found`).
    pub serde_name: String,
    /// What `as_str` returns, if it has an arm for the variant.
    pub wire: Option<String>,
    /// What `status` returns, if it has an arm for the variant.
    pub status: Option<u16>,
}

/// Finds the file under `src_dir` (relative to `root`) defining
/// `pub enum ErrorCode` and returns its relative path and text.
pub fn locate(root: &Path, src_dir: &Path) -> Result<(PathBuf, String), TidyError> {
    for file in crate::tree::rust_files(root, src_dir)? {
        let text = crate::tree::read(&root.join(&file))?;
        if text.contains("pub enum ErrorCode") {
            return Ok((file, text));
        }
    }
    Err(TidyError::Shape {
        path: src_dir.to_path_buf(),
        what: "no `pub enum ErrorCode` found".into(),
    })
}

/// Parses the `ErrorCode` enum and its `as_str` and `status` from `src`.
pub fn parse(path: &Path, src: &str) -> Result<Vec<ErrorCodeSpec>, TidyError> {
    let shape = |what: &str| TidyError::Shape {
        path: path.to_path_buf(),
        what: what.to_string(),
    };
    let enum_at = src
        .find("pub enum ErrorCode")
        .ok_or_else(|| shape("no `pub enum ErrorCode`"))?;
    let enum_body = braced_block(&src[enum_at..]).ok_or_else(|| shape("unclosed ErrorCode"))?;
    let snake_case = enum_attributes(&src[..enum_at]).contains("rename_all = \"snake_case\"");
    let impl_at = src
        .find("impl ErrorCode")
        .ok_or_else(|| shape("no `impl ErrorCode`"))?;
    let impl_body = braced_block(&src[impl_at..]).ok_or_else(|| shape("unclosed impl"))?;
    let fn_body = |name: &str| {
        impl_body
            .find(&format!("fn {name}("))
            .and_then(|at| braced_block(&impl_body[at..]))
            .ok_or_else(|| shape(&format!("no `fn {name}` in `impl ErrorCode`")))
    };
    let wires = match_arms(fn_body("as_str")?);
    let statuses = match_arms(fn_body("status")?);

    let specs: Vec<ErrorCodeSpec> = variants(enum_body)
        .into_iter()
        .map(|(variant, rename)| {
            let serde_name = match rename {
                Some(name) => name,
                None if snake_case => to_snake_case(&variant),
                None => variant.clone(),
            };
            let arm = |arms: &[(String, Token)]| {
                arms.iter()
                    .find(|(v, _)| *v == variant)
                    .map(|(_, t)| t.clone())
            };
            let wire = match arm(&wires) {
                Some(Token::Str(s)) => Some(s),
                _ => None,
            };
            let status = match arm(&statuses) {
                Some(Token::Num(n)) => u16::try_from(n).ok(),
                _ => None,
            };
            ErrorCodeSpec {
                variant,
                serde_name,
                wire,
                status,
            }
        })
        .collect();
    if specs.is_empty() {
        return Err(shape("`ErrorCode` has no variants"));
    }
    Ok(specs)
}

/// Violations within the source itself: a variant missing from `as_str` or
/// `status`, or an `as_str` that disagrees with serde's name.
pub fn check_source(path: &Path, specs: &[ErrorCodeSpec]) -> Vec<Violation> {
    let mut out = Vec::new();
    for spec in specs {
        let v = &spec.variant;
        match &spec.wire {
            None => out.push(Violation::new(
                path,
                RULE,
                format!("ErrorCode::{v} has no string arm in `as_str`"),
            )),
            Some(wire) if *wire != spec.serde_name => out.push(Violation::new(
                path,
                RULE,
                format!(
                    "ErrorCode::{v}: `as_str` says {wire:?} but serde says {:?}",
                    spec.serde_name
                ),
            )),
            Some(_) => {}
        }
        if spec.status.is_none() {
            out.push(Violation::new(
                path,
                RULE,
                format!("ErrorCode::{v} has no numeric arm in `status`"),
            ));
        }
    }
    out
}

/// Violations in the README (at `path`, text `readme`): a code with no row
/// in the [`README_SECTION`] section's tables, or a row with another status.
pub fn check_readme(path: &Path, readme: &str, specs: &[ErrorCodeSpec]) -> Vec<Violation> {
    let Some(section) = section(readme, README_SECTION) else {
        return vec![Violation::new(
            path,
            RULE,
            format!("no `{README_SECTION}` section documenting the error codes"),
        )];
    };
    let rows: Vec<Vec<&str>> = section
        .iter()
        .filter(|l| l.trim_start().starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    for spec in specs {
        let (Some(wire), Some(status)) = (&spec.wire, spec.status) else {
            continue; // reported by `check_source`
        };
        let code_cell = format!("`{wire}`");
        let status_cell = status.to_string();
        let mut named = rows.iter().filter(|r| r.contains(&code_cell.as_str()));
        let Some(first) = named.next() else {
            out.push(Violation::new(
                path,
                RULE,
                format!(
                    "error code `{wire}` (ErrorCode::{}, status {status}) has no row in the `{README_SECTION}` table",
                    spec.variant
                ),
            ));
            continue;
        };
        let has_status = |r: &Vec<&str>| r.contains(&status_cell.as_str());
        if !has_status(first) && !named.any(has_status) {
            out.push(Violation::new(
                path,
                RULE,
                format!(
                    "error code `{wire}`: the `{README_SECTION}` table does not give its status {status} (ErrorCode::status)"
                ),
            ));
        }
    }
    out
}

/// The lines under the Markdown heading titled `title`, up to the next
/// heading of the same or a higher level.
fn section<'a>(markdown: &'a str, title: &str) -> Option<Vec<&'a str>> {
    let level_of = |line: &str| {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        (hashes > 0 && line[hashes..].starts_with(' ')).then_some(hashes)
    };
    let mut lines = markdown.lines();
    let level = lines
        .by_ref()
        .find_map(|l| level_of(l).filter(|&n| l[n..].trim() == title))?;
    Some(
        lines
            .take_while(|l| level_of(l).is_none_or(|n| n > level))
            .collect(),
    )
}

/// The attribute and doc lines directly above the item that starts at the
/// end of `before`.
fn enum_attributes(before: &str) -> String {
    let mut lines: Vec<&str> = before
        .lines()
        .rev()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| l.starts_with("#[") || l.starts_with("///"))
        .collect();
    lines.reverse();
    lines.join("\n")
}

/// The text inside the first `{ … }` of `text`, skipping braces in string
/// literals and `//` comments.
fn braced_block(text: &str) -> Option<&str> {
    let mut depth = 0usize;
    let mut start = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '/' if chars.peek().is_some_and(|&(_, n)| n == '/') => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '{' => {
                depth += 1;
                start.get_or_insert(i + 1);
            }
            '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(&text[start?..i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// The enum's variants with their `#[serde(rename = "…")]`, if any.
fn variants(body: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut rename = None;
    let mut depth = 0usize;
    for line in body.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        if line.starts_with("#[") {
            if let Some(rest) = line.split("rename = \"").nth(1) {
                rename = rest.split('"').next().map(str::to_string);
            }
            continue;
        }
        if depth == 0 {
            let ident: String = line
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if ident.starts_with(|c: char| c.is_ascii_uppercase()) {
                out.push((ident, rename.take()));
            }
        }
        let opens = line.matches(['{', '(']).count();
        let closes = line.matches(['}', ')']).count();
        depth = (depth + opens).saturating_sub(closes);
    }
    out
}

/// serde's `snake_case` for a `PascalCase` variant name.
fn to_snake_case(variant: &str) -> String {
    let mut out = String::new();
    for (i, c) in variant.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// A token of a `match` body, as far as this parser cares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Variant(String),
    Arrow,
    Str(String),
    Num(u64),
    Other,
}

/// `(variant, value)` for every `Self::A | ErrorCode::B => value` arm.
fn match_arms(body: &str) -> Vec<(String, Token)> {
    let mut out = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut tokens = tokenize(body).into_iter();
    while let Some(token) = tokens.next() {
        match token {
            Token::Variant(v) => pending.push(v),
            Token::Arrow => {
                let value = tokens.next().unwrap_or(Token::Other);
                out.extend(pending.drain(..).map(|v| (v, value.clone())));
            }
            _ => {}
        }
    }
    out
}

fn tokenize(body: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            let mut s = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => s.extend(chars.next()),
                    '"' => break,
                    _ => s.push(c),
                }
            }
            out.push(Token::Str(s));
        } else if c.is_ascii_digit() {
            let mut n = String::from(c);
            while let Some(d) = chars.next_if(|d| d.is_ascii_digit() || *d == '_') {
                n.push(d);
            }
            out.push(n.replace('_', "").parse().map_or(Token::Other, Token::Num));
        } else if c.is_alphabetic() || c == '_' {
            let mut path = String::from(c);
            while let Some(d) = chars.next_if(|d| d.is_alphanumeric() || *d == '_' || *d == ':') {
                path.push(d);
            }
            out.push(
                match path
                    .strip_prefix("Self::")
                    .or_else(|| path.strip_prefix("ErrorCode::"))
                {
                    Some(variant) => Token::Variant(variant.to_string()),
                    None => Token::Other,
                },
            );
        } else if c == '=' && chars.next_if_eq(&'>').is_some() {
            out.push(Token::Arrow);
        } else if c == '/' && chars.next_if_eq(&'/').is_some() {
            for c in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
        } else if !c.is_whitespace() && c != '|' {
            out.push(Token::Other);
        }
    }
    out
}

#[cfg(test)]
mod tests;
