//! The bodies the webhook understands, recognised by shape: a CTS trace, FunctionGraph's
//! `{"cts": trace}`, a CloudEvents 1.0 envelope whose `data` is a trace, and an SMN
//! HTTP message ([`super::message::SmnMessage`]). Errors say what was wrong without
//! quoting the body: it is untrusted and may be anything.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::errors::BodyError;
use super::message::{SmnKind, SmnMessage};
use crate::ims::traces::Trace;

/// A recognised body.
#[derive(Debug)]
pub(crate) enum Push {
    /// A trace, bare, wrapped by FunctionGraph or in a CloudEvent.
    Trace(Box<Trace>, Shape),
    /// An SMN message (its trace, if any, is read once it is trusted).
    Smn(Box<SmnMessage>),
}

/// How a trace came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Trace,
    FunctionGraph,
    CloudEvent,
}

/// Recognises `body`.
pub(crate) fn parse(body: &[u8]) -> Result<Push, BodyError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| BodyError::NotJson {
        line: e.line(),
        column: e.column(),
    })?;
    let Value::Object(object) = value else {
        return Err(BodyError::NotAnObject);
    };
    if object.contains_key("specversion") {
        return cloud_event(object);
    }
    if is_smn(&object) {
        let message: SmnMessage = typed(Value::Object(object), "the SMN message")?;
        message.check_fields()?;
        return Ok(Push::Smn(Box::new(message)));
    }
    match trace_in(object, "the body")? {
        Some((trace, shape)) => Ok(Push::Trace(Box::new(trace), shape)),
        None => Err(BodyError::Unrecognised),
    }
}

/// An SMN message: a known `type` and a `topic_urn` (a trace has neither).
fn is_smn(object: &Map<String, Value>) -> bool {
    let kind = object.get("type").and_then(Value::as_str);
    kind.is_some_and(|k| SmnKind::parse(k).is_some()) && object.contains_key("topic_urn")
}

/// A CloudEvents 1.0 envelope, structured mode: `data` is the trace.
fn cloud_event(mut object: Map<String, Value>) -> Result<Push, BodyError> {
    if object.get("specversion").and_then(Value::as_str) != Some("1.0") {
        return Err(BodyError::SpecVersion);
    }
    let data = match object.remove("data") {
        Some(Value::Object(data)) => data,
        Some(_) => return Err(BodyError::NotATrace("the CloudEvent's data")),
        None => return Err(BodyError::NoData),
    };
    match trace_in(data, "the CloudEvent's data")? {
        Some((trace, _)) => Ok(Push::Trace(Box::new(trace), Shape::CloudEvent)),
        None => Err(BodyError::NotATrace("the CloudEvent's data")),
    }
}

/// The trace `object` is (with `trace_id`) or wraps (`{"cts": trace}`); `None` when
/// it is neither.
fn trace_in(
    mut object: Map<String, Value>,
    what: &'static str,
) -> Result<Option<(Trace, Shape)>, BodyError> {
    if object.contains_key("trace_id") {
        return Ok(Some((trace(Value::Object(object), what)?, Shape::Trace)));
    }
    match object.remove("cts") {
        Some(Value::Object(inner)) if inner.contains_key("trace_id") => Ok(Some((
            trace(Value::Object(inner), what)?,
            Shape::FunctionGraph,
        ))),
        Some(_) => Err(BodyError::NotATrace(what)),
        None => Ok(None),
    }
}

/// The trace an SMN Notification's `message` carries (a JSON string).
pub(crate) fn trace_in_message(message: &str) -> Result<Trace, BodyError> {
    let what = "the SMN message";
    let value: Value = serde_json::from_str(message).map_err(|e| BodyError::MessageNotJson {
        line: e.line(),
        column: e.column(),
    })?;
    let Value::Object(object) = value else {
        return Err(BodyError::NotATrace(what));
    };
    match trace_in(object, what)? {
        Some((trace, _)) => Ok(trace),
        None => Err(BodyError::NotATrace(what)),
    }
}

fn trace(value: Value, what: &'static str) -> Result<Trace, BodyError> {
    let trace: Trace = typed(value, what)?;
    check(&trace)?;
    Ok(trace)
}

/// `value` as a `T`; an error names the field's path, never its value (serde's own
/// messages quote it).
fn typed<T: DeserializeOwned>(value: Value, what: &'static str) -> Result<T, BodyError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = e.path().to_string();
        // The path is made of field names the types know, but keep it short anyway.
        path.truncate(64);
        BodyError::Field { what, path }
    })
}

