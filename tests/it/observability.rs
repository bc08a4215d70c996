//! The shipped Grafana dashboards (`dashboards/`) and Prometheus alert rules (`alerts/`):
//! checked for their conventions, unit-tested with promtool, and proven against the real
//! thing — the exporter polling the fake IMS, a real Prometheus scraping it every second
//! with the rules loaded, and a real Alertmanager notifying a webhook served here.
//!
//! The end-to-end test loads a copy of the rules in which every `for:` and
//! `keep_firing_for:` longer than [`SHORT_FOR`] is rewritten to it ([`shorten_for`]); the
//! shipped file is never edited.
//!
//! Needs Debian's `prometheus` (prometheus, promtool) and `prometheus-alertmanager`
//! (installed as `prometheus-alertmanager`; upstream calls it `alertmanager`). Without
//! them the tests print SKIPPED, except under `CI=true`, where they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Instant, SystemTime};

use crate::support;
use crate::support::dashboards::*;
use crate::support::rules::duration_secs;
use crate::support::services::{require_any_tool, Alertmanager, Prometheus, Webhook, TOOL_TIMEOUT};
use crate::support::{describe, run_tool, wait_for, Fleet, Share, Target, PROJECT, REGION};
use ims_exporter::fake_ims::Fault;
use regex::Regex;
use serde_json::Value;

const RULES: &str = "alerts/ims-exporter.rules.yml";
const RULE_TESTS: &str = "alerts/ims-exporter.rules.test.yml";
/// Each dashboard with the `uid` it must keep (links and bookmarks depend on it).
const DASHBOARDS: [(&str, &str); 2] = [
    (
        "dashboards/ims-sharing-overview.json",
        "ims-sharing-overview",
    ),
    ("dashboards/ims-exporter-health.json", "ims-exporter-health"),
];
/// The alerts the README documents, with their severity.
const REQUIRED_ALERTS: [(&str, &str); 11] = [
    ("ImsUnexpectedImageShare", "critical"),
    ("ImsWatchedShareMissing", "warning"),
    ("ImsImageShareAdded", "info"),
    ("ImsSharePendingTooLong", "warning"),
    ("ImsUntrustedImageOffered", "warning"),
    ("ImsUntrustedImageUsable", "critical"),
    ("ImsPollFailing", "warning"),
    ("ImsDataStale", "critical"),
    ("ImsExporterDown", "critical"),
    ("ImsApiThrottled", "warning"),
    ("ImsEventSourceDown", "warning"),
];
/// The scrape job name the rules (ImsExporterDown) and the README assume.
const JOB: &str = "ims";
/// What the end-to-end test shortens every longer `for:` and `keep_firing_for:` to.
const SHORT_FOR: &str = "1s";
/// The rule keys [`shorten_for`] rewrites; the shortened copy differs in nothing else.
const SHORTENED_KEYS: [&str; 2] = ["for", "keep_firing_for"];
/// Series Prometheus itself adds to every scrape or rule evaluation.
const PROMETHEUS_SERIES: [&str; 7] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
];
/// The only datasource reference allowed besides `${datasource}`: Grafana's own, for
/// the built-in annotations.
const GRAFANA_BUILTIN_DS: &str = "-- Grafana --";

fn yaml(rel: &str) -> Value {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

// ---------------------------------------------------------------------------------------
// Alert rules
// ---------------------------------------------------------------------------------------

/// One alerting rule of the rules file.
#[derive(Debug, Clone)]
struct AlertRule {
    name: String,
    expr: String,
    for_: Option<String>,
    keep_firing_for: Option<String>,
    labels: Value,
    annotations: Value,
}

fn alert_rules(rules: &Value) -> Vec<AlertRule> {
    let groups = rules["groups"].as_array().expect("groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter(|r| r.get("alert").is_some())
        .map(|r| AlertRule {
            name: str_of(&r, "alert").to_string(),
            expr: str_of(&r, "expr").to_string(),
            for_: r["for"].as_str().map(str::to_string),
            keep_firing_for: r["keep_firing_for"].as_str().map(str::to_string),
            labels: r["labels"].clone(),
            annotations: r["annotations"].clone(),
        })
        .collect()
}

/// The documented mechanism for trying the rules fast: a copy of the rules text in
/// which every `for:` and `keep_firing_for:` ([`SHORTENED_KEYS`]) longer than
/// [`SHORT_FOR`] becomes [`SHORT_FOR`] (shorter ones, like `0m`, stay). Returns the copy
/// and how many durations it shortened.
fn shorten_for(rules: &str) -> (String, usize) {
    support::rules::shorten(rules, &SHORTENED_KEYS.map(|k| (k, SHORT_FOR)))
}

/// A rules document without the keys [`shorten_for`] rewrites ([`SHORTENED_KEYS`]) in
/// any of its rules: what the shipped file and its shortened copy must agree on.
fn without_shortened_keys(mut rules: Value) -> Value {
    for group in rules["groups"].as_array_mut().into_iter().flatten() {
        for rule in group["rules"].as_array_mut().into_iter().flatten() {
            if let Some(rule) = rule.as_object_mut() {
                for key in SHORTENED_KEYS {
                    rule.remove(key);
                }
            }
        }
    }
    rules
}

/// Metric names the exporter exposes (from `--demo --once`), plus what Prometheus adds.
async fn known_metric_names() -> BTreeSet<String> {
    let mut cmd = Command::new(support::bin());
    cmd.args(["--demo", "--once", "--log.level", "error"]);
    let out = run_tool(cmd, None, TOOL_TIMEOUT).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut names: BTreeSet<String> = PROMETHEUS_SERIES.iter().map(|s| s.to_string()).collect();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
        names.insert(name.to_string());
        match kind {
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            // OpenMetrics names a counter family without its `_total`.
            "counter" if !name.ends_with("_total") => {
                names.insert(format!("{name}_total"));
            }
            _ => {}
        }
    }
    assert!(
        names.contains("ims_image_members") && names.contains("ims_api_requests_total"),
        "the exporter's --demo --once output has no ims_ families:\n{}",
        describe(&out)
    );
    names
}

/// The metric names a PromQL expression selects (a small lexer, enough for the
/// shipped queries: strings, label matchers, ranges and grouping lists are skipped).
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Drop string literals.
    let mut s = String::with_capacity(expr.len());
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        if c == '"' || c == '\'' || c == '`' {
            while let Some(d) = chars.next() {
                if d == '\\' && c != '`' {
                    chars.next();
                } else if d == c {
                    break;
                }
            }
            s.push_str("\"\"");
        } else {
            s.push(c);
        }
    }
    let s = Regex::new(r"\{[^}]*\}").unwrap().replace_all(&s, "{}");
    let s = Regex::new(r"\[[^\]]*\]").unwrap().replace_all(&s, "[]");
    let s = Regex::new(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
        .unwrap()
        .replace_all(&s, " ");
    let token = Regex::new(
        r"(?:\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*)|(?P<id>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<call>\s*\()?",
    )
    .unwrap();
    const KEYWORDS: [&str; 14] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "atan2",
        "inf",
        "nan",
    ];
    token
        .captures_iter(&s)
        .filter(|c| c.name("call").is_none())
        .filter_map(|c| c.name("id").map(|m| m.as_str()))
        .filter(|id| !KEYWORDS.contains(&id.to_ascii_lowercase().as_str()))
        .map(str::to_string)
        .collect()
}

