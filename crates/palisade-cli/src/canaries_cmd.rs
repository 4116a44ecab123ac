//! `palisade canaries`: the model canaries of a running gateway
//! (`GET /admin/canaries`), one line per route and deployment, or the JSON.
//!
//! Must not: change anything (read-only view); print the admin key.

use anyhow::Result;
use serde_json::Value;

use crate::keys_api::ApiArgs;

/// Arguments of `palisade canaries`.
#[derive(Debug, clap::Args)]
pub(crate) struct CanariesArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Print the gateway's JSON as is.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub(crate) fn run(args: CanariesArgs) -> Result<()> {
    let view = args
        .api
        .call(reqwest::Method::GET, "/admin/canaries", None)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    print!("{}", render(&view));
    Ok(())
}

/// A pass rate as `passed/total`, `-` without results.
fn rate(scores: &Value, i: usize) -> String {
    let r = &scores["rates"][i];
    match (r["passed"].as_u64(), r["total"].as_u64()) {
        (Some(p), Some(t)) if t > 0 => format!("{p}/{t}"),
        _ => "-".to_owned(),
    }
}

fn render(view: &Value) -> String {
    let mut out = format!(
        "{:<20} {:<16} {:<20} {:<8} {:>7} {:>7} {:>7} {:>7} {:>8} {:>5}\n",
        "ROUTE",
        "BACKEND",
        "STATE",
        "HEALTH",
        "ANSWER",
        "JSON",
        "REFUSAL",
        "TRAFFIC",
        "P95_MS",
        "RUNS"
    );
    let empty = Vec::new();
    for route in view["data"].as_array().unwrap_or(&empty) {
        for d in route["deployments"].as_array().unwrap_or(&empty) {
            let s = &d["scores"];
            out.push_str(&format!(
                "{:<20} {:<16} {:<20} {:<8} {:>7} {:>7} {:>7} {:>7} {:>8} {:>5}\n",
                route["route"].as_str().unwrap_or("?"),
                d["backend"].as_str().unwrap_or("?"),
                d["state"].as_str().unwrap_or("?"),
                d["health"].as_str().unwrap_or("?"),
                rate(s, 0),
                rate(s, 1),
                rate(s, 2),
                d["traffic_pct"]
                    .as_u64()
                    .map_or_else(|| "-".to_owned(), |p| format!("{p}%")),
                s["latency_p95_ms"]
                    .as_u64()
                    .map_or_else(|| "-".to_owned(), |v| v.to_string()),
                d["runs"].as_u64().unwrap_or(0),
            ));
            for f in d["drift_reasons"].as_array().unwrap_or(&empty) {
                out.push_str(&format!("    drift: {}\n", f.as_str().unwrap_or("")));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_one_line_per_deployment_with_drift_reasons() {
        let view = json!({"data": [{"route": "m", "deployments": [
            {"backend": "stable", "state": "baseline", "health": "healthy", "traffic_pct": null, "runs": 3,
             "scores": {"rates": [{"passed": 10, "total": 10}, {"passed": 0, "total": 0}, {"passed": 4, "total": 4}], "latency_p95_ms": 12},
             "drift_reasons": []},
            {"backend": "new", "state": "rolled_back", "health": "drifted", "traffic_pct": 0, "runs": 2,
             "scores": {"rates": [{"passed": 1, "total": 10}]}, "drift_reasons": ["answer pass rate 0.10 below 0.90"]}
        ]}]});
        let text = render(&view);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[1].contains("stable") && lines[1].contains("10/10") && lines[1].contains(" 12 ")
        );
        assert!(
            lines[2].contains("rolled_back")
                && lines[2].contains("1/10")
                && lines[2].contains("0%")
        );
        assert!(lines[3].contains("drift: answer pass rate"));
    }
}
