//! The Kubernetes manifests (`deploy/k8s`) against the real binary: the pod config files
//! validate, and every path, port and metric the manifests name is one the gateway
//! serves. (Rendering and schema validation: `scripts/check-deploy`.)

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::Palisade;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/k8s")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(deploy_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Values of `key: value` lines (YAML scalars, quotes removed), in file order.
fn values<'a>(yaml: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("{key}:");
    yaml.lines()
        .filter_map(|l| {
            l.trim()
                .trim_start_matches("- ")
                .strip_prefix(prefix.as_str())
        })
        .map(|v| v.trim().trim_matches('"'))
        .filter(|v| !v.is_empty())
        .collect()
}

#[test]
fn the_pod_config_files_pass_config_check() {
    for file in ["base/palisade.toml", "overlays/fleet/palisade.toml"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
            // The pod's paths (/var/lib/palisade) and env are not this
            // machine's: validate the file only.
            .args(["config", "check", "--validate-only"])
            .arg(deploy_dir().join(file))
            .output()
            .expect("palisade runs");
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_grace_periods_nest() {
    let deployment = read("base/deployment.yaml");
    let config = read("base/palisade.toml");
    let grace: u64 = values(&deployment, "terminationGracePeriodSeconds")[0]
        .parse()
        .unwrap();
    let pre_stop: u64 = values(&deployment, "seconds")[0].parse().unwrap();
    let drain_ms: u64 = values(&config.replace(" = ", ": "), "shutdown_grace_ms")[0]
        .parse()
        .unwrap();
    // The kubelet kills at `grace`; preStop runs before SIGTERM, then the drain.
    assert!(
        pre_stop * 1000 + drain_ms < grace * 1000,
        "preStop {pre_stop}s + drain {drain_ms}ms must fit in {grace}s"
    );
    let port: u16 = values(&deployment, "containerPort")[0].parse().unwrap();
    assert!(
        config.contains(&format!("listen = \"0.0.0.0:{port}\"")),
        "the container port is the one the config listens on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probes_and_scaling_metric_are_served_by_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = format!("sqlite:{}", dir.path().join("ledger.db").display());
    let audit = format!("sqlite:{}", dir.path().join("audit.db").display());
    let config = deploy_dir().join("base/palisade.toml");
    // The pod's config, with the pod's state directory moved to a temp dir.
    let gw = Palisade::serve(
        &["--config", config.to_str().unwrap()],
        &[
            ("PALISADE_LEDGER__URL", &ledger),
            ("PALISADE_POLICY__AUDIT_URL", &audit),
            ("PALISADE_MARKER_KEY", &"ab".repeat(32)),
        ],
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // One refused request, so every request metric has a sample.
    let refused = http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("not-a-key")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let deployment = read("base/deployment.yaml");
    let paths = values(&deployment, "path");
    assert!(paths.contains(&"/readyz") && paths.contains(&"/healthz"));
    for path in paths
        .iter()
        .chain(values(&deployment, "prometheus.io/path").iter())
    {
        let resp = http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
    }
    let metrics = http
        .get(gw.url("/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let hpa = read("base/hpa.yaml");
    let names = values(&hpa, "name");
    let custom: Vec<&&str> = names
        .iter()
        .filter(|n| n.starts_with("palisade_"))
        .collect();
    assert!(!custom.is_empty(), "the HPA scales on a gateway metric");
    for name in custom {
        assert!(
            metrics.lines().any(|l| l.starts_with(*name)),
            "{name} is not exported:\n{metrics}"
        );
    }
}
