//! What was wrong with a pushed body (never its content: it is untrusted and may be
//! anything), shared by the shapes ([`super::body`]) and the SMN message
//! ([`super::message`]).

/// What was wrong with a body (never its content).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum BodyError {
    #[error("the body is not JSON (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error(
        "unrecognised body: expected a CTS trace (with trace_id), {{\"cts\": trace}}, \
         a CloudEvents 1.0 envelope (specversion, data) or an SMN message (type, topic_urn)"
    )]
    Unrecognised,
    #[error("CloudEvents specversion must be \"1.0\"")]
    SpecVersion,
    #[error("the CloudEvent has no data (data_base64 is not accepted)")]
    NoData,
    #[error("{0} is not a CTS trace (an object with trace_id, or {{\"cts\": trace}})")]
    NotATrace(&'static str),
    #[error("{what}: field {path} is missing or has the wrong type")]
    Field { what: &'static str, path: String },
    #[error("the SMN message field is not JSON (line {line}, column {column})")]
    MessageNotJson { line: usize, column: usize },
    #[error("the trace is not acceptable: {0}")]
    Trace(String),
    #[error("the SMN message's {0} is too long")]
    SmnTooLong(&'static str),
    #[error("the SMN message of type {0} has no {1}")]
    SmnMissing(&'static str, &'static str),
}
