//! What can be checked of the observability stack and the deployment files without a Docker
//! engine or a cluster: every YAML and JSON parses, Prometheus' config passes `promtool`, the
//! collector's pipelines are wired, every data-source uid a dashboard or link uses exists, the
//! Kubernetes manifests agree with the services' defaults, and — with the BDD suite's help — every
//! metric a dashboard queries is one the services really emit.

use anyhow::Context as _;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> PathBuf {
    cruncan_config::workspace_dir()
}

/// Every document of a (multi-document) YAML file.
pub fn yaml_docs(path: &Path) -> anyhow::Result<Vec<Yaml>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_yaml_ng::with::singleton_map_recursive::deserialize(d).map_err(anyhow::Error::from))
        .collect::<anyhow::Result<Vec<Yaml>>>()
        .with_context(|| format!("parsing {}", path.display()))
}

/// The dashboards' JSON, by file name.
pub fn dashboards() -> anyhow::Result<Vec<(String, Json)>> {
    let dir = root().join("grafanastack/grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let json = serde_json::from_str(&std::fs::read_to_string(&path)?)
                .with_context(|| format!("parsing {}", path.display()))?;
            out.push((path.file_name().unwrap_or_default().to_string_lossy().into_owned(), json));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Every PromQL expression of every dashboard panel.
pub fn dashboard_queries() -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (file, d) in dashboards()? {
        for panel in d["panels"].as_array().into_iter().flatten() {
            for t in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push((
                        format!("{file}: {}", panel["title"].as_str().unwrap_or("?")),
                        expr.to_owned(),
                    ));
                }
            }
        }
    }
    Ok(out)
}

// ANCHOR: selectors
/// The metric names a PromQL expression selects: every `name{...}` (the dashboards always write
/// a selector with braces, so functions and `by (...)` clauses are never mistaken for metrics).
pub fn metric_selectors(expr: &str) -> BTreeSet<String> {
    let bytes = expr.as_bytes();
    let mut out = BTreeSet::new();
    for (i, b) in bytes.iter().enumerate() {
        if *b != b'{' {
            continue;
        }
        let start = bytes[..i]
            .iter()
            .rposition(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b':'))
            .map_or(0, |p| p + 1);
        if start < i {
            out.insert(expr[start..i].to_owned());
        }
    }
    out
}