/// [`Trace::check`] without its message's trace ID (input, not to be echoed).
pub(crate) fn check(trace: &Trace) -> Result<(), BodyError> {
    if trace.trace_id.is_empty() {
        return Err(BodyError::Trace("trace_id is empty".into()));
    }
    if trace.check().is_ok() {
        return Ok(());
    }
    let mut anonymous = trace.clone();
    anonymous.trace_id = "-".into();
    let message = match anonymous.check() {
        // Only the ID was too long.
        Ok(()) => format!("trace_id is {} bytes, too long", trace.trace_id.len()),
        Err(m) => m.strip_prefix("trace -: ").unwrap_or(&m).to_string(),
    };
    Err(BodyError::Trace(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(body: &str) -> Result<Shape, BodyError> {
        match parse(body.as_bytes())? {
            Push::Trace(t, shape) => {
                assert_eq!(t.trace_id, "t-1");
                Ok(shape)
            }
            Push::Smn(_) => panic!("an SMN message: {body}"),
        }
    }

    const TRACE: &str = r#"{"trace_id": "t-1", "trace_name": "addMember", "service_type": "IMS", "resource_id": "img", "time": 1720604624000}"#;

    #[test]
    fn every_trace_shape_is_recognised() {
        assert_eq!(shape(TRACE), Ok(Shape::Trace));
        assert_eq!(
            shape(&format!(r#"{{"cts": {TRACE}}}"#)),
            Ok(Shape::FunctionGraph)
        );
        let event = format!(
            r#"{{"specversion": "1.0", "id": "e1", "source": "CTS", "type": "x", "data": {TRACE}}}"#
        );
        assert_eq!(shape(&event), Ok(Shape::CloudEvent));
        let wrapped = format!(r#"{{"specversion": "1.0", "data": {{"cts": {TRACE}}}}}"#);
        assert_eq!(shape(&wrapped), Ok(Shape::CloudEvent));
    }

    #[test]
    fn an_smn_message_is_recognised_by_type_and_topic() {
        let body = r#"{"type": "Notification", "topic_urn": "urn:smn:cn-north-4:p:t",
            "message_id": "m", "message": "{}", "timestamp": "2024-07-10T09:43:44Z"}"#;
        assert!(matches!(parse(body.as_bytes()), Ok(Push::Smn(_))));
        // A "type" alone does not make an SMN message.
        let body = r#"{"type": "Notification", "message": "{}"}"#;
        assert_eq!(parse(body.as_bytes()).unwrap_err(), BodyError::Unrecognised);
    }

    #[test]
    fn errors_name_what_is_wrong_without_the_input() {
        let cases: [(&str, &str); 9] = [
            ("nope SECRET", "not JSON"),
            ("[1, 2]", "must be a JSON object"),
            (r#"{"hello": "SECRET"}"#, "unrecognised body"),
            (r#"{"trace_id": 5}"#, "field trace_id"),
            (
                r#"{"trace_id": "t", "user": {"id": ["SECRET"]}}"#,
                "field user.id",
            ),
            (r#"{"cts": "SECRET"}"#, "not a CTS trace"),
            (r#"{"specversion": "0.3", "data": {}}"#, "specversion"),
            (
                r#"{"specversion": "1.0", "data_base64": "SECRET"}"#,
                "no data",
            ),
            (r#"{"trace_id": ""}"#, "trace_id is empty"),
        ];
        for (body, expected) in cases {
            let e = parse(body.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(expected), "{body}: {e}");
            assert!(!e.contains("SECRET"), "{body}: {e}");
        }
        let long = format!(r#"{{"trace_id": "{}"}}"#, "SECRET".repeat(100));
        let e = parse(long.as_bytes()).unwrap_err().to_string();
        assert!(
            e.contains("trace_id is 600 bytes") && !e.contains("SECRET"),
            "{e}"
        );
        let long = format!(
            r#"{{"trace_id": "SECRET", "source_ip": "{}"}}"#,
            "x".repeat(600)
        );
        let e = parse(long.as_bytes()).unwrap_err().to_string();
        assert!(
            e.contains("source_ip is 600 bytes") && !e.contains("SECRET"),
            "{e}"
        );
    }

    #[test]
    fn a_notification_message_carries_a_trace() {
        assert_eq!(trace_in_message(TRACE).unwrap().trace_id, "t-1");
        let wrapped = format!(r#"{{"cts": {TRACE}}}"#);
        assert_eq!(trace_in_message(&wrapped).unwrap().trace_id, "t-1");
        assert!(trace_in_message("hello").is_err());
        assert!(trace_in_message("{}").is_err());
    }
}
