//! One error type for everything that can go wrong talking to IMS, with what a user
//! needs to act: operation, HTTP status, API error code and message, request id.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "{operation}: HTTP {status}{}{}",
        fmt_code(code, message),
        fmt_request_id(request_id)
    )]
    Http {
        operation: &'static str,
        status: u16,
        code: Option<String>,
        message: Option<String>,
        request_id: Option<String>,
    },
    #[error("{operation}: request timed out")]
    Timeout { operation: &'static str },
    #[error("{operation}: cannot connect: {message}")]
    Connect {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: transport error: {message}")]
    Transport {
        operation: &'static str,
        message: String,
    },
    /// The connection broke while the body was being read (a truncated answer).
    #[error(
        "{operation}: reading the response failed{}: {message}",
        fmt_request_id(request_id)
    )]
    Read {
        operation: &'static str,
        message: String,
        request_id: Option<String>,
    },
    /// A 3xx: the API never redirects a signed request, so it is never followed.
    #[error(
        "{operation}: HTTP {status} redirect to {location:?} refused (signed requests are never redirected; check the endpoint){}",
        fmt_request_id(request_id)
    )]
    Redirect {
        operation: &'static str,
        status: u16,
        location: String,
        request_id: Option<String>,
    },
    /// More members than `max_members_per_image` (or what `max_members_total` leaves).
    #[error(
        "{operation}: more than {limit} members ({setting}){}",
        fmt_request_id(request_id)
    )]
    TooManyMembers {
        operation: &'static str,
        limit: usize,
        setting: &'static str,
        request_id: Option<String>,
    },
    #[error("{operation}: more than {limit} images ({setting})")]
    TooManyImages {
        operation: &'static str,
        limit: usize,
        setting: &'static str,
    },
    #[error(
        "{operation}: cannot decode response{}: {message}",
        fmt_request_id(request_id)
    )]
    Decode {
        operation: &'static str,
        message: String,
        request_id: Option<String>,
    },
    #[error(
        "{operation}: response larger than {limit} bytes{}",
        fmt_request_id(request_id)
    )]
    TooLarge {
        operation: &'static str,
        limit: usize,
        request_id: Option<String>,
    },
    #[error("{operation}: paging stopped: {message}")]
    Paging {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: {message}")]
    NoCredentials {
        operation: &'static str,
        message: String,
    },
    /// An ID or marker that cannot be part of a request URL.
    #[error("{operation}: cannot build the request URL: {message}")]
    Url {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: cannot sign request: {message}")]
    Signing {
        operation: &'static str,
        message: String,
    },
}

/// Longest API error message kept (in characters); the rest is cut with `…`.
pub const MAX_MESSAGE_CHARS: usize = 512;
/// Longest error code or request id kept.
const MAX_CODE_CHARS: usize = 128;
/// Longest excerpt of a body that is not JSON (an HTML page from a proxy, say).
const MAX_NON_JSON_CHARS: usize = 120;

/// `s` without control characters, cut to `max` characters (marked with `…`).
pub fn excerpt(s: &str, max: usize) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    if s.chars().filter(|c| !c.is_control()).nth(max).is_some() {
        out.push('…');
    }
    out
}

fn fmt_code(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!(" {c}: {m}"),
        (Some(c), None) => format!(" {c}"),
        (None, Some(m)) => format!(": {m}"),
        (None, None) => String::new(),
    }
}

fn fmt_request_id(id: &Option<String>) -> String {
    id.as_ref()
        .map(|id| format!(" (request id {id})"))
        .unwrap_or_default()
}

/// The `reason` label of `ims_image_poll_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Auth,
    Throttled,
    NotFound,
    Http4xx,
    Http5xx,
    Timeout,
    Connect,
    Decode,
    TooLarge,
    Paging,
    Redirect,
    Read,
    Url,
}

