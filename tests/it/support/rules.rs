//! The documented mechanism for trying the shipped alert rules fast
//! (docs/dashboards-and-alerts.md#how-they-are-tested): a copy of the rules text with chosen rule durations (`for:`,
//! `keep_firing_for:`) shortened, and nothing else changed.

use regex::Regex;

/// A Prometheus duration (`90s`, `15m`, `1h30m`, `7d`) in seconds.
pub fn duration_secs(d: &str) -> f64 {
    let re = Regex::new(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)").unwrap();
    let mut total = 0.0;
    let mut consumed = 0;
    for c in re.captures_iter(d) {
        consumed += c[0].len();
        let n: f64 = c[1].parse().unwrap();
        total += n * match &c[2] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 7.0 * 86400.0,
            _ => 365.0 * 86400.0,
        };
    }
    assert_eq!(consumed, d.len(), "not a Prometheus duration: {d:?}");
    total
}

/// A copy of `rules` in which each key of `to` (e.g. `("for", "1s")`) longer than its
/// duration is set to it (shorter ones, like `0m`, stay). Returns the copy and how many
/// durations it shortened.
pub fn shorten(rules: &str, to: &[(&str, &str)]) -> (String, usize) {
    let keys: Vec<&str> = to.iter().map(|(k, _)| *k).collect();
    let re = Regex::new(&format!(r"^(\s*({}):\s*)(\S+)\s*$", keys.join("|"))).unwrap();
    let mut changed = 0;
    let mut out = String::with_capacity(rules.len());
    for line in rules.lines() {
        let short = re.captures(line).and_then(|c| {
            let (_, short) = to.iter().find(|(k, _)| *k == &c[2])?;
            (duration_secs(c[3].trim_matches('"')) > duration_secs(short))
                .then(|| format!("{}{short}", &c[1]))
        });
        match short {
            Some(s) => {
                out.push_str(&s);
                changed += 1;
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    (out, changed)
}
