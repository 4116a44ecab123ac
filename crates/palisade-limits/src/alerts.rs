//! Budget alert thresholds: which configured percentages of a budget a spend total has
//! crossed, and which of those are new, so each is raised once per counter.
//!
//! Budgets refuse nothing; crossing a percentage only raises an alert. A counter here is any
//! string the caller chooses (the gateway uses `tenant@YYYY-MM/unit`), so a new month is a new
//! counter and its thresholds are raised again. This decides only; delivering the alert (log,
//! metric, webhook) is the caller's.

use std::collections::HashSet;

/// The percentages of `base` that `spent` has reached, in the configured order, stopping at
/// the first one not reached (the configuration lists them ascending). A zero base is reached
/// by any spend.
pub fn crossed(percents: &[u32], base: u64, spent: u64) -> impl Iterator<Item = u32> + '_ {
    percents.iter().copied().take_while(move |&percent| {
        // In u128 so no budget times percentage overflows.
        u128::from(spent) * 100 >= u128::from(base) * u128::from(percent)
    })
}

/// The thresholds already crossed, per counter: raised once, never again.
#[derive(Debug, Clone, Default)]
pub struct ThresholdAlerts {
    percents: Vec<u32>,
    /// (counter, percent) already crossed.
    crossed: HashSet<(Box<str>, u32)>,
}

impl ThresholdAlerts {
    /// Alerts at `percents` of each counter's base, ascending (as configuration validates).
    pub fn new(percents: Vec<u32>) -> Self {
        Self {
            percents,
            crossed: HashSet::new(),
        }
    }

    /// The configured percentages.
    pub fn percents(&self) -> &[u32] {
        &self.percents
    }

    /// Marks every threshold `spent` has crossed on `counter` (whose budget is `base`) and
    /// returns those not crossed before, ascending. A caller seeding from history marks
    /// without raising what this returns: those were raised by whoever saw them cross.
    pub fn cross(&mut self, counter: &str, base: u64, spent: u64) -> Vec<u32> {
        let mut new = Vec::new();
        for percent in crossed(&self.percents, base, spent) {
            if self.crossed.insert((counter.into(), percent)) {
                new.push(percent);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_reached_by_a_total() {
        let p = [50, 80, 100];
        // (base, spent, reached)
        let cases: &[(u64, u64, &[u32])] = &[
            (1_000, 0, &[]),
            (1_000, 499, &[]),
            (1_000, 500, &[50]),
            (1_000, 799, &[50]),
            (1_000, 800, &[50, 80]),
            (1_000, 1_000, &[50, 80, 100]),
            (1_000, 5_000, &[50, 80, 100]),
            (0, 0, &[50, 80, 100]),
            (3, 2, &[50]),
            (u64::MAX, u64::MAX, &[50, 80, 100]),
            (u64::MAX, u64::MAX / 2, &[]),
        ];
        for (base, spent, expected) in cases {
            let got: Vec<u32> = crossed(&p, *base, *spent).collect();
            assert_eq!(got, *expected, "{spent} of {base}");
        }
        // Listed out of order, a higher threshold not reached hides a lower one.
        assert_eq!(crossed(&[80, 50], 100, 60).count(), 0);
    }

    #[test]
    fn each_threshold_is_new_once_per_counter() {
        let mut alerts = ThresholdAlerts::new(vec![50, 80, 100]);
        // (counter, base, spent, newly crossed)
        let steps: &[(&str, u64, u64, &[u32])] = &[
            ("acme@2026-03/tokens", 1_000, 100, &[]),
            ("acme@2026-03/tokens", 1_000, 600, &[50]),
            ("acme@2026-03/tokens", 1_000, 700, &[]),
            ("acme@2026-03/tokens", 1_000, 1_200, &[80, 100]),
            ("acme@2026-03/tokens", 1_000, 1_300, &[]),
            // Another unit, another tenant, another month: counted apart.
            ("acme@2026-03/usd_micros", 1_000, 900, &[50, 80]),
            ("beta@2026-03/tokens", 1_000, 500, &[50]),
            ("acme@2026-04/tokens", 1_000, 500, &[50]),
            // A total seen lower later (a reconcile) raises nothing again.
            ("acme@2026-04/tokens", 1_000, 100, &[]),
            ("acme@2026-04/tokens", 1_000, 510, &[]),
        ];
        for (counter, base, spent, expected) in steps {
            assert_eq!(
                alerts.cross(counter, *base, *spent),
                *expected,
                "{counter} at {spent}"
            );
        }
        assert_eq!(alerts.percents(), &[50, 80, 100]);
    }

    #[test]
    fn no_percentages_no_alerts() {
        let mut alerts = ThresholdAlerts::default();
        assert!(alerts.cross("t", 0, u64::MAX).is_empty());
    }
}
