//! What changed between two views of the fleet, as events.

use serde::Serialize;

use crate::view::FleetView;

/// Why a replica left the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftBecause {
    /// Its heartbeat stopped (crash, partition, kill -9) and the record expired.
    Expired,
    /// It withdrew itself on a clean shutdown.
    Withdrew,
}

/// One change in the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FleetEvent {
    /// A replica appeared.
    Joined { id: String },
    /// A replica started enforcing a verified policy.
    Enforcing {
        id: String,
        serial: u64,
        provisioning_ms: Option<u64>,
    },
    /// A replica runs an older serial than the fleet.
    Behind {
        id: String,
        serial: u64,
        fleet_serial: u64,
    },
    /// A replica that was behind runs the fleet's serial again.
    CaughtUp { id: String, serial: u64 },
    /// A replica left.
    Left { id: String, because: LeftBecause },
}

impl FleetEvent {
    /// A short stable name, for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            FleetEvent::Joined { .. } => "joined",
            FleetEvent::Enforcing { .. } => "enforcing",
            FleetEvent::Behind { .. } => "behind",
            FleetEvent::CaughtUp { .. } => "caught_up",
            FleetEvent::Left { .. } => "left",
        }
    }
}

/// The events that take the fleet from `prev` to `next`. `withdrawn` names replicas
/// known to have withdrawn cleanly (the others that vanished expired). Order: joins,
/// then per replica enforcing / behind / caught up, then departures; each by id.
pub fn events(prev: &FleetView, next: &FleetView, withdrawn: &[String]) -> Vec<FleetEvent> {
    let mut out = Vec::new();
    for r in &next.replicas {
        let before = prev.get(&r.id);
        if before.is_none() {
            out.push(FleetEvent::Joined { id: r.id.clone() });
        }
        if r.enforcing() && !before.is_some_and(|b| b.enforcing()) {
            out.push(FleetEvent::Enforcing {
                id: r.id.clone(),
                serial: r.serial,
                provisioning_ms: r.provisioning_ms(),
            });
        }
        let was_behind = before.is_some_and(|b| prev.behind(b));
        let is_behind = next.behind(r);
        // Behind is reported again when the gap grows (a second newer serial went out).
        let gap_grew = before.is_some_and(|b| {
            prev.fleet_serial.saturating_sub(b.serial) < next.fleet_serial.saturating_sub(r.serial)
        });
        if is_behind && (!was_behind || gap_grew) {
            out.push(FleetEvent::Behind {
                id: r.id.clone(),
                serial: r.serial,
                fleet_serial: next.fleet_serial,
            });
        } else if was_behind && !is_behind && r.enforcing() {
            out.push(FleetEvent::CaughtUp {
                id: r.id.clone(),
                serial: r.serial,
            });
        }
    }
    for r in &prev.replicas {
        if next.get(&r.id).is_none() {
            let because = if withdrawn.iter().any(|w| w == &r.id) {
                LeftBecause::Withdrew
            } else {
                LeftBecause::Expired
            };
            out.push(FleetEvent::Left {
                id: r.id.clone(),
                because,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::replica;

    fn view(rs: Vec<crate::Replica>) -> FleetView {
        FleetView::at(rs, 10_000, 3_000)
    }

    /// (previous view, next view, withdrawn ids, expected `kind:id`s)
    type Row = (
        Vec<crate::Replica>,
        Vec<crate::Replica>,
        Vec<String>,
        Vec<&'static str>,
    );

    #[test]
    fn events_between_views() {
        let a7 = || replica("a", 7, Some(1_200), 9_900);
        let a8 = || replica("a", 8, Some(1_200), 9_900);
        let a9 = || replica("a", 9, Some(1_200), 9_900);
        let b_new = || replica("b", 0, None, 9_900);
        let b7 = || replica("b", 7, Some(1_800), 9_900);
        let b8 = || replica("b", 8, Some(1_800), 9_900);
        let kinds = |e: &[FleetEvent]| {
            e.iter()
                .map(|e| format!("{}:{}", e.kind(), id(e)))
                .collect::<Vec<_>>()
        };
        // (prev, next, withdrawn, expected)
        let table: Vec<Row> = vec![
            (vec![a7()], vec![a7()], vec![], vec![]),
            (vec![a7()], vec![a7(), b_new()], vec![], vec!["joined:b"]),
            (
                vec![a7(), b_new()],
                vec![a7(), b7()],
                vec![],
                vec!["enforcing:b"],
            ),
            // A replica that joins already enforcing: both events, in order.
            (
                vec![a7()],
                vec![a7(), b7()],
                vec![],
                vec!["joined:b", "enforcing:b"],
            ),
            // a activates serial 8 first: b is behind, then catches up.
            (vec![a7(), b7()], vec![a8(), b7()], vec![], vec!["behind:b"]),
            (vec![a8(), b7()], vec![a8(), b7()], vec![], vec![]),
            (vec![a8(), b7()], vec![a9(), b7()], vec![], vec!["behind:b"]),
            (
                vec![a8(), b7()],
                vec![a8(), b8()],
                vec![],
                vec!["caught_up:b"],
            ),
            (
                vec![a8(), b8()],
                vec![a8()],
                vec!["b".to_owned()],
                vec!["left:b"],
            ),
            (vec![a8(), b8()], vec![a8()], vec![], vec!["left:b"]),
        ];
        for (prev, next, withdrawn, want) in table {
            let got = events(&view(prev.clone()), &view(next.clone()), &withdrawn);
            assert_eq!(kinds(&got), want, "{prev:?} -> {next:?}");
        }
    }

    #[test]
    fn departure_says_why() {
        let prev = view(vec![
            replica("a", 1, Some(1), 9_900),
            replica("b", 1, Some(1), 9_900),
        ]);
        let next = view(vec![]);
        let got = events(&prev, &next, &["a".to_owned()]);
        assert_eq!(
            got,
            vec![
                FleetEvent::Left {
                    id: "a".into(),
                    because: LeftBecause::Withdrew
                },
                FleetEvent::Left {
                    id: "b".into(),
                    because: LeftBecause::Expired
                },
            ]
        );
    }

    fn id(e: &FleetEvent) -> &str {
        match e {
            FleetEvent::Joined { id }
            | FleetEvent::Enforcing { id, .. }
            | FleetEvent::Behind { id, .. }
            | FleetEvent::CaughtUp { id, .. }
            | FleetEvent::Left { id, .. } => id,
        }
    }
}