impl Reason {
    /// Every reason, so that counters can start at 0 (then `increase()` sees the first).
    pub const ALL: [Reason; 13] = [
        Reason::Auth,
        Reason::Throttled,
        Reason::NotFound,
        Reason::Http4xx,
        Reason::Http5xx,
        Reason::Timeout,
        Reason::Connect,
        Reason::Decode,
        Reason::TooLarge,
        Reason::Paging,
        Reason::Redirect,
        Reason::Read,
        Reason::Url,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Auth => "auth",
            Reason::Throttled => "throttled",
            Reason::NotFound => "not_found",
            Reason::Http4xx => "http_4xx",
            Reason::Http5xx => "http_5xx",
            Reason::Timeout => "timeout",
            Reason::Connect => "connect",
            Reason::Decode => "decode",
            Reason::TooLarge => "too_large",
            Reason::Paging => "paging",
            Reason::Redirect => "redirect",
            Reason::Read => "read",
            Reason::Url => "url",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ApiError {
    pub fn reason(&self) -> Reason {
        match self {
            ApiError::Http { status, code, .. } => {
                let code = code.as_deref().unwrap_or("");
                // APIGW.0308 on the cloud gateway, APIG.0308 on API Gateway.
                if *status == 429 || code.ends_with(".0308") {
                    Reason::Throttled
                } else if *status == 401
                    || code == "APIGW.0301"
                    || (*status == 403 && code.starts_with("APIGW"))
                {
                    Reason::Auth
                } else if *status == 404 {
                    Reason::NotFound
                } else if *status >= 500 {
                    Reason::Http5xx
                } else {
                    Reason::Http4xx
                }
            }
            ApiError::Timeout { .. } => Reason::Timeout,
            ApiError::NoCredentials { .. } => Reason::Auth,
            ApiError::Connect { .. } | ApiError::Transport { .. } => Reason::Connect,
            ApiError::Decode { .. } | ApiError::Signing { .. } => Reason::Decode,
            ApiError::TooLarge { .. }
            | ApiError::TooManyMembers { .. }
            | ApiError::TooManyImages { .. } => Reason::TooLarge,
            ApiError::Redirect { .. } => Reason::Redirect,
            ApiError::Read { .. } => Reason::Read,
            ApiError::Url { .. } => Reason::Url,
            ApiError::Paging { .. } => Reason::Paging,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            ApiError::Http { request_id, .. }
            | ApiError::Decode { request_id, .. }
            | ApiError::TooLarge { request_id, .. }
            | ApiError::Read { request_id, .. }
            | ApiError::Redirect { request_id, .. }
            | ApiError::TooManyMembers { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// Builds the error for a non-2xx answer from either error body format:
    /// IMS `{"error":{"code","message"}}` or API gateway `{"error_code","error_msg","request_id"}`.
    pub fn from_response(
        operation: &'static str,
        status: u16,
        header_request_id: Option<String>,
        body: &[u8],
    ) -> Self {
        #[derive(serde::Deserialize)]
        struct Inner {
            code: Option<String>,
            message: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Body {
            error: Option<Inner>,
            error_code: Option<String>,
            error_msg: Option<String>,
            request_id: Option<String>,
        }
        let parsed: Option<Body> = serde_json::from_slice(body).ok();
        let (mut code, mut message, mut body_request_id) = (None, None, None);
        if let Some(b) = parsed {
            if let Some(inner) = b.error {
                code = inner.code;
                message = inner.message;
            }
            code = code.or(b.error_code);
            message = message.or(b.error_msg);
            body_request_id = b.request_id;
        }
        // Whatever the server sends ends up in a log line on every try: bounded.
        let code = code.map(|c| excerpt(&c, MAX_CODE_CHARS));
        let mut message = message.map(|m| excerpt(&m, MAX_MESSAGE_CHARS));
        let body_request_id = body_request_id.map(|r| excerpt(&r, MAX_CODE_CHARS));
        if message.is_none() && !body.is_empty() {
            // Not JSON (an HTML error page from a proxy, say): keep a short, printable excerpt.
            let head = &body[..body.len().min(4 * MAX_NON_JSON_CHARS)];
            message = Some(excerpt(&String::from_utf8_lossy(head), MAX_NON_JSON_CHARS));
        }
        ApiError::Http {
            operation,
            status,
            code,
            message,
            request_id: header_request_id.or(body_request_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ims_error_body() {
        let e = ApiError::from_response(
            "list_members",
            404,
            Some("req-1".into()),
            br#"{"error":{"code":"IMG.0027","message":"image not found"}}"#,
        );
        assert_eq!(
            e.to_string(),
            "list_members: HTTP 404 IMG.0027: image not found (request id req-1)"
        );
        assert_eq!(e.reason(), Reason::NotFound);
    }

    #[test]
    fn gateway_error_body() {
        let e = ApiError::from_response("list_members", 401, None, br#"{"error_code":"APIGW.0301","error_msg":"Incorrect IAM authentication information","request_id":"abc"}"#);
        assert_eq!(e.reason(), Reason::Auth);
        assert_eq!(e.request_id(), Some("abc"));
        let t = ApiError::from_response(
            "list_members",
            429,
            None,
            br#"{"error_code":"APIGW.0308","error_msg":"throttled"}"#,
        );
        assert_eq!(t.reason(), Reason::Throttled);
    }

    #[test]
    fn huge_error_message_is_cut() {
        let body = format!(
            r#"{{"error_code":"APIGW.0101","error_msg":"{}"}}"#,
            "x".repeat(4 << 20)
        );
        let e = ApiError::from_response("list_members", 500, None, body.as_bytes());
        let text = e.to_string();
        assert!(text.len() < 1024, "{} bytes", text.len());
        assert!(text.ends_with('…'), "{text}");
        let html = "<p>".repeat(1 << 20);
        let e = ApiError::from_response("list_members", 502, None, html.as_bytes());
        assert!(e.to_string().len() < 1024);
    }

    #[test]
    fn api_gateway_throttling_code() {
        let e = ApiError::from_response(
            "list_members",
            403,
            None,
            br#"{"error_code":"APIG.0308","error_msg":"The throttling threshold has been reached"}"#,
        );
        assert_eq!(e.reason(), Reason::Throttled);
    }

    #[test]
    fn html_body_becomes_message() {
        let e = ApiError::from_response(
            "get_member",
            502,
            None,
            b"<html>\n<h1>Bad Gateway</h1></html>",
        );
        assert_eq!(e.reason(), Reason::Http5xx);
        assert!(e.to_string().contains("Bad Gateway"), "{e}");
    }
}
