//! A direct writer for the two exposition formats Prometheus scrapes: OpenMetrics 1.0
//! and the classic text format 0.0.4.
//!
//! The snapshot families hold up to a few hundred thousand series, so they are written
//! straight into one presized buffer: label sets shared by many series (an image's
//! `region`, `project_id`, `image_id`) are escaped once and copied in as a block, and
//! nothing is allocated per series.

use crate::state::is_plain_label;

/// The exposition format of a scrape (which one: [`super::negotiation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// Receives finished chunks of the exposition; returns false when nobody wants more
/// (the client went away).
pub type Sink<'a> = &'a mut dyn FnMut(String) -> bool;

/// Writes families and their samples in order. Call [`Exposition::family`], then for
/// each series [`Exposition::series`], any number of labels, and one value.
pub struct Exposition<'a> {
    out: String,
    format: Format,
    name: &'static str,
    kind: Kind,
    labels_open: bool,
    /// With a sink, the buffer is handed over in chunks of about this size (at line
    /// ends), so a scrape streams out while the rest is rendered.
    chunk: usize,
    sink: Option<Sink<'a>>,
    stopped: bool,
}

impl<'a> Exposition<'a> {
    /// Starts an empty exposition; everything is returned by [`Exposition::finish`].
    pub fn new(format: Format) -> Self {
        Exposition {
            out: String::new(),
            format,
            name: "",
            kind: Kind::Gauge,
            labels_open: false,
            chunk: usize::MAX,
            sink: None,
            stopped: false,
        }
    }

    /// Like [`Exposition::new`], but hands the output to `sink` in chunks of about
    /// `chunk` bytes.
    pub fn streaming(format: Format, chunk: usize, sink: Sink<'a>) -> Self {
        Exposition {
            out: String::with_capacity(chunk.saturating_add(chunk / 8)),
            chunk,
            sink: Some(sink),
            ..Exposition::new(format)
        }
    }

    /// The sink refused a chunk: the rest need not be rendered.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    fn line_done(&mut self) {
        if self.out.len() >= self.chunk {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if let Some(sink) = self.sink.as_mut() {
            if self.stopped {
                self.out.clear();
                return;
            }
            let next = String::with_capacity(self.chunk.saturating_add(self.chunk / 8));
            let full = std::mem::replace(&mut self.out, next);
            if !full.is_empty() && !sink(full) {
                self.stopped = true;
            }
        }
    }

    /// `# HELP` and `# TYPE` of the next family. In text 0.0.4 a counter family carries
    /// its `_total` name; OpenMetrics names the family without it.
    pub fn family(&mut self, name: &'static str, help: &str, kind: Kind) {
        self.name = name;
        self.kind = kind;
        let total = if kind == Kind::Counter && self.format == Format::Text {
            "_total"
        } else {
            ""
        };
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push_str(total);
        self.out.push(' ');
        escape_help(&mut self.out, help, self.format);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push_str(total);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
    }

    /// Starts a sample of the current family labelled with a target's `region` and
    /// `project_id` (the per-target families).
    pub fn target_series(&mut self, region: &str, project_id: &str) -> &mut Self {
        self.series()
            .label("region", region)
            .label("project_id", project_id)
    }

    /// Starts a sample of the current family.
    pub fn series(&mut self) -> &mut Self {
        self.out.push_str(self.name);
        if self.kind == Kind::Counter {
            self.out.push_str("_total");
        }
        self.labels_open = false;
        self
    }

    /// Starts a sample of the current family named with `suffix` (`_bucket`, `_sum`,
    /// `_count` of a histogram).
    pub fn suffixed(&mut self, suffix: &str) -> &mut Self {
        self.out.push_str(self.name);
        self.out.push_str(suffix);
        self.labels_open = false;
        self
    }

    /// A label whose value is a number (a histogram's `le`).
    pub fn float_label(&mut self, name: &str, value: f64) -> &mut Self {
        self.label_separator();
        self.out.push_str(name);
        self.out.push_str("=\"");
        write_f64(&mut self.out, value);
        self.out.push('"');
        self
    }

    fn label_separator(&mut self) {
        self.out.push(if self.labels_open { ',' } else { '{' });
        self.labels_open = true;
    }

    /// One label; the value is escaped.
    pub fn label(&mut self, name: &str, value: &str) -> &mut Self {
        self.label_separator();
        self.out.push_str(name);
        self.out.push_str("=\"");
        escape_label_value(&mut self.out, value);
        self.out.push('"');
        self
    }

    /// [`Exposition::label`] for a value known to need no escaping
    /// ([`is_plain_label`]); `plain` false escapes it as usual.
    pub fn label_if_plain(&mut self, name: &str, value: &str, plain: bool) -> &mut Self {
        if !plain {
            return self.label(name, value);
        }
        self.label_separator();
        self.out.push_str(name);
        self.out.push_str("=\"");
        self.out.push_str(value);
        self.out.push('"');
        self
    }

    /// Labels already encoded as `a="x",b="y"` (see [`label_block`]).
    pub fn labels(&mut self, block: &str) -> &mut Self {
        if !block.is_empty() {
            self.label_separator();
            self.out.push_str(block);
        }
        self
    }

    fn end_labels(&mut self) {
        if self.labels_open {
            self.out.push('}');
        }
        self.out.push(' ');
    }

