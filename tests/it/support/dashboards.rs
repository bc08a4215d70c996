//! Reading the shipped Grafana dashboards: their panel queries and variables, with
//! the variables substituted as Grafana would, for tests that run them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::Value;

/// Grafana's built-in variables, and what the test substitutes for them.
pub const GRAFANA_BUILTINS: [(&str, &str); 7] = [
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__interval_ms", "15000"),
    ("__range", "1h"),
    ("__range_s", "3600"),
    ("__range_ms", "3600000"),
    ("__auto", "15s"),
];
pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

pub fn dashboard(rel: &str) -> Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid JSON: {e}"))
}

pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// Every panel, including those inside collapsed rows.
pub fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// One query of one panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    pub dashboard: String,
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
}

impl std::fmt::Display for PanelQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} / {:?} / {}: {}",
            self.dashboard, self.panel, self.ref_id, self.expr
        )
    }
}

pub fn panel_queries(file: &str, d: &Value) -> Vec<PanelQuery> {
    panels(d)
        .into_iter()
        .filter(|p| p["type"] != "row")
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| PanelQuery {
                    dashboard: file.to_string(),
                    panel: str_of(p, "title").to_string(),
                    ref_id: str_of(t, "refId").to_string(),
                    expr: str_of(t, "expr").to_string(),
                })
        })
        .collect()
}

/// A template variable's query as Grafana stores it (object or legacy string form).
pub fn variable_query(v: &Value) -> String {
    match &v["query"] {
        Value::String(s) => s.clone(),
        q => q["query"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| str_of(v, "definition").to_string()),
    }
}

/// Substitutes Grafana variables (`$x`, `${x}`, `${x:fmt}`, `[[x]]`) from `vars` and the
/// built-ins; an undeclared variable is an error. `$1` and the like (regex
/// back-references) are not variables and stay.
pub fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let re = Regex::new(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]").unwrap();
    let mut err = None;
    let out = re.replace_all(expr, |c: &regex::Captures| {
        let name = c
            .get(1)
            .or(c.get(2))
            .or(c.get(3))
            .map(|m| m.as_str())
            .unwrap_or("");
        if name.starts_with(|ch: char| ch.is_ascii_digit()) {
            return c[0].to_string();
        }
        if let Some(v) = vars.get(name) {
            return v.clone();
        }
        if let Some((_, v)) = GRAFANA_BUILTINS.iter().find(|(n, _)| *n == name) {
            return v.to_string();
        }
        err = Some(format!("undeclared variable ${name} in {expr}"));
        String::new()
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out.into_owned()),
    }
}

/// The dashboard's variables other than the datasource, all set to `value`.
pub fn all_vars(d: &Value, value: &str) -> BTreeMap<String, String> {
    d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] != "datasource")
        .map(|v| (str_of(v, "name").to_string(), value.to_string()))
        .collect()
}
