//! The console's server-side session table: opaque random ids to the admin
//! key that logged in, each with a per-session CSRF token and a fixed
//! expiry, bounded in size.
//!
//! Must not: read the clock (every call takes `now`), hand out an id the
//! client chose (no fixation: ids are minted here at login only), or grow
//! past its bound (a login flood evicts the oldest sessions, never
//! allocates more).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A live session's view: what a request carrying its cookie may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// The admin key that logged in; injected as `Authorization: Bearer`
    /// so every admin handler authenticates exactly as for a script.
    pub(crate) key: String,
    /// The per-session token every state-changing call must echo in
    /// `x-csrf-token`.
    pub(crate) csrf: String,
    /// Who logged in (for the page header).
    pub(crate) tenant: String,
    pub(crate) key_name: String,
    created: Instant,
    expires: Instant,
}

/// Sessions by the SHA-256 of their id: the table never holds a usable
/// cookie value, and a lookup's timing depends on the hash, not on how
/// much of a guessed id matches.
#[derive(Debug)]
pub(crate) struct SessionTable {
    ttl: Duration,
    max: usize,
    by_hash: HashMap<[u8; 32], Session>,
}

/// A new session: the cookie value to set and the CSRF token to give the page.
#[derive(Debug, Clone)]
pub(crate) struct Minted {
    pub(crate) id: String,
    pub(crate) csrf: String,
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// 32 random bytes as hex; `None` only when the OS has no randomness.
pub(crate) fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

/// Equality whose time does not depend on where two tokens first differ.
pub(crate) fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl SessionTable {
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max: max.max(1),
            by_hash: HashMap::new(),
        }
    }

    /// Opens a session for `key` with fresh random `id` and `csrf` (given
    /// by the caller so tests can pin them). Drops expired sessions first,
    /// then, at the bound, the oldest.
    pub(crate) fn open(
        &mut self,
        minted: Minted,
        key: String,
        tenant: String,
        key_name: String,
        now: Instant,
    ) {
        self.by_hash.retain(|_, s| s.expires > now);
        while self.by_hash.len() >= self.max {
            let oldest = self
                .by_hash
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(h, _)| *h);
            match oldest {
                Some(h) => self.by_hash.remove(&h),
                None => break,
            };
        }
        self.by_hash.insert(
            digest(&minted.id),
            Session {
                key,
                csrf: minted.csrf,
                tenant,
                key_name,
                created: now,
                expires: now + self.ttl,
            },
        );
    }

    /// The live session with cookie value `id`; an expired one is removed.
    pub(crate) fn get(&mut self, id: &str, now: Instant) -> Option<Session> {
        let h = digest(id);
        match self.by_hash.get(&h) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                self.by_hash.remove(&h);
                None
            }
            None => None,
        }
    }

    /// Ends the session with cookie value `id` (logout); whether one was live.
    pub(crate) fn close(&mut self, id: &str) -> bool {
        self.by_hash.remove(&digest(id)).is_some()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_hash.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minted(i: usize) -> Minted {
        Minted {
            id: format!("id-{i}"),
            csrf: format!("csrf-{i}"),
        }
    }

    fn open(t: &mut SessionTable, i: usize, now: Instant) {
        t.open(
            minted(i),
            format!("key-{i}"),
            "ops".into(),
            "admin".into(),
            now,
        );
    }

    #[test]
    fn a_session_lives_until_its_fixed_expiry() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(Duration::from_secs(60), 8);
        open(&mut t, 1, t0);
        // Use does not extend it.
        for (after, live) in [(0, true), (30, true), (59, true), (60, false), (61, false)] {
            let got = t.get("id-1", t0 + Duration::from_secs(after));
            assert_eq!(got.is_some(), live, "after {after}s");
        }
        // Expired sessions are removed on sight.
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn unknown_and_closed_ids_find_nothing() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(Duration::from_secs(60), 8);
        open(&mut t, 1, t0);
        assert!(t.get("id-2", t0).is_none());
        assert!(t.get("", t0).is_none());
        assert_eq!(t.get("id-1", t0).map(|s| s.csrf), Some("csrf-1".into()));
        assert!(t.close("id-1"));
        assert!(!t.close("id-1"));
        assert!(t.get("id-1", t0).is_none());
    }

    #[test]
    fn the_table_is_bounded_and_drops_the_oldest_first() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(Duration::from_secs(3_600), 4);
        for i in 0..100 {
            open(&mut t, i, t0 + Duration::from_millis(i as u64));
            assert!(t.len() <= 4);
        }
        assert!(t.get("id-95", t0).is_none());
        for i in 96..100 {
            assert!(t.get(&format!("id-{i}"), t0).is_some(), "id-{i}");
        }
    }

    #[test]
    fn expired_sessions_make_room_before_live_ones_are_evicted() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(Duration::from_secs(10), 2);
        open(&mut t, 1, t0);
        open(&mut t, 2, t0 + Duration::from_secs(9));
        // At t0+11 session 1 has expired: opening 3 drops it, keeps 2.
        open(&mut t, 3, t0 + Duration::from_secs(11));
        assert!(t.get("id-2", t0 + Duration::from_secs(11)).is_some());
        assert!(t.get("id-3", t0 + Duration::from_secs(11)).is_some());
    }

    #[test]
    fn token_comparison() {
        for (a, b, same) in [
            ("abc", "abc", true),
            ("abc", "abd", false),
            ("abc", "ab", false),
            ("", "", true),
            ("", "a", false),
        ] {
            assert_eq!(same_token(a, b), same, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn random_tokens_are_long_and_distinct() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
