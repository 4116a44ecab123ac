//! Which backend state a reload carries into the next routing snapshot:
//! a backend whose identity (its name and every setting of its
//! `[backends.<name>]` table, plus the tenant keys sent to it) is unchanged
//! keeps its HTTP client and pool, breaker, queue, latency average, passive
//! health, retry budget and probe; any other backend starts fresh; a
//! backend gone from the file is dropped (requests still holding the old
//! snapshot finish on it).
//!
//! Pure: compares identities, reads no file, clock or socket. Identity is
//! the whole table on purpose: a changed URL, timeout or breaker setting
//! describes another upstream (or another contract with it), and state
//! learnt under the old one would be about something else.

use std::collections::HashMap;

/// A backend's identity: its name and a canonical rendering of everything
/// configured about it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) settings: String,
}

/// What a reload does with each backend.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Plan {
    /// For each backend of the new snapshot (in its order), the index of
    /// the old backend whose state it takes over, or `None` (fresh).
    pub(crate) carried: Vec<Option<usize>>,
    /// Old backends no new one takes over (by old index): their probes stop.
    pub(crate) dropped: Vec<usize>,
}

/// The plan from the `old` snapshot's backends to the `new` one's.
pub(crate) fn plan(old: &[Identity], new: &[Identity]) -> Plan {
    let by_identity: HashMap<&Identity, usize> =
        old.iter().enumerate().map(|(i, id)| (id, i)).collect();
    let carried: Vec<Option<usize>> = new.iter().map(|id| by_identity.get(id).copied()).collect();
    let dropped = (0..old.len())
        .filter(|i| !carried.contains(&Some(*i)))
        .collect();
    Plan { carried, dropped }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[(&str, &str)]) -> Vec<Identity> {
        list.iter()
            .map(|(name, settings)| Identity {
                name: (*name).to_owned(),
                settings: (*settings).to_owned(),
            })
            .collect()
    }

    /// `(old, new, carried, dropped)`.
    fn check(
        old: &[(&str, &str)],
        new: &[(&str, &str)],
        carried: &[Option<usize>],
        dropped: &[usize],
    ) {
        let p = plan(&ids(old), &ids(new));
        assert_eq!(p.carried, carried, "{old:?} -> {new:?}");
        assert_eq!(p.dropped, dropped, "{old:?} -> {new:?}");
    }

    #[test]
    fn unchanged_backends_carry_their_state_and_others_start_fresh() {
        // Nothing changes: everything carried.
        check(
            &[("a", "u1"), ("b", "u2")],
            &[("a", "u1"), ("b", "u2")],
            &[Some(0), Some(1)],
            &[],
        );
        // A backend added before the others (names sort): indices move,
        // state follows the identity, not the position.
        check(
            &[("b", "u2"), ("c", "u3")],
            &[("a", "u1"), ("b", "u2"), ("c", "u3")],
            &[None, Some(0), Some(1)],
            &[],
        );
        // A backend removed: dropped, the rest carried.
        check(
            &[("a", "u1"), ("b", "u2")],
            &[("b", "u2")],
            &[Some(1)],
            &[0],
        );
        // Same name, another URL or setting: a new upstream, fresh state,
        // and the old one's probe stops.
        check(&[("a", "u1")], &[("a", "u9")], &[None], &[0]);
        // Same settings under another name: another backend (metrics,
        // breaker and logs are by name).
        check(&[("a", "u1")], &[("b", "u1")], &[None], &[0]);
        // Everything removed, then from nothing.
        check(&[("a", "u1")], &[], &[], &[0]);
        check(&[], &[("a", "u1")], &[None], &[]);
    }
}
