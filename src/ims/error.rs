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
    #[error("{operation}: cannot sign request: {message}")]
    Signing {
        operation: &'static str,
        message: String,
    },
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
}

impl Reason {
    /// Every reason, so that counters can start at 0 (then `increase()` sees the first).
    pub const ALL: [Reason; 10] = [
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
                if *status == 429 || code == "APIGW.0308" {
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
            ApiError::TooLarge { .. } => Reason::TooLarge,
            ApiError::Paging { .. } => Reason::Paging,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            ApiError::Http { request_id, .. }
            | ApiError::Decode { request_id, .. }
            | ApiError::TooLarge { request_id, .. } => request_id.as_deref(),
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
        if message.is_none() && !body.is_empty() {
            // Not JSON (an HTML error page from a proxy, say): keep a short, printable excerpt.
            let text: String = String::from_utf8_lossy(body)
                .chars()
                .filter(|c| !c.is_control())
                .take(120)
                .collect();
            message = Some(text);
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