/// The series names Prometheus stores for an OTLP metric sent by remote write: dots become
/// underscores, the unit becomes a suffix (`s` → `_seconds`), counters get `_total`, histograms
/// `_bucket`, `_sum` and `_count`.
pub fn prometheus_names(name: &str, unit: &str, kind: &str) -> Vec<String> {
    let mut base = name.replace(['.', '-'], "_");
    let suffix = match unit {
        "s" => "_seconds",
        "ms" => "_milliseconds",
        "By" => "_bytes",
        _ => "",
    };
    if !suffix.is_empty() && !base.ends_with(suffix) {
        base.push_str(suffix);
    }
    match kind {
        "counter" => vec![format!("{base}_total")],
        "histogram" => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{base}{s}")).collect(),
        _ => vec![base],
    }
}
// ANCHOR_END: selectors

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &Yaml, path: &[&str]) -> Yaml {
        path.iter().fold(v.clone(), |v, k| v.get(*k).cloned().unwrap_or(Yaml::Null))
    }

    #[test]
    fn every_yaml_and_json_file_parses() {
        let mut checked = 0;
        let mut stack = vec![root().join("grafanastack"), root().join("deploy")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    assert!(!yaml_docs(&path).unwrap().is_empty(), "{} is empty", path.display());
                    checked += 1;
                } else if path.extension().is_some_and(|e| e == "json") {
                    serde_json::from_str::<Json>(&std::fs::read_to_string(&path).unwrap())
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    checked += 1;
                }
            }
        }
        yaml_docs(&root().join("scripts/compose.yaml")).unwrap();
        assert!(checked >= 12, "expected the stack's and deploy's files, checked {checked}");
    }

    #[test]
    fn promtool_accepts_the_prometheus_config() {
        let out = std::process::Command::new("promtool")
            .args(["check", "config"])
            .arg(root().join("grafanastack/prometheus.yml"))
            .output()
            .expect("promtool is installed by `make tools` (Debian package prometheus)");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn compose_images_are_pinned_and_checked() {
        for file in ["grafanastack/docker-compose.yaml", "scripts/compose.yaml"] {
            let doc = &yaml_docs(&root().join(file)).unwrap()[0];
            let services = doc["services"].as_mapping().unwrap();
            for (name, svc) in services {
                let name = name.as_str().unwrap();
                let image = svc["image"].as_str().unwrap_or_else(|| panic!("{file}: {name} has no image"));
                let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
                assert!(!tag.is_empty() && tag != "latest", "{file}: {name} image {image} must be pinned");
                // The collector image is distroless: nothing to run a probe with (documented).
                if name != "otel-collector" {
                    assert!(svc.get("healthcheck").is_some(), "{file}: {name} has no health check");
                }
            }
        }
    }

    #[test]
    fn collector_pipelines_are_wired_and_ordered() {
        let c = &yaml_docs(&root().join("grafanastack/otel-collector.yaml")).unwrap()[0];
        let defined = |section: &str| -> BTreeSet<String> {
            c[section].as_mapping().unwrap().keys().map(|k| k.as_str().unwrap().to_owned()).collect()
        };
        let (receivers, processors, exporters) =
            (defined("receivers"), defined("processors"), defined("exporters"));
        let pipelines = s(c, &["service", "pipelines"]);
        let mut seen = BTreeSet::new();
        for (name, p) in pipelines.as_mapping().unwrap() {
            let name = name.as_str().unwrap();
            seen.insert(name.to_owned());
            let list = |k: &str| -> Vec<String> {
                p[k].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
            };
            assert!(list("receivers").iter().all(|r| receivers.contains(r)), "{name}: undefined receiver");
            assert!(list("exporters").iter().all(|e| exporters.contains(e)), "{name}: undefined exporter");
            let procs = list("processors");
            assert!(procs.iter().all(|x| processors.contains(x)), "{name}: undefined processor");
            assert_eq!(
                procs.first().map(String::as_str),
                Some("memory_limiter"),
                "{name}: memory_limiter goes first"
            );
            assert_eq!(procs.last().map(String::as_str), Some("batch"), "{name}: batch goes last");
        }
        assert_eq!(seen, ["logs", "metrics", "traces"].map(String::from).into_iter().collect());
        assert!(exporters.iter().any(|e| e.starts_with("otlp/tempo")));
        assert!(exporters.contains("prometheusremotewrite") && exporters.iter().any(|e| e.contains("loki")));
    }

    #[test]
    fn every_datasource_uid_referenced_exists() {
        let ds = &yaml_docs(&root().join("grafanastack/grafana/provisioning/datasources/datasources.yaml"))
            .unwrap()[0];
        let uids: BTreeSet<String> = ds["datasources"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|d| d["uid"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(uids, ["loki", "prometheus", "tempo"].map(String::from).into_iter().collect());
        // Links between the data sources.
        let text = serde_yaml_ng::to_string(ds).unwrap();
        for line in text.lines().filter(|l| l.trim_start().starts_with("datasourceUid:")) {
            let uid = line.split(':').nth(1).unwrap().trim().trim_matches('"');
            assert!(uids.contains(uid), "datasourceUid {uid} does not exist");
        }
        // Dashboards.
        for (file, d) in dashboards().unwrap() {
            let text = d.to_string();
            for part in text.split("\"uid\":\"").skip(1) {
                let uid = part.split('"').next().unwrap();
                assert!(uids.contains(uid) || uid.starts_with("cruncan-"), "{file}: unknown uid {uid}");
            }
        }
    }

    #[test]
    fn every_dashboard_query_selects_a_metric() {
        let queries = dashboard_queries().unwrap();
        assert!(queries.len() >= 15, "dashboards have their panels: {}", queries.len());
        for (panel, expr) in queries {
            assert!(
                !metric_selectors(&expr).is_empty(),
                "{panel}: {expr} selects no metric with name{{...}}"
            );
        }
    }

    #[test]
    fn selector_and_name_translation() {
        let sel = metric_selectors(
            r#"histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket{job="one"}[5m]))) / outbox_pending{}"#,
        );
        assert_eq!(
            sel,
            ["http_server_request_duration_seconds_bucket", "outbox_pending"]
                .map(String::from)
                .into_iter()
                .collect()
        );
        assert_eq!(prometheus_names("one.requests", "", "counter"), ["one_requests_total"]);
        assert_eq!(prometheus_names("outbox.pending", "", "gauge"), ["outbox_pending"]);
        assert_eq!(
            prometheus_names("http.server.request.duration", "s", "histogram"),
            [
                "http_server_request_duration_seconds_bucket",
                "http_server_request_duration_seconds_sum",
                "http_server_request_duration_seconds_count"
            ]
        );
    }

    /// A humantime duration of a service config (`20s`), in milliseconds.
    fn millis(value: &Yaml) -> u64 {
        let d: humantime_serde::Serde<std::time::Duration> =
            serde_yaml_ng::from_value(value.clone()).unwrap();
        d.into_inner().as_millis() as u64
    }

    fn defaults(service: &str) -> Yaml {
        yaml_docs(&root().join(format!("flow/{service}/config/base.yaml"))).unwrap().remove(0)
    }

    fn deployment(file: &str) -> (Yaml, Yaml) {
        let docs = yaml_docs(&root().join(file)).unwrap();
        let dep = docs.iter().find(|d| d["kind"] == "Deployment").cloned().unwrap();
        let container = s(&dep, &["spec", "template", "spec", "containers"])[0].clone();
        (dep, container)
    }

    fn env_names(container: &Yaml) -> BTreeSet<String> {
        container["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn production_manifests_have_a_disruption_budget_and_production_topics() {
        for (file, service) in [("deploy/k8s/one.yaml", "one"), ("deploy/k8s/two.yaml", "two")] {
            let docs = yaml_docs(&root().join(file)).unwrap();
            let pdb =
                docs.iter().find(|d| d["kind"] == "PodDisruptionBudget").expect("a PodDisruptionBudget");
            let (dep, _) = deployment(file);
            assert_eq!(
                s(pdb, &["spec", "selector", "matchLabels"]),
                s(&dep, &["spec", "selector", "matchLabels"]),
                "{service}: the budget selects the deployment's pods"
            );
            assert!(pdb["spec"]["maxUnavailable"].as_u64().is_some_and(|n| n >= 1));
            let config = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
            let topic = config["data"]["APP_KAFKA__TOPIC"].as_str().unwrap();
            assert!(!topic.ends_with("-local"), "{service}: production uses the local topic {topic}");
        }
        let docker = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
        let cook = docker.find("cargo chef cook").unwrap();
        let builder = docker.find("AS builder").unwrap();
        assert!(
            !docker[builder..cook].contains("ARG SERVICE"),
            "ARG SERVICE before the cook rebuilds the dependency layer per service"
        );
    }

    #[test]
    fn kubernetes_manifests_agree_with_the_services() {
        let one = defaults("one");
        let two = defaults("two");
        for (file, service, port, drain_ms) in [
            (
                "deploy/k8s/one.yaml",
                "one",
                one["http"]["port"].as_u64().unwrap(),
                millis(&one["shutdown"]["drain_timeout"]) + millis(&one["outbox"]["drain_timeout"]),
            ),
            (
                "deploy/k8s/two.yaml",
                "two",
                two["admin"]["port"].as_u64().unwrap(),
                millis(&two["kafka"]["consumer"]["drain_timeout"]),
            ),
        ] {
            let (dep, c) = deployment(file);
            let spec = s(&dep, &["spec", "template", "spec"]);
            assert!(
                c["image"].as_str().unwrap().starts_with(&format!("cruncan/{service}:")),
                "{file}: image name"
            );
            assert_eq!(
                c["ports"][0]["containerPort"].as_u64(),
                Some(port),
                "{file}: port agrees with base.yaml"
            );
            assert_eq!(
                s(&c, &["readinessProbe", "httpGet", "path"]).as_str(),
                Some("/readyz"),
                "{file}: readiness"
            );
            assert_eq!(
                s(&c, &["livenessProbe", "httpGet", "path"]).as_str(),
                Some("/healthz"),
                "{file}: liveness"
            );
            let grace_ms = spec["terminationGracePeriodSeconds"].as_u64().unwrap() * 1000;
            let pre_stop_ms =
                s(&c, &["lifecycle", "preStop", "sleep", "seconds"]).as_u64().unwrap_or(0) * 1000;
            assert!(
                grace_ms > drain_ms + pre_stop_ms,
                "{file}: grace {grace_ms} ms must exceed drain {drain_ms} + preStop {pre_stop_ms}"
            );
            for k in ["requests", "limits"] {
                assert!(c["resources"].get(k).is_some(), "{file}: resources.{k}");
            }
            assert_eq!(
                s(&spec, &["securityContext", "runAsNonRoot"]).as_bool(),
                Some(true),
                "{file}: non-root"
            );
            assert_eq!(s(&c, &["securityContext", "allowPrivilegeEscalation"]).as_bool(), Some(false));
            let secret_refs = c["env"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter(|e| s(e, &["valueFrom", "secretKeyRef", "name"]).as_str().is_some())
                .count();
            assert!(secret_refs >= 1, "{file}: secrets come from a Secret");
            assert!(env_names(&c).contains("APP_DATABASE__PASSWORD"));
        }
        let (_, c) = deployment("deploy/k8s/one.yaml");
        let pod_ip = c["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "POD_IP")
            .expect("POD_IP for the node id");
        assert_eq!(s(pod_ip, &["valueFrom", "fieldRef", "fieldPath"]).as_str(), Some("status.podIP"));
        // The health routes the probes use exist in the code.
        let http = std::fs::read_to_string(root().join("pkg/http/src/lib.rs")).unwrap();
        assert!(http.contains("\"/readyz\"") && http.contains("\"/healthz\""));
    }

    /// Every `f64_histogram(...)` builder chain in the workspace's Rust sources that declares
    /// `.with_unit("s")` must also declare `.with_boundaries(...)`: the SDK's default buckets are
    /// for milliseconds and make a seconds panel unreadable.
    #[test]
    fn every_seconds_histogram_has_explicit_boundaries() {
        let mut offenders = Vec::new();
        let mut checked = 0;
        for dir in ["pkg", "flow", "reference"] {
            for file in rust_files(&root().join(dir)) {
                let text = std::fs::read_to_string(&file).unwrap();
                for (at, _) in text.match_indices(".f64_histogram(") {
                    let chain = &text[at..];
                    let chain = &chain[..chain.find(".build()").unwrap_or(chain.len())];
                    if chain.contains(".with_unit(\"s\")") {
                        checked += 1;
                        if !chain.contains(".with_boundaries(") {
                            offenders.push(file.display().to_string());
                        }
                    }
                }
            }
        }
        assert!(checked >= 4, "the scan found the known seconds histograms ({checked})");
        assert!(offenders.is_empty(), "seconds histograms without boundaries in {offenders:?}");
    }

    fn rust_files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else { return out };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.ends_with("target") && !path.ends_with("node_modules") {
                out.extend(rust_files(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
        out
    }

    #[test]
    fn dockerfile_and_flow_compose_agree() {
        let docker = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
        assert!(docker.contains("cargo chef cook"), "dependency layer cached with cargo-chef");
        assert!(docker.contains("USER 10001"), "non-root runtime");
        assert!(docker.contains("HEALTHCHECK"));
        for port in ["8080", "8081", "8090"] {
            assert!(docker.contains(port), "EXPOSE {port}");
        }
        let flow = &yaml_docs(&root().join("deploy/compose.yaml")).unwrap()[0];
        for svc in ["one", "two", "stub"] {
            let image = flow["services"][svc]["image"].as_str().unwrap();
            assert!(image.starts_with(&format!("cruncan/{svc}:")), "{svc}: {image}");
            assert_eq!(flow["services"][svc]["build"]["args"]["SERVICE"].as_str(), Some(svc));
        }
    }
}