    /// Ends the sample with a float value.
    pub fn value(&mut self, v: f64) {
        self.end_labels();
        write_f64(&mut self.out, v);
        self.out.push('\n');
        self.line_done();
    }

    /// Ends the sample with an integer value (counters, counts).
    pub fn int(&mut self, v: u64) {
        self.end_labels();
        self.out.push_str(itoa::Buffer::new().format(v));
        self.out.push('\n');
        self.line_done();
    }

    /// Ends the exposition (OpenMetrics with `# EOF`) and returns it, or, when
    /// streaming, hands over the last chunk and returns an empty string.
    /// One histogram's `_sum`, `_count` and cumulative `_bucket` series; `counts` are
    /// per bucket (not cumulative), `label` is one more label on every series.
    pub fn histogram(
        &mut self,
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
        count: u64,
        label: Option<(&str, &str)>,
    ) {
        let with = |w: &mut Self, suffix: &str| {
            w.suffixed(suffix);
            if let Some((k, v)) = label {
                w.label(k, v);
            }
        };
        with(self, "_sum");
        self.value(sum);
        with(self, "_count");
        self.int(count);
        let mut cumulative = 0;
        for (bound, n) in bounds.iter().zip(counts) {
            cumulative += n;
            with(self, "_bucket");
            self.float_label("le", *bound).int(cumulative);
        }
        with(self, "_bucket");
        self.label("le", "+Inf").int(count);
    }

    pub fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        self.flush();
        self.out
    }
}

/// Encodes labels once for reuse with [`Exposition::labels`].
pub fn label_block(labels: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(labels.iter().map(|(k, v)| k.len() + v.len() + 4).sum());
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(&mut out, v);
        out.push('"');
    }
    out
}

fn escape_label_value(out: &mut String, v: &str) {
    // IDs never need it; checking first keeps the common case one copy.
    if is_plain_label(v) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP escapes `\` and newlines; OpenMetrics also `"`.
fn escape_help(out: &mut String, help: &str, format: Format) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Floats as Prometheus parses them: whole numbers (counts, Unix times) with `.0` and
/// without float formatting, others in shortest round-trip form.
fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(v as i64));
        out.push_str(".0");
    } else {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_sample(w: &mut Exposition<'_>) {
        w.family("a_changes", "Changes \"seen\".", Kind::Counter);
        let block = label_block(&[("image_id", "i\"1"), ("region", "r")]);
        w.series().labels(&block).label("change", "added").int(3);
        w.family("b_time", "Time.", Kind::Gauge);
        w.series().value(1.5);
        w.series().label("x", "a\\b\nc").value(1_692_763_672.0);
        w.series().labels("").value(f64::NAN);
    }

    fn sample(format: Format) -> String {
        let mut w = Exposition::new(format);
        write_sample(&mut w);
        w.finish()
    }

    #[test]
    fn openmetrics() {
        assert_eq!(
            sample(Format::OpenMetrics),
            "# HELP a_changes Changes \\\"seen\\\".\n# TYPE a_changes counter\n\
             a_changes_total{image_id=\"i\\\"1\",region=\"r\",change=\"added\"} 3\n\
             # HELP b_time Time.\n# TYPE b_time gauge\nb_time 1.5\n\
             b_time{x=\"a\\\\b\\nc\"} 1692763672.0\nb_time NaN\n# EOF\n"
        );
    }

    #[test]
    fn text() {
        assert_eq!(
            sample(Format::Text),
            "# HELP a_changes_total Changes \"seen\".\n# TYPE a_changes_total counter\n\
             a_changes_total{image_id=\"i\\\"1\",region=\"r\",change=\"added\"} 3\n\
             # HELP b_time Time.\n# TYPE b_time gauge\nb_time 1.5\n\
             b_time{x=\"a\\\\b\\nc\"} 1692763672.0\nb_time NaN\n"
        );
    }

    #[test]
    fn streaming_gives_the_same_bytes_in_chunks() {
        let whole = sample(Format::OpenMetrics);
        let mut chunks = Vec::new();
        let mut sink = |c: String| {
            chunks.push(c);
            true
        };
        let mut w = Exposition::streaming(Format::OpenMetrics, 40, &mut sink);
        write_sample(&mut w);
        assert_eq!(w.finish(), "");
        assert!(chunks.len() > 2, "{chunks:?}");
        assert!(
            chunks.iter().all(|c| c.ends_with('\n')),
            "chunks end at line ends"
        );
        assert_eq!(chunks.concat(), whole);

        let mut calls = 0;
        let mut refuse = |_: String| {
            calls += 1;
            false
        };
        let mut w = Exposition::streaming(Format::Text, 1, &mut refuse);
        w.family("c", "C.", Kind::Gauge);
        w.series().value(1.0);
        assert!(w.stopped());
        w.series().value(2.0);
        w.finish();
        assert_eq!(calls, 1, "nothing is offered after a refusal");
    }

    #[test]
    fn floats() {
        for (v, want) in [
            (0.0, "0.0"),
            (-3.0, "-3.0"),
            (0.25, "0.25"),
            (1e20, "1e20"),
            (1_692_763_672.25, "1692763672.25"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            let mut s = String::new();
            write_f64(&mut s, v);
            assert_eq!(s, want);
            if v.is_finite() {
                assert_eq!(s.parse::<f64>().ok(), Some(v));
            }
        }
    }
}
