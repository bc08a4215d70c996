//! Logging setup: logfmt (the Prometheus exporters' default) or JSON, to stderr so
//! that `--once` can print metrics on stdout. Both write the fields of the spans an
//! event is in (an image poll's region, project and image) beside the event's own:
//! logfmt at the end of the line, JSON as top-level keys, as if the event had them.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

pub fn init(level: LogLevel, format: LogFormat) {
    // Our level for our crate; dependencies only from warn up, so a debug log of the
    // exporter does not fill with HTTP internals.
    let filter = EnvFilter::new(format!("warn,ims_exporter={}", level.as_str()));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .with_span_name(false)
                    .with_span_path(false)
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(FlatJson)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}

/// One JSON object per line: `timestamp`, `level`, the event's fields (`message`
/// first), the fields of the spans it is in (the event's own win), `target`.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(formatted) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                // The spans' fields were recorded by `JsonFields`: a JSON object.
                if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(formatted) {
                    for (k, v) in map {
                        fields.push(k, v);
                    }
                }
            }
        }
        // Keys written so far: an event's own field wins over a span's of the same name.
        let mut written = std::collections::HashSet::new();
        let mut entries = vec![
            (
                "timestamp".to_string(),
                serde_json::Value::from(
                    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
                ),
            ),
            (
                "level".to_string(),
                serde_json::Value::from(event.metadata().level().as_str()),
            ),
        ];
        entries.extend(fields.0);
        entries.push((
            "target".to_string(),
            serde_json::Value::from(event.metadata().target()),
        ));
        write!(writer, "{{")?;
        for (k, v) in entries {
            let sep = if written.is_empty() { "" } else { "," };
            let key = serde_json::Value::from(k.as_str());
            if written.insert(k) {
                write!(writer, "{sep}{key}:{v}")?;
            }
        }
        writeln!(writer, "}}")
    }
}

/// An event's fields as JSON values, in the order they were written.
struct Fields(Vec<(String, serde_json::Value)>);

impl Fields {
    fn push(&mut self, key: impl Into<String>, value: serde_json::Value) {
        self.0.push((key.into(), value));
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field.name(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field.name(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field.name(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field.name(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field.name(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field.name(), format!("{value:?}").into());
    }
}
