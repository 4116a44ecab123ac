//! Replica records and the view of the live ones.

use serde::{Deserialize, Serialize};

/// What one replica says about itself on every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// Stable for the process's life (pod name + process id by default).
    pub id: String,
    /// The serial of the security policy (bundle) it enforces; 0 for an unsigned one.
    pub serial: u64,
    /// The policy version it enforces (content hash), as in audit records.
    pub version: String,
    /// When the process started (unix ms).
    pub started_unix_ms: u64,
    /// When it started enforcing a verified policy (unix ms); `None`: refusing traffic.
    pub enforcing_since_unix_ms: Option<u64>,
    /// Its last heartbeat (unix ms, its own clock).
    pub heartbeat_unix_ms: u64,
}

impl Replica {
    /// Process start to enforcing, in ms, once enforcing.
    pub fn provisioning_ms(&self) -> Option<u64> {
        self.enforcing_since_unix_ms
            .map(|e| e.saturating_sub(self.started_unix_ms))
    }

    /// Whether it enforces a verified policy.
    pub fn enforcing(&self) -> bool {
        self.enforcing_since_unix_ms.is_some()
    }
}

/// The live replicas at one instant, sorted by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FleetView {
    /// Live replicas (heartbeat within the time-to-live), by id.
    pub replicas: Vec<Replica>,
    /// The highest serial any live, enforcing replica runs (0 when none enforces).
    pub fleet_serial: u64,
    /// `fleet_serial` minus the lowest serial an enforcing replica runs: how many
    /// serials the slowest replica is behind.
    pub skew: u64,
}

impl FleetView {
    /// The view of `records` at `now_unix_ms`: records whose heartbeat is older than
    /// `ttl_ms` are dead (a replica that crashed stops heartbeating); duplicate ids keep
    /// the latest heartbeat. A heartbeat from the future (clock skew) counts as now.
    pub fn at(records: impl IntoIterator<Item = Replica>, now_unix_ms: u64, ttl_ms: u64) -> Self {
        let mut replicas: Vec<Replica> = Vec::new();
        for r in records {
            if now_unix_ms.saturating_sub(r.heartbeat_unix_ms) > ttl_ms {
                continue;
            }
            match replicas.iter_mut().find(|x| x.id == r.id) {
                Some(x) if x.heartbeat_unix_ms < r.heartbeat_unix_ms => *x = r,
                Some(_) => {}
                None => replicas.push(r),
            }
        }
        replicas.sort_by(|a, b| a.id.cmp(&b.id));
        let serials = || replicas.iter().filter(|r| r.enforcing()).map(|r| r.serial);
        let fleet_serial = serials().max().unwrap_or(0);
        let lowest = serials().min().unwrap_or(0);
        Self {
            fleet_serial,
            skew: fleet_serial - lowest,
            replicas,
        }
    }

    /// The replica with `id`, if live.
    pub fn get(&self, id: &str) -> Option<&Replica> {
        self.replicas.iter().find(|r| r.id == id)
    }

    /// Whether `r` runs an older serial than the fleet (only enforcing replicas count).
    pub fn behind(&self, r: &Replica) -> bool {
        r.enforcing() && r.serial < self.fleet_serial
    }
}

#[cfg(test)]
pub(crate) fn replica(id: &str, serial: u64, enforcing: Option<u64>, heartbeat: u64) -> Replica {
    Replica {
        id: id.to_owned(),
        serial,
        version: format!("v{serial}"),
        started_unix_ms: 1_000,
        enforcing_since_unix_ms: enforcing,
        heartbeat_unix_ms: heartbeat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (records, now) -> (live ids, fleet serial, skew), with a 3 s time-to-live.
    type Row = (Vec<Replica>, u64, &'static [&'static str], u64, u64);

    #[test]
    fn live_replicas_skew_and_dead_ones() {
        let table: Vec<Row> = vec![
            (vec![], 10_000, &[], 0, 0),
            (
                vec![
                    replica("b", 7, Some(1_500), 9_000),
                    replica("a", 7, Some(1_200), 9_500),
                ],
                10_000,
                &["a", "b"],
                7,
                0,
            ),
            // c's heartbeat is 6 s old with a 3 s ttl: dead, and its old serial no skew.
            (
                vec![
                    replica("a", 8, Some(1_200), 9_500),
                    replica("c", 5, Some(1_100), 4_000),
                ],
                10_000,
                &["a"],
                8,
                0,
            ),
            // b enforces serial 6 while a runs 8: two behind.
            (
                vec![
                    replica("a", 8, Some(1_200), 9_500),
                    replica("b", 6, Some(1_300), 9_900),
                ],
                10_000,
                &["a", "b"],
                8,
                2,
            ),
            // A replica not yet enforcing does not count towards serials or skew.
            (
                vec![
                    replica("a", 8, Some(1_200), 9_500),
                    replica("n", 0, None, 9_900),
                ],
                10_000,
                &["a", "n"],
                8,
                0,
            ),
            // Duplicate id: the latest heartbeat wins; a future heartbeat is live.
            (
                vec![
                    replica("a", 3, Some(1_200), 9_000),
                    replica("a", 4, Some(1_200), 12_000),
                ],
                10_000,
                &["a"],
                4,
                0,
            ),
        ];
        for (records, now, ids, serial, skew) in table {
            let v = FleetView::at(records.clone(), now, 3_000);
            let got: Vec<&str> = v.replicas.iter().map(|r| r.id.as_str()).collect();
            assert_eq!(got, ids, "{records:?}");
            assert_eq!((v.fleet_serial, v.skew), (serial, skew), "{records:?}");
        }
    }

    #[test]
    fn provisioning_is_start_to_enforcing() {
        let r = replica("a", 1, Some(1_750), 2_000);
        assert_eq!(r.provisioning_ms(), Some(750));
        assert_eq!(replica("a", 1, None, 2_000).provisioning_ms(), None);
    }

    #[test]
    fn a_record_round_trips_through_json() {
        let r = replica("pod-7:42", 9, Some(1_500), 2_000);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Replica>(&json).unwrap(), r);
    }
}
