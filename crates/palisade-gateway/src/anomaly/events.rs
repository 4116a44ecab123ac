//! Reading `POST /admin/scaling-events` bodies: a generic JSON event, a
//! Kubernetes HorizontalPodAutoscaler object (as `kubectl get hpa -o json`
//! or a watch event prints it) or a KEDA CloudEvent.
//!
//! Must not: act on the event; it only turns a body into a
//! [`palisade_anomaly::ScaleEvent`] or says what is wrong with it.

use palisade_anomaly::ScaleEvent;
use serde_json::Value;

/// Most replicas an event may name: a guard against a typo (or a hostile
/// body) turning the load normalization into nonsense.
pub(crate) const MAX_REPLICAS: u64 = 100_000;

/// Reads a scaling event. Shapes, tried in order:
/// - generic: `{"replicas": 4, "source": "ops"}` (`replicas` optional,
///   `desired_replicas` accepted as a synonym);
/// - HPA: `{"kind": "HorizontalPodAutoscaler", "status": {"desiredReplicas": 4,
///   "currentReplicas": 1}}`, also wrapped in a watch event
///   (`{"type": "MODIFIED", "object": {…}}`);
/// - KEDA CloudEvent: `{"specversion": "1.0", "type": "keda.scaledobject…"
///   or "com.cloudeventsource.keda", "data": {…}}`: a scale event under way,
///   replica count unknown unless `data.replicas` says.
pub(crate) fn parse(body: &Value) -> Result<ScaleEvent, String> {
    let Some(obj) = body.as_object() else {
        return Err("a scaling event is a JSON object".to_owned());
    };
    let hpa = obj
        .get("object")
        .filter(|o| kind_is_hpa(o))
        .or_else(|| kind_is_hpa(body).then_some(body));
    if let Some(hpa) = hpa {
        let status = hpa.get("status");
        let replicas = status
            .and_then(|s| s.get("desiredReplicas"))
            .or_else(|| hpa.pointer("/spec/replicas"));
        return Ok(ScaleEvent {
            replicas: replicas_of(replicas, "status.desiredReplicas")?,
            source: "hpa".to_owned(),
        });
    }
    if obj.contains_key("specversion") {
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or_default();
        if !kind.to_ascii_lowercase().contains("keda") {
            return Err(format!(
                "a CloudEvent of type {kind:?} is not a KEDA scaling event"
            ));
        }
        return Ok(ScaleEvent {
            replicas: replicas_of(body.pointer("/data/replicas"), "data.replicas")?,
            source: "keda".to_owned(),
        });
    }
    let replicas = obj.get("replicas").or_else(|| obj.get("desired_replicas"));
    let source = obj
        .get("source")
        .and_then(Value::as_str)
        .unwrap_or("generic")
        .chars()
        .take(64)
        .collect();
    Ok(ScaleEvent {
        replicas: replicas_of(replicas, "replicas")?,
        source,
    })
}

fn kind_is_hpa(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("HorizontalPodAutoscaler")
}

fn replicas_of(v: Option<&Value>, field: &str) -> Result<Option<u32>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_REPLICAS).contains(&n) => Ok(u32::try_from(n).ok()),
            _ => Err(format!(
                "`{field}` must be an integer from 1 to {MAX_REPLICAS}"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes_are_read() {
        let cases = [
            (json!({"replicas": 4, "source": "ops"}), Some(4), "ops"),
            (json!({"desired_replicas": 2}), Some(2), "generic"),
            (json!({}), None, "generic"),
            (
                json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                       "metadata": {"name": "palisade"},
                       "status": {"currentReplicas": 1, "desiredReplicas": 4}}),
                Some(4),
                "hpa",
            ),
            (
                json!({"type": "MODIFIED", "object": {"kind": "HorizontalPodAutoscaler",
                       "spec": {"replicas": 3}, "status": {}}}),
                Some(3),
                "hpa",
            ),
            (
                json!({"specversion": "1.0", "type": "keda.scaledobject.ready.v1",
                       "source": "/c/keda/keda", "subject": "/c/default/scaledobject/palisade",
                       "data": {"reason": "KEDAScaleTargetActivated"}}),
                None,
                "keda",
            ),
        ];
        for (body, replicas, source) in cases {
            let e = parse(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(
                (e.replicas, e.source.as_str()),
                (replicas, source),
                "{body}"
            );
        }
    }

    #[test]
    fn bad_bodies_are_named() {
        for (body, needle) in [
            (json!([1]), "JSON object"),
            (json!({"replicas": 0}), "replicas"),
            (json!({"replicas": -3}), "replicas"),
            (json!({"replicas": 1e12}), "replicas"),
            (json!({"replicas": "4"}), "replicas"),
            (
                json!({"kind": "HorizontalPodAutoscaler", "status": {"desiredReplicas": 10_000_000}}),
                "desiredReplicas",
            ),
            (
                json!({"specversion": "1.0", "type": "com.example.order"}),
                "not a KEDA",
            ),
        ] {
            let err = parse(&body).unwrap_err();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }
}
