//! Redis key names built from names the gateway does not choose (tenants, API key labels,
//! conversation ids sent by clients, confirmation ids).
//!
//! Keys are `:`-separated paths. Joining raw names with `:` is ambiguous: tenant `a:b` with
//! conversation `c` and tenant `a` with conversation `b:c` both made
//! `tools:conv:a:b:c`, so one tenant could read and bump another tenant's tool-loop
//! counters. Every name is escaped before it goes into a key, so a key decodes into its
//! parts one way only.
//!
//! The escape is percent-encoding of `%`, `:`, the Redis Cluster hash-tag braces `{` `}`,
//! and control characters, space and DEL (so keys stay printable in `redis-cli`). Names made
//! of other characters, which is every name a config normally holds, are unchanged, so the
//! keys of ordinary tenants are the same as before the escape existed.

use std::borrow::Cow;

fn escaped(b: u8) -> bool {
    matches!(b, b'%' | b':' | b'{' | b'}' | b' ' | 0x7f) || b < 0x20
}

/// `name` as one part of a Redis key: injective (two different names never give the same
/// part) and free of `:`.
pub fn key_part(name: &str) -> Cow<'_, str> {
    if !name.bytes().any(escaped) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match u8::try_from(c) {
            Ok(b) if escaped(b) => out.push_str(&format!("%{b:02X}")),
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_unchanged_and_separators_escaped() {
        assert_eq!(key_part("acme"), "acme");
        assert_eq!(key_part("team-1.prod_é"), "team-1.prod_é");
        assert_eq!(key_part("a:b"), "a%3Ab");
        assert_eq!(key_part("50%"), "50%25");
        assert_eq!(key_part("{tag} x\n"), "%7Btag%7D%20x%0A");
    }

    #[test]
    fn escaping_is_injective() {
        // The finding: these pairs joined with `:` made the same key.
        let join = |a: &str, b: &str| format!("{}:{}", key_part(a), key_part(b));
        assert_ne!(join("a:b", "c"), join("a", "b:c"));
        assert_ne!(join("a%3Ab", "c"), join("a:b", "c"));
        let names = [
            "", ":", "%", "%3A", "%253A", "a:b", "a%3Ab", "a", "b:c", "{", "%7B",
        ];
        let mut seen = std::collections::HashSet::new();
        for n in names {
            assert!(seen.insert(key_part(n).into_owned()), "{n:?} collides");
            assert!(!key_part(n).contains(':'));
        }
    }
}
