//! Scraping `/metrics` as Prometheus does (OpenMetrics plain or gzip, text 0.0.4)
//! and reading samples out of the exposition.

use std::time::{Duration, Instant};

/// What Prometheus sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Variant {
    OpenMetrics,
    OpenMetricsGzip,
    Text,
}

pub(crate) struct Scrape<'a> {
    pub(crate) elapsed: Duration,
    pub(crate) body: &'a [u8],
}

/// One scrape, its body read into `buf`. The buffer is the caller's and reused, as a
/// scraper's would be: a fresh 90 MB buffer for every scrape costs the client more
/// page faults and copies than the exporter takes to answer, and the timing is the
/// exporter's.
pub(crate) async fn scrape<'a>(
    client: &reqwest::Client,
    url: &str,
    variant: Variant,
    buf: &'a mut Vec<u8>,
) -> Result<Scrape<'a>, String> {
    let mut req = client.get(url);
    if variant != Variant::Text {
        req = req.header("accept", PROMETHEUS_ACCEPT);
    }
    if variant == Variant::OpenMetricsGzip {
        req = req.header("accept-encoding", "gzip");
    }
    buf.clear();
    let start = Instant::now();
    let mut resp = req
        .send()
        .await
        .map_err(|e| format!("scrape failed: {e}"))?;
    let status = resp.status();
    let gzipped = resp
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the scrape failed: {e}"))?
    {
        buf.extend_from_slice(&chunk);
    }
    let elapsed = start.elapsed();
    let body = &buf[..];
    if status != 200 {
        return Err(format!(
            "scrape answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    if gzipped != (variant == Variant::OpenMetricsGzip) {
        return Err(format!(
            "scrape: Content-Encoding gzip was {gzipped}, expected {}",
            !gzipped
        ));
    }
    Ok(Scrape { elapsed, body })
}

/// The sum of the samples of `name` whose labels pass `keep`.
pub(crate) fn sum_samples(text: &str, name: &str, keep: impl Fn(&str) -> bool) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let labels = match rest.as_bytes().first() {
            Some(b'{') => rest.get(1..rest.rfind('}')?)?,
            Some(b' ') => "",
            _ => continue,
        };
        if !keep(labels) {
            continue;
        }
        if let Some(v) = line
            .split_whitespace()
            .last()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

pub(crate) fn series_count(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}