#[test]
fn metric_names_finds_selected_metrics_only() {
    let got = metric_names(
        r#"sum by (le, operation) (rate(x_bucket{job=~"$job", code!~"2.."}[5m] offset 1h)) / on (a) group_left (b) y * 7 * 86400 > bool 1e3 and label_replace(z, "d", "$1", "s", "(.*)") or vector(0)"#,
    );
    assert_eq!(
        got,
        ["x_bucket", "y", "z"].map(String::from).into(),
        "metric names"
    );
}

#[test]
fn shorten_for_rewrites_only_longer_for_durations() {
    let text = "      - alert: A\n        expr: x == 1\n        for: 15m\n        keep_firing_for: 15m\n      - alert: B\n        expr: y\n        for: 0m\n        keep_firing_for: 0s\n        annotations:\n          summary: \"for: 5m, keep_firing_for: 5m\"\n";
    let (copy, n) = shorten_for(text);
    assert_eq!(n, 2);
    // Both `for: 15m` and `keep_firing_for: 15m` of A.
    assert_eq!(copy, text.replace("for: 15m", "for: 1s"));
    assert!(copy.contains("\n        keep_firing_for: 1s\n"), "{copy}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_have_the_documented_alerts_labels_and_unit_tests() {
    let rules = alert_rules(&yaml(RULES));
    let by_name: BTreeMap<&str, &AlertRule> = rules.iter().map(|r| (r.name.as_str(), r)).collect();
    assert_eq!(by_name.len(), rules.len(), "alert names must be unique");
    for (name, severity) in REQUIRED_ALERTS {
        let rule = by_name
            .get(name)
            .unwrap_or_else(|| panic!("{RULES} has no alert {name}"));
        assert_eq!(
            str_of(&rule.labels, "severity"),
            severity,
            "{name} severity"
        );
    }
    for r in &rules {
        assert!(
            ["critical", "warning", "info"].contains(&str_of(&r.labels, "severity")),
            "{}: severity must be critical, warning or info",
            r.name
        );
        // Every rule states its `for:` so the documented defaults are visible and tunable.
        let for_ = r
            .for_
            .as_deref()
            .unwrap_or_else(|| panic!("{}: no explicit for:", r.name));
        duration_secs(for_);
        for key in ["summary", "description"] {
            assert!(
                !str_of(&r.annotations, key).trim().is_empty(),
                "{}: annotation {key} missing",
                r.name
            );
        }
    }
    let unexpected = by_name["ImsUnexpectedImageShare"];
    let description = str_of(&unexpected.annotations, "description");
    for needle in [
        "$labels.image_id",
        "$labels.member_id",
        "What to do",
        "image_name",
    ] {
        assert!(
            description.contains(needle),
            "ImsUnexpectedImageShare description lacks {needle:?}"
        );
    }
    assert!(
        unexpected.expr.contains("ims_image_member_unexpected"),
        "{}",
        unexpected.expr
    );
    // Share alerts: one alert per share, whatever its status or the exporter that
    // exports it, kept firing over a scrape gap (the promtool tests prove both).
    for name in [
        "ImsUnexpectedImageShare",
        "ImsWatchedShareMissing",
        "ImsSharePendingTooLong",
    ] {
        let rule = by_name[name];
        assert!(
            rule.expr
                .contains("by (region, project_id, image_id, member_id"),
            "{name} is not aggregated to the share: {}",
            rule.expr
        );
        let keep = rule
            .keep_firing_for
            .as_deref()
            .unwrap_or_else(|| panic!("{name}: no keep_firing_for"));
        duration_secs(keep);
    }
    // Incoming alerts: one alert per image shared with a project, whatever our status
    // or its owner (in the description) or the exporter that exports it, kept firing
    // over a scrape gap (the promtool tests prove both).
    for name in ["ImsUntrustedImageOffered", "ImsUntrustedImageUsable"] {
        let rule = by_name[name];
        assert!(
            rule.expr
                .contains("max by (region, project_id, image_id) (")
                && rule.expr.contains("ims_incoming_image_untrusted"),
            "{name} is not aggregated to the offered image: {}",
            rule.expr
        );
        let description = str_of(&rule.annotations, "description");
        for needle in ["owner", "image_name", "What to do"] {
            assert!(
                description.contains(needle),
                "{name} description lacks {needle:?}"
            );
        }
        let keep = rule
            .keep_firing_for
            .as_deref()
            .unwrap_or_else(|| panic!("{name}: no keep_firing_for"));
        duration_secs(keep);
    }
    // Health alerts: one alert per image, target or job, whichever exporter (instance,
    // pod) reports the failure (the promtool tests prove it across rollouts).
    for (name, by) in [
        ("ImsPollFailing", "by (region, project_id, image_id)"),
        ("ImsDataStale", "by (region, project_id, image_id)"),
        ("ImsDiscoveryFailing", "by (region, project_id)"),
        ("ImsEventSourceDown", "by (region, project_id)"),
        ("ImsApiThrottled", "by (job)"),
        ("ImsExporterDown", "by (job)"),
    ] {
        let rule = by_name
            .get(name)
            .unwrap_or_else(|| panic!("{RULES} has no alert {name}"));
        assert!(
            rule.expr.contains(by),
            "{name} is not aggregated {by}: {}",
            rule.expr
        );
    }
    let grouping = Regex::new(r"\b(?:by|on|ignoring)\s*\(([^)]*)\)").unwrap();
    for r in &rules {
        for c in grouping.captures_iter(&r.expr) {
            assert!(
                !c[1]
                    .split(',')
                    .any(|l| ["instance", "pod", "namespace"].contains(&l.trim())),
                "{}: the alert's identity must not name the exporter: {}",
                r.name,
                r.expr
            );
        }
    }
    let down = &by_name["ImsExporterDown"].expr;
    assert!(
        down.contains(&format!(r#"up{{job="{JOB}"}} == 0"#))
            && down.contains(&format!(r#"absent(up{{job="{JOB}"}})"#)),
        "ImsExporterDown: {down}"
    );

    // Every metric the rules use is one the exporter (or Prometheus) produces.
    let known = known_metric_names().await;
    for r in &rules {
        let unknown: Vec<String> = metric_names(&r.expr)
            .into_iter()
            .filter(|m| !known.contains(m))
            .collect();
        assert!(
            unknown.is_empty(),
            "{}: unknown metrics {unknown:?} in {}",
            r.name,
            r.expr
        );
    }

    // The promtool unit tests cover every alert, firing and not firing.
    let tests = yaml(RULE_TESTS);
    assert_eq!(
        tests["rule_files"],
        serde_json::json!(["ims-exporter.rules.yml"]),
        "{RULE_TESTS} must test the shipped rules file"
    );
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in tests["tests"].as_array().expect("tests").iter() {
        for t in case["alert_rule_test"].as_array().into_iter().flatten() {
            let name = str_of(t, "alertname").to_string();
            match t["exp_alerts"].as_array().map(Vec::len) {
                Some(0) | None => quiet.insert(name),
                Some(_) => firing.insert(name),
            };
        }
    }
    for r in &rules {
        assert!(
            firing.contains(&r.name),
            "{RULE_TESTS}: no case where {} fires",
            r.name
        );
        assert!(
            quiet.contains(&r.name),
            "{RULE_TESTS}: no case where {} does not fire",
            r.name
        );
    }

    // The shortened copy the end-to-end test loads changes every long `for:` and
    // `keep_firing_for:`, nothing else.
    let (copy, changed) = shorten_for(&read(RULES));
    let long = rules
        .iter()
        .flat_map(|r| [r.for_.as_deref(), r.keep_firing_for.as_deref()])
        .flatten()
        .filter(|d| duration_secs(d) > duration_secs(SHORT_FOR))
        .count();
    assert_eq!(
        changed, long,
        "every long for: and keep_firing_for: is shortened"
    );
    let shortened = alert_rules(&serde_yaml::from_str(&copy).expect("copy is YAML"));
    assert_eq!(shortened.len(), rules.len());
    for (a, b) in rules.iter().zip(&shortened) {
        assert_eq!((&a.name, &a.expr, &a.labels), (&b.name, &b.expr, &b.labels));
        assert!(duration_secs(b.for_.as_deref().unwrap()) <= duration_secs(SHORT_FOR));
        assert_eq!(
            a.keep_firing_for.is_some(),
            b.keep_firing_for.is_some(),
            "{}: keep_firing_for",
            a.name
        );
        if let Some(k) = &b.keep_firing_for {
            assert!(
                duration_secs(k) <= duration_secs(SHORT_FOR),
                "{}: {k}",
                b.name
            );
        }
    }
    assert_eq!(
        without_shortened_keys(yaml(RULES)),
        without_shortened_keys(serde_yaml::from_str(&copy).expect("copy is YAML")),
        "the shortened copy differs from {RULES} in more than {SHORTENED_KEYS:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn promtool_checks_and_unit_tests_the_rules() {
    if !support::require_tool("promtool") {
        return;
    }
    let mut check = Command::new("promtool");
    check.args(["check", "rules"]).arg(repo_file(RULES));
    let out = run_tool(check, None, TOOL_TIMEOUT).await;
    assert!(
        out.status.success(),
        "promtool check rules:\n{}",
        describe(&out)
    );
    let n = alert_rules(&yaml(RULES)).len();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("SUCCESS: {n} rules found")),
        "{}",
        describe(&out)
    );

    let mut test = Command::new("promtool");
    test.args(["test", "rules"]).arg(repo_file(RULE_TESTS));
    let out = run_tool(test, None, TOOL_TIMEOUT).await;
    assert!(
        out.status.success(),
        "promtool test rules:\n{}",
        describe(&out)
    );
}

// ---------------------------------------------------------------------------------------
// Dashboards
// ---------------------------------------------------------------------------------------

/// Checks every `datasource` reference in `v`: `${datasource}`, except Grafana's own.
fn check_datasources(v: &Value, path: &str, problems: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let here = format!("{path}.{k}");
                if k == "datasource" {
                    match child {
                        Value::Object(ds) => {
                            let uid = ds.get("uid").and_then(Value::as_str).unwrap_or("");
                            let ty = ds.get("type").and_then(Value::as_str).unwrap_or("");
                            let ok = (ty == "prometheus" && uid == "${datasource}")
                                || (ty == "grafana" && uid == GRAFANA_BUILTIN_DS);
                            if !ok {
                                problems.push(format!("{here}: datasource {child}"));
                            }
                        }
                        other => problems
                            .push(format!("{here}: datasource must be an object, got {other}")),
                    }
                }
                check_datasources(child, &here, problems);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                check_datasources(child, &format!("{path}[{i}]"), problems);
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboards_follow_the_grafana_conventions() {
    let known = known_metric_names().await;
    let per_image = Regex::new(r"(ims_image_\w+|ims_member_changes_total)(\{[^}]*\})?").unwrap();
    for (file, uid) in DASHBOARDS {
        let d = dashboard(file);
        let mut problems = Vec::new();
        assert_eq!(str_of(&d, "uid"), uid, "{file}: stable uid");
        assert!(uid.len() <= 40, "Grafana uids are at most 40 characters");
        assert!(
            d["id"].is_null(),
            "{file}: id must be null to import cleanly"
        );
        let schema = d["schemaVersion"].as_u64().unwrap_or(0);
        assert!(
            (39..=41).contains(&schema),
            "{file}: schemaVersion {schema} (Grafana 10.4 to 12)"
        );
        assert!(!str_of(&d, "title").is_empty(), "{file}: title");
        assert!(!str_of(&d, "description").is_empty(), "{file}: description");
        assert!(
            d["tags"]
                .as_array()
                .is_some_and(|t| t.contains(&Value::from("ims-exporter"))),
            "{file}: tag ims-exporter (the dashboards link each other by it)"
        );

        // Variables: a prometheus datasource picker, and multi-select "All" filters.
        let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
            .as_array()
            .expect("templating")
            .iter()
            .map(|v| (str_of(v, "name"), v))
            .collect();
        let ds = vars.get("datasource").expect("a datasource variable");
        assert_eq!(
            (str_of(ds, "type"), str_of(ds, "query")),
            ("datasource", "prometheus"),
            "{file}: datasource variable"
        );
        let filters: &[&str] = if uid == "ims-sharing-overview" {
            &["job", "region", "project", "image"]
        } else {
            &["job", "instance"]
        };
        for name in filters {
            let v = vars
                .get(name)
                .unwrap_or_else(|| panic!("{file}: no variable {name}"));
            assert_eq!(str_of(v, "type"), "query", "{file}: ${name} type");
            assert_eq!(v["multi"], true, "{file}: ${name} multi-select");
            assert_eq!(v["includeAll"], true, "{file}: ${name} All");
            assert!(!variable_query(v).is_empty(), "{file}: ${name} query");
        }
        if let Some(image) = vars.get("image") {
            let q = variable_query(image);
            assert!(
                q.contains("ims_image_info") && q.contains("image_name"),
                "{file}: $image shows names from ims_image_info: {q}"
            );
            let regex = str_of(image, "regex");
            assert!(
                regex.contains("(?<text>") && regex.contains("(?<value>"),
                "{file}: $image regex maps names (text) to IDs (value): {regex}"
            );
        }
        // Links to the README, through one variable users can point at their copy.
        let readme = vars.get("readme_url").expect("readme_url variable");
        assert_eq!(str_of(readme, "type"), "constant");
        assert!(str_of(readme, "query").starts_with("https://"));
        assert!(
            d["links"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|l| str_of(l, "url").starts_with("${readme_url}")),
            "{file}: a dashboard link to the README"
        );

        check_datasources(&d, file, &mut problems);

        // Panels: unique ids, on the grid, described, with units and queries.
        let mut ids = BTreeSet::new();
        let mut cells: Vec<(String, [i64; 4])> = Vec::new();
        for p in panels(&d) {
            let title = str_of(p, "title");
            let id = p["id"].as_u64().unwrap_or(0);
            if !ids.insert(id) || id == 0 {
                problems.push(format!("{title:?}: missing or duplicate id {id}"));
            }
            let g = &p["gridPos"];
            let pos = ["x", "y", "w", "h"].map(|k| g[k].as_i64().unwrap_or(-1));
            if pos[0] < 0 || pos[1] < 0 || pos[2] <= 0 || pos[3] <= 0 || pos[0] + pos[2] > 24 {
                problems.push(format!("{title:?}: bad gridPos {g}"));
            }
            for (other, q) in &cells {
                let overlap = pos[0] < q[0] + q[2]
                    && q[0] < pos[0] + pos[2]
                    && pos[1] < q[1] + q[3]
                    && q[1] < pos[1] + pos[3];
                if overlap {
                    problems.push(format!("{title:?} overlaps {other:?}"));
                }
            }
            cells.push((title.to_string(), pos));
            if p["type"] == "row" {
                continue;
            }
            if title.is_empty() {
                problems.push(format!("panel {id}: no title"));
            }
            if str_of(p, "description").trim().is_empty() {
                problems.push(format!("{title:?}: no description"));
            }
            if str_of(&p["fieldConfig"]["defaults"], "unit").is_empty() {
                problems.push(format!("{title:?}: no unit (fieldConfig.defaults.unit)"));
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                problems.push(format!("{title:?}: no queries"));
            }
            let refs: BTreeSet<&str> = targets.iter().map(|t| str_of(t, "refId")).collect();
            if refs.len() != targets.len() || refs.contains("") {
                problems.push(format!("{title:?}: refIds must be set and unique"));
            }
            for t in &targets {
                if str_of(t, "expr").trim().is_empty() {
                    problems.push(format!("{title:?}: empty expr"));
                }
            }
        }

        // Queries: declared variables only, known metrics only, and (overview) every
        // per-image selector filtered by the region / project / image variables.
        let vars_any = all_vars(&d, ".*");
        for q in panel_queries(file, &d) {
            let expr = match substitute(&q.expr, &vars_any) {
                Ok(e) => e,
                Err(e) => {
                    problems.push(format!("{q}: {e}"));
                    continue;
                }
            };
            let unknown: Vec<String> = metric_names(&expr)
                .into_iter()
                .filter(|m| !known.contains(m))
                .collect();
            if !unknown.is_empty() {
                problems.push(format!("{q}: unknown metrics {unknown:?}"));
            }
            if uid == "ims-sharing-overview" {
                for c in per_image.captures_iter(&q.expr) {
                    let matchers = c.get(2).map(|m| m.as_str()).unwrap_or("");
                    for want in [
                        r#"region=~"$region""#,
                        r#"project_id=~"$project""#,
                        r#"image_id=~"$image""#,
                    ] {
                        if !matchers.contains(want) {
                            problems.push(format!("{q}: {} lacks {want}", &c[1]));
                        }
                    }
                }
            }
        }
        for v in vars.values().filter(|v| v["type"] == "query") {
            if let Err(e) = substitute(&variable_query(v), &vars_any) {
                problems.push(format!("variable {}: {e}", str_of(v, "name")));
            }
        }
        assert!(problems.is_empty(), "{file}:\n  {}", problems.join("\n  "));
    }

    // The overview has the panels the issue asks for.
    let overview = dashboard(DASHBOARDS[0].0);
    let titles: BTreeMap<&str, &Value> = panels(&overview)
        .into_iter()
        .map(|p| (str_of(p, "title"), p))
        .collect();
    for want in [
        "Shared images",
        "Members by type and status",
        "Unexpected shares",
        "Recently added shares",
        "Pending shares and their age",
        "Age since last update",
        "Images shared with us by status",
        "Untrusted offers",
        "Images shared with us by untrusted owners",
        "Poll success per image",
        "Time since last successful poll",
        "API requests by code",
        "API errors by code",
        "API latency",
    ] {
        assert!(titles.contains_key(want), "overview: no panel {want:?}");
    }
    let unexpected = titles
        .iter()
        .find(|(t, p)| **t == "Unexpected shares" && p["type"] == "table")
        .map(|(_, p)| *p)
        .expect("an Unexpected shares table");
    let exprs: String = unexpected["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| str_of(t, "expr"))
        .collect();
    for needle in [
        "ims_image_member_unexpected",
        "group_left (image_name)",
        "ims_image_info",
        "group_left (urn)",
        "ims_image_member_created_timestamp_seconds",
    ] {
        assert!(
            exprs.contains(needle),
            "Unexpected shares table lacks {needle}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// End to end: fake IMS -> exporter -> Prometheus (rules) -> Alertmanager -> webhook
// ---------------------------------------------------------------------------------------

const IMAGE: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
const IMAGE_NAME: &str = "golden-debian-12";
/// Throttled by the fake all along; has no name. In a project (a target) of its own,
/// so its retries do not slow down the polls of the other images.
const THROTTLED: &str = "370befec-a369-475e-a224-44a45927a8fe";
const PROJECT2: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
/// Not in the config: found by discovery.
const DISCOVERED: &str = "5e1f0c3a-7b2d-4c8e-9f6a-1d2c3b4a5e6f";
const DISCOVERED_NAME: &str = "golden-ubuntu-24";
const P1: &str = "edc89b490d7d4392898e19b2deb34797";
const D1: &str = "5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d";
const ORG: &str = "ou-qdjrky7i07higfa4f6reqv9etybmp4ng";
const ORG_URN: &str = "organizations::6c031a41eefc480bb60f20c003891fcd:ou:o-z5142zmm6p5cumsxralfljeb3qrwqamd/ou-qdjrky7i07higfa4f6reqv9etybmp4ng";
/// Shared without any allowlist entry.
const STRANGER: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
/// Watched, never shared.
const MISSING: &str = "9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a49";
/// Owners of images shared with the first target: one trusted, one not.
const TRUSTED_OWNER: &str = "5e1f0c2d3b4a59687766554433221100";
const UNTRUSTED_OWNER: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";
/// Images shared with the first target: by the untrusted owner, pending and accepted;
/// by the trusted one, accepted.
const OFFERED: &str = "ae2d8a57-1e03-4c2f-8c9e-b7d1a5f0e4b2";
const OFFERED_NAME: &str = "partner-appliance-7.2";
const ACCEPTED_UNTRUSTED: &str = "f69f2445-df4f-4b9a-8c1e-2d3b4a5c6d7e";
const TRUSTED_OFFER: &str = "2b7e1516-28ae-4d2a-abf7-158809cf4f3c";
/// Offered by the untrusted owner during the test.
const NEW_OFFER: &str = "6bc1bee2-2e40-4f9f-96e9-3d7e117393a1";

/// The fake's shares (an old pending one among them), a throttled image and one found
/// by discovery; a config that watches a member never shared. Both targets read
/// traces: the first reads one member trace, the second's reads fail. Both list the
/// images shared with them: the first has one from an untrusted owner pending, one
/// from it accepted and one from a trusted owner.
async fn fixture() -> Fleet {
    let fleet = Fleet::new().await;
    let cts = format!("cts_endpoint: {}", fleet.fake.endpoint());
    let fleet = fleet
        .config(&format!(
            "request_timeout: 2s\ndiscovery_interval: 1s\nallowed_members: [{P1}, {D1}, {ORG}]\n\
             events:\n  cts:\n    interval: 1s\n\
             incoming:\n  interval: 1s\n  trusted_owners: [{TRUSTED_OWNER}]"
        ))
        .target_keys("discover: {}")
        .target_keys(&cts)
        .image(IMAGE, &format!("watch_members: [{P1}, {MISSING}]"))
        .target(Target::new(PROJECT2).images(&[THROTTLED]).keys(&cts));
    let fake = &fleet.fake;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    fake.state.add_trace(
        PROJECT,
        ims_exporter::fake_ims::member_trace(
            "addMember",
            IMAGE,
            P1,
            "alice",
            "192.0.2.10",
            now,
            now,
        ),
    );
    fake.state.set_cts_fault(PROJECT2, Some(Fault::Status(500)));
    let old = "2025-01-02T00:00:00Z";
    fake.state.add_image(PROJECT, IMAGE, IMAGE_NAME);
    Share::new(PROJECT, IMAGE, P1).created(old).put(fake);
    Share::new(PROJECT, IMAGE, D1)
        .kind("domain")
        .status("pending")
        .created(old)
        .put(fake);
    Share::new(PROJECT, IMAGE, ORG)
        .kind("organization")
        .urn(ORG_URN)
        .created(old)
        .put(fake);
    // Created through its member: without a name.
    Share::new(PROJECT2, THROTTLED, P1).created(old).put(fake);
    fake.state.set_fault(THROTTLED, Some(Fault::Throttle));
    fake.state.add_image(PROJECT, DISCOVERED, DISCOVERED_NAME);
    Share::new(PROJECT, DISCOVERED, P1).created(old).put(fake);
    let offer = |image: &str, name: &str, owner: &str, status: &str| {
        fake.state.offer_image(PROJECT, image, name, owner, status)
    };
    offer(OFFERED, OFFERED_NAME, UNTRUSTED_OWNER, "pending");
    offer(
        ACCEPTED_UNTRUSTED,
        "vendor-trial-image",
        UNTRUSTED_OWNER,
        "accepted",
    );
    offer(TRUSTED_OFFER, "platform-base", TRUSTED_OWNER, "accepted");
    fleet
}

/// The overview's table of unexpected shares.
fn unexpected_shares_table(overview: &Value) -> Value {
    panels(overview)
        .into_iter()
        .find(|p| p["title"] == "Unexpected shares" && p["type"] == "table")
        .expect("Unexpected shares table")
        .clone()
}

fn label(series: &Value, name: &str) -> String {
    series["labels"][name]
        .as_str()
        .or(series["metric"][name].as_str())
        .unwrap_or("")
        .to_string()
}

/// Prometheus alerts (any state) named `name` with all of `labels`.
async fn prom_alerts(prom: &Prometheus, name: &str, labels: &[(&str, &str)]) -> Vec<Value> {
    prom.alerts()
        .await
        .into_iter()
        .filter(|a| label(a, "alertname") == name && labels.iter().all(|(k, v)| label(a, k) == *v))
        .collect()
}

/// Waits (as `what`) until alert `name` with `labels` fires in Prometheus.
async fn wait_firing(prom: &Prometheus, what: &str, name: &str, labels: &[(&str, &str)]) {
    wait_for(what, async || {
        firing(prom, name, labels).await.then_some(())
    })
    .await
}

async fn firing(prom: &Prometheus, name: &str, labels: &[(&str, &str)]) -> bool {
    prom_alerts(prom, name, labels)
        .await
        .iter()
        .any(|a| a["state"] == "firing")
}

/// What Grafana's `query_result()` makes of one result: `name{k="v",...} value ts`.
fn grafana_query_result_text(series: &Value) -> String {
    let metric = series["metric"].as_object().cloned().unwrap_or_default();
    let name = metric.get("__name__").and_then(Value::as_str).unwrap_or("");
    let labels: Vec<String> = metric
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or("")))
        .collect();
    format!(
        "{name}{{{}}} {} {}",
        labels.join(","),
        series["value"][1].as_str().unwrap_or(""),
        series["value"][0].as_f64().unwrap_or(0.0) * 1000.0
    )
}

/// Runs a variable's query as Grafana would (label_values / query_result) and returns
/// its (text, value) options.
async fn variable_options(
    prom: &Prometheus,
    v: &Value,
    vars: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let q = substitute(&variable_query(v), vars)?;
    let label_values = Regex::new(r"^label_values\((.+),\s*(\w+)\)$").unwrap();
    let query_result = Regex::new(r"^query_result\((.+)\)$").unwrap();
    if let Some(c) = label_values.captures(q.trim()) {
        let result = prom
            .try_query(&format!("group by ({}) ({})", &c[2], &c[1]))
            .await?;
        return Ok(result
            .iter()
            .map(|s| {
                let value = s["metric"][&c[2]].as_str().unwrap_or("").to_string();
                (value.clone(), value)
            })
            .collect());
    }
    let Some(c) = query_result.captures(q.trim()) else {
        return Err(format!("unsupported variable query {q}"));
    };
    let result = prom.try_query(&c[1]).await?;
    let regex = str_of(v, "regex");
    let regex = regex
        .strip_prefix('/')
        .and_then(|r| r.rsplit_once('/'))
        .map(|(r, _flags)| r)
        .unwrap_or(regex);
    let re = Regex::new(regex).map_err(|e| format!("variable regex {regex}: {e}"))?;
    Ok(result
        .iter()
        .filter_map(|s| {
            let text = grafana_query_result_text(s);
            let c = re.captures(&text)?;
            let value = c.name("value").or(c.get(1))?.as_str().to_string();
            let shown = c
                .name("text")
                .map(|m| m.as_str().to_string())
                .unwrap_or(value.clone());
            Some((shown, value))
        })
        .collect())
}

/// Evaluates every panel query and variable query of every dashboard with `vars`
/// substituted; returns the failures and the queries that returned nothing.
async fn evaluate_dashboards(
    prom: &Prometheus,
    vars_for: impl Fn(&Value) -> BTreeMap<String, String>,
) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    let mut empty = Vec::new();
    for (file, _) in DASHBOARDS {
        let d = dashboard(file);
        let vars = vars_for(&d);
        for q in panel_queries(file, &d) {
            let expr = match substitute(&q.expr, &vars) {
                Ok(e) => e,
                Err(e) => {
                    errors.push(format!("{q}: {e}"));
                    continue;
                }
            };
            match prom.try_query(&expr).await {
                Err(e) => errors.push(format!("{q}\n    -> {e}")),
                Ok(r) if r.is_empty() => empty.push(format!("{q}")),
                Ok(_) => {}
            }
        }
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            if v["type"] != "query" {
                continue;
            }
            match variable_options(prom, v, &vars).await {
                Err(e) => errors.push(format!("{file}: variable {}: {e}", str_of(v, "name"))),
                Ok(o) if o.is_empty() => {
                    empty.push(format!("{file}: variable {}", str_of(v, "name")))
                }
                Ok(_) => {}
            }
        }
    }
    (errors, empty)
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboards_and_alerts_work_with_real_prometheus_and_alertmanager() {
    if !support::require_tool("prometheus") {
        return;
    }
    let Some(alertmanager) = require_any_tool(&["alertmanager", "prometheus-alertmanager"]) else {
        return;
    };
    let started = Instant::now();
    let phase = |what: &str| eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = fixture().await;
    let fake = &fleet.fake;
    let state = fake.state.clone();
    let exporter = fleet.start(&[]).await;
    let instance = exporter.addr.clone();
    assert!(instance.starts_with("127.0.0.1:"), "exporter on {instance}");

    let webhook = Webhook::start().await;
    let am = Alertmanager::start(
        &alertmanager,
        dir.path(),
        &format!(
            "route:\n  receiver: webhook\n  group_by: [alertname, instance, image_id, member_id]\n\
             \x20 group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: webhook\n    webhook_configs:\n      - url: '{}'\n        send_resolved: true\n",
            webhook.url()
        ),
    )
    .await;
    // A copy of the shipped rules with short `for:`s and `keep_firing_for:`s; the shipped
    // file stays as it is.
    let shipped = read(RULES);
    let (fast_rules, _) = shorten_for(&shipped);
    let prom =
        Prometheus::start_alerting(dir.path(), &fast_rules, &am.0.addr(), JOB, &[&instance]).await;
    phase("exporter, Alertmanager and Prometheus up");

    // Every shipped rule is loaded, with its `for:` and `keep_firing_for:` shortened.
    let n_rules = alert_rules(&yaml(RULES)).len();
    let rules = wait_for("the rules to load", async || {
        let rules = prom.rules().await;
        (rules.len() == n_rules).then_some(rules)
    })
    .await;
    for r in &rules {
        assert!(
            r["duration"].as_f64().unwrap_or(f64::MAX) <= duration_secs(SHORT_FOR),
            "rule {} kept a long for: {}",
            r["name"],
            r["duration"]
        );
        assert!(
            r["keepFiringFor"].as_f64().unwrap_or(0.0) <= duration_secs(SHORT_FOR),
            "rule {} kept a long keep_firing_for: {}",
            r["name"],
            r["keepFiringFor"]
        );
    }
    wait_for("Prometheus to scrape the exporter", async || {
        (prom.scalar(&format!(r#"up{{job="{JOB}"}}"#)).await == Some(1.0)).then_some(())
    })
    .await;

    // The fixture's own state fires what it should: the watched member that is not
    // shared, the pending share older than 7 days, the throttled image.
    wait_firing(
        &prom,
        "ImsWatchedShareMissing for the missing member",
        "ImsWatchedShareMissing",
        &[("image_id", IMAGE), ("member_id", MISSING)],
    )
    .await;
    wait_firing(
        &prom,
        "ImsSharePendingTooLong for the old pending share",
        "ImsSharePendingTooLong",
        &[("image_id", IMAGE), ("member_id", D1)],
    )
    .await;
    wait_firing(
        &prom,
        "ImsApiThrottled",
        "ImsApiThrottled",
        &[("job", JOB), ("instance", "")],
    )
    .await;
    wait_firing(
        &prom,
        "ImsEventSourceDown for the target whose reads fail",
        "ImsEventSourceDown",
        &[("project_id", PROJECT2), ("instance", "")],
    )
    .await;
    assert!(
        prom_alerts(&prom, "ImsEventSourceDown", &[("project_id", PROJECT)])
            .await
            .is_empty(),
        "the target whose reads work does not fire"
    );
    // The images shared with us: the untrusted pending one is offered, the untrusted
    // accepted one usable; the trusted owner's fires nothing.
    for (name, image) in [
        ("ImsUntrustedImageOffered", OFFERED),
        ("ImsUntrustedImageUsable", ACCEPTED_UNTRUSTED),
    ] {
        wait_for(&format!("{name} for {image}"), async || {
            firing(&prom, name, &[("image_id", image), ("instance", "")])
                .await
                .then_some(())
        })
        .await;
    }
    for (name, image) in [
        ("ImsUntrustedImageOffered", ACCEPTED_UNTRUSTED),
        ("ImsUntrustedImageUsable", OFFERED),
        ("ImsUntrustedImageOffered", TRUSTED_OFFER),
        ("ImsUntrustedImageUsable", TRUSTED_OFFER),
    ] {
        assert!(
            prom_alerts(&prom, name, &[("image_id", image)])
                .await
                .is_empty(),
            "{name} for {image}: {:?}",
            prom.alerts().await
        );
    }
    phase("fixture alerts firing");
    // With real data in Prometheus, every rule evaluates without error.
    for r in prom.rules().await {
        assert_eq!(
            r["health"],
            "ok",
            "rule {} failed: {}\n{}",
            r["name"],
            r["lastError"],
            prom.logs()
        );
    }
    // Allowed members never alert; a watched member that is shared does not either.
    assert!(
        prom_alerts(&prom, "ImsUnexpectedImageShare", &[])
            .await
            .is_empty(),
        "no unexpected share yet: {:?}",
        prom.alerts().await
    );
    assert!(
        prom_alerts(&prom, "ImsWatchedShareMissing", &[("member_id", P1)])
            .await
            .is_empty()
    );
    assert!(
        webhook
            .find("firing", &[("alertname", "ImsUnexpectedImageShare")])
            .is_none(),
        "{:?}",
        webhook.alerts()
    );

    // Someone shares the image with a stranger: critical alert at the webhook, with the
    // image and the member in its labels and the image's name in its description.
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    Share::new(PROJECT, IMAGE, STRANGER)
        .status("pending")
        .created(&now)
        .put(fake);
    let alert = wait_for("ImsUnexpectedImageShare at the webhook", async || {
        webhook.find(
            "firing",
            &[
                ("alertname", "ImsUnexpectedImageShare"),
                ("image_id", IMAGE),
                ("member_id", STRANGER),
            ],
        )
    })
    .await;
    phase("ImsUnexpectedImageShare notified");
    // Labelled with the share only: the status and the exporter's job and instance
    // change while the share stays, so they are not labels (the status is in the
    // description).
    for (k, v) in [
        ("severity", "critical"),
        ("member_type", "project"),
        ("region", REGION),
        ("project_id", PROJECT),
        ("status", ""),
        ("job", ""),
        ("instance", ""),
    ] {
        assert_eq!(alert.label(k), v, "label {k} of {alert:?}");
    }
    let description = alert.annotations["description"].as_str().unwrap_or("");
    assert!(
        description.contains(&format!("{IMAGE} ({IMAGE_NAME})"))
            && description.contains(STRANGER)
            && description.contains("(share status pending)")
            && description.contains("What to do"),
        "description: {description}"
    );
    wait_for("ImsImageShareAdded at the webhook", async || {
        webhook.find(
            "firing",
            &[("alertname", "ImsImageShareAdded"), ("image_id", IMAGE)],
        )
    })
    .await;

    untrusted_offer_reaches_the_receiver(fake, &webhook).await;
    phase("ImsUntrustedImageOffered and ImsUntrustedImageUsable notified");

    // Every panel and variable query of every dashboard evaluates, for "All" and for
    // one concrete selection; with "All", each returns data.
    let (errors, empty) = evaluate_dashboards(&prom, |d| all_vars(d, ".*")).await;
    assert!(
        errors.is_empty(),
        "dashboard queries failed:\n{}",
        errors.join("\n")
    );
    assert!(
        empty.is_empty(),
        "dashboard queries returned no data:\n{}",
        empty.join("\n")
    );
    let (errors, _) = evaluate_dashboards(&prom, |d| {
        let mut vars = all_vars(d, ".*");
        for (k, v) in [
            ("job", JOB),
            ("region", REGION),
            ("project", PROJECT),
            ("image", IMAGE),
            ("instance", instance.as_str()),
        ] {
            if vars.contains_key(k) {
                // As Grafana interpolates a selected value into a regex matcher:
                // regex-escaped, with the backslashes escaped for the PromQL string.
                vars.insert(k.to_string(), regex::escape(v).replace('\\', "\\\\"));
            }
        }
        vars
    })
    .await;
    assert!(
        errors.is_empty(),
        "dashboard queries failed:\n{}",
        errors.join("\n")
    );
    // The image picker shows names (the ID when there is none) and selects IDs.
    let overview = dashboard(DASHBOARDS[0].0);
    let image_var = overview["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "image")
        .expect("image variable")
        .clone();
    let options: BTreeSet<(String, String)> =
        variable_options(&prom, &image_var, &all_vars(&overview, ".*"))
            .await
            .expect("image variable")
            .into_iter()
            .collect();
    let want: BTreeSet<(String, String)> = [
        (IMAGE_NAME, IMAGE),
        (THROTTLED, THROTTLED),
        (DISCOVERED_NAME, DISCOVERED),
    ]
    .into_iter()
    .map(|(t, v)| (t.to_string(), v.to_string()))
    .collect();
    assert_eq!(options, want, "image variable options (text, value)");
    // The unexpected-shares table names the image and dates the share.
    let table = unexpected_shares_table(&overview);
    let table_query = async |i: usize| {
        let expr = str_of(&table["targets"][i], "expr");
        prom.query(&substitute(expr, &all_vars(&overview, ".*")).unwrap())
            .await
    };
    let rows = table_query(0).await;
    assert!(
        rows.iter().any(|r| label(r, "member_id") == STRANGER
            && label(r, "image_name") == IMAGE_NAME
            && label(r, "member_type") == "project"
            && label(r, "status") == "pending"),
        "unexpected shares table: {rows:?}"
    );
    let since = table_query(1).await;
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0;
    assert!(
        since.iter().any(|r| label(r, "member_id") == STRANGER
            && r["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|ms| (now_ms - ms).abs() < 120_000.0)),
        "shared-since column (ms since the epoch, about now): {since:?}"
    );
    phase("dashboard queries evaluated");

    // The share is removed: the webhook hears that the alert resolved (and not before:
    // the alert held steady while the share existed).
    let stranger_alert = [
        ("alertname", "ImsUnexpectedImageShare"),
        ("image_id", IMAGE),
        ("member_id", STRANGER),
    ];
    assert!(
        webhook.find("resolved", &stranger_alert).is_none(),
        "ImsUnexpectedImageShare resolved while the share still existed: {:?}",
        webhook.alerts()
    );
    let seen = webhook.alerts().len();
    assert!(state.remove_member(PROJECT, IMAGE, STRANGER));
    wait_for(
        "ImsUnexpectedImageShare resolved at the webhook",
        async || webhook.find_since(seen, "resolved", &stranger_alert),
    )
    .await;
    phase("ImsUnexpectedImageShare resolved");

    // IMS goes away: polls of the image fail and ImsPollFailing fires for it.
    assert!(
        prom_alerts(&prom, "ImsPollFailing", &[("image_id", IMAGE)])
            .await
            .is_empty(),
        "the image polls fine so far"
    );
    fleet.stop().await;
    let alert = wait_for("ImsPollFailing at the webhook", async || {
        webhook.find(
            "firing",
            &[("alertname", "ImsPollFailing"), ("image_id", IMAGE)],
        )
    })
    .await;
    assert_eq!(alert.label("severity"), "warning");
    phase("ImsPollFailing notified");

    // The exporter goes away: ImsExporterDown (up == 0) fires for its job, and the
    // description names the instance.
    drop(exporter);
    let alert = wait_for("ImsExporterDown at the webhook", async || {
        webhook.find(
            "firing",
            &[
                ("alertname", "ImsExporterDown"),
                ("job", JOB),
                ("instance", ""),
            ],
        )
    })
    .await;
    let description = alert.annotations["description"].as_str().unwrap_or("");
    assert!(
        description.contains(&instance),
        "description: {description}"
    );
    phase("ImsExporterDown notified");

    assert_eq!(read(RULES), shipped, "the shipped rules file is untouched");
    drop(prom);
    drop(am);
    drop(webhook);
}

/// A new offer from an untrusted owner reaches the Alertmanager receiver within one
/// `incoming.interval` plus the rule's `for:` (and the pipeline's own second each of
/// scrape, evaluation and `group_wait`), labelled with the image only and naming owner
/// and name; accepted, the usable alert fires and the offered one resolves.
async fn untrusted_offer_reaches_the_receiver(
    fake: &ims_exporter::fake_ims::FakeIms,
    webhook: &Webhook,
) {
    let offered = Instant::now();
    fake.state.offer_image(
        PROJECT,
        NEW_OFFER,
        "<b>trial</b>",
        UNTRUSTED_OWNER,
        "pending",
    );
    let offered_alert = [
        ("alertname", "ImsUntrustedImageOffered"),
        ("image_id", NEW_OFFER),
    ];
    let alert = wait_for("ImsUntrustedImageOffered at the webhook", async || {
        webhook.find("firing", &offered_alert)
    })
    .await;
    let took = offered.elapsed();
    // 1s listing + 0s for: + 1s scrape + 1s evaluation + 1s group_wait, with room for
    // a loaded machine.
    assert!(
        took.as_secs() < 20,
        "the offer took {took:?} to reach the receiver"
    );
    for (k, v) in [
        ("severity", "warning"),
        ("region", REGION),
        ("project_id", PROJECT),
        ("owner", ""),
        ("member_status", ""),
        ("job", ""),
        ("instance", ""),
    ] {
        assert_eq!(alert.label(k), v, "label {k} of {alert:?}");
    }
    let description = alert.annotations["description"].as_str().unwrap_or("");
    assert!(
        description.contains(&format!(
            "{NEW_OFFER} (<b>trial</b>) of owner {UNTRUSTED_OWNER}"
        )),
        "description: {description}"
    );
    let seen = webhook.alerts().len();
    assert!(fake.state.set_offer_status(PROJECT, NEW_OFFER, "accepted"));
    let usable = wait_for("ImsUntrustedImageUsable at the webhook", async || {
        webhook.find(
            "firing",
            &[
                ("alertname", "ImsUntrustedImageUsable"),
                ("image_id", NEW_OFFER),
            ],
        )
    })
    .await;
    assert_eq!(usable.label("severity"), "critical");
    let description = usable.annotations["description"].as_str().unwrap_or("");
    assert!(description.contains("our status accepted"), "{description}");
    wait_for(
        "ImsUntrustedImageOffered resolved at the webhook",
        async || webhook.find_since(seen, "resolved", &offered_alert),
    )
    .await;
}

/// With `member_metrics: false` the exporter has no per-member series (info, URN,
/// timestamps), but `ims_image_member_unexpected` stays: the unexpected-shares table
/// still lists every unexpected share, with the image's name, the member, its type and
/// status (the URN and "shared since" are unknown then and stay empty).
#[tokio::test(flavor = "multi_thread")]
async fn the_unexpected_shares_table_lists_shares_without_member_metrics() {
    if !support::require_tool("prometheus") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = Fleet::new()
        .await
        .config(&format!(
            "request_timeout: 2s\nmember_metrics: false\nallowed_members: [{P1}]"
        ))
        .image(IMAGE, &format!("name: {IMAGE_NAME}"));
    let fake = &fleet.fake;
    let old = "2025-01-02T00:00:00Z";
    fake.state.add_image(PROJECT, IMAGE, IMAGE_NAME);
    Share::new(PROJECT, IMAGE, P1).created(old).put(fake);
    Share::new(PROJECT, IMAGE, STRANGER)
        .status("pending")
        .created(old)
        .put(fake);
    Share::new(PROJECT, IMAGE, ORG)
        .kind("organization")
        .urn(ORG_URN)
        .created(old)
        .put(fake);
    let exporter = fleet.start(&[]).await;
    let prom = Prometheus::start_scraping(dir.path(), JOB, &[&exporter.addr]).await;
    wait_for("both unexpected shares in Prometheus", async || {
        (prom.query("ims_image_member_unexpected").await.len() == 2).then_some(())
    })
    .await;
    assert!(
        prom.query("ims_image_member_info").await.is_empty(),
        "member_metrics: false exports no per-member info"
    );

    let overview = dashboard(DASHBOARDS[0].0);
    let table = unexpected_shares_table(&overview);
    let expr = substitute(
        str_of(&table["targets"][0], "expr"),
        &all_vars(&overview, ".*"),
    )
    .unwrap();
    let rows = prom.query(&expr).await;
    let mut got: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                "member_id",
                "member_type",
                "status",
                "image_id",
                "image_name",
                "urn",
            ]
            .map(|l| label(r, l))
        })
        .collect();
    got.sort();
    let want = [
        [STRANGER, "project", "pending", IMAGE, IMAGE_NAME, ""],
        [ORG, "organization", "accepted", IMAGE, IMAGE_NAME, ""],
    ]
    .map(|r| r.map(str::to_string));
    let mut want = want.to_vec();
    want.sort();
    assert_eq!(got, want, "unexpected shares table rows: {rows:?}");
    // The shared-since column has nothing to show without per-member timestamps; its
    // query still evaluates.
    let since = substitute(
        str_of(&table["targets"][1], "expr"),
        &all_vars(&overview, ".*"),
    )
    .unwrap();
    assert_eq!(prom.query(&since).await, Vec::<Value>::new());
    drop(prom);
    drop(exporter);
    fleet.stop().await;
}
