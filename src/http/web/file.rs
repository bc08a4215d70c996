//! The web config file as written (its schema), parsed and validated into the
//! [`Settings`] a server runs with, every error naming the key at fault.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use rustls::ServerConfig;
use serde::Deserialize;

use super::basic_auth::BasicAuth;
use super::error::Ctx;
use super::reader::Reader;
use super::tls::{tls_settings, TlsServerConfig};
use crate::files::{ConfigError, MAX_CONFIG_BYTES};

/// Validates the web config at `path` as the server would load it (YAML, keys, TLS
/// material, password hashes), for start-up and `--config.check`.
pub fn check(path: &Path) -> Result<(), ConfigError> {
    load(path, &mut Reader::default()).map(|_| ())
}

// ---------------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    tls_server_config: Option<TlsServerConfig>,
    http_server_config: Option<HttpServerConfig>,
    basic_auth_users: Option<Users>,
    rate_limit: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServerConfig {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// `basic_auth_users`: user → bcrypt hash. Debug shows the users only.
#[derive(Default, Deserialize)]
#[serde(transparent)]
struct Users(BTreeMap<String, String>);

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

// ---------------------------------------------------------------------------------
// The validated settings, ready to serve with.

/// One loaded version of the web config.
pub struct Settings {
    tls: Option<Arc<ServerConfig>>,
    auth: Option<Arc<BasicAuth>>,
    headers: HeaderMap,
}

impl Settings {
    /// The TLS server config, if TLS is on.
    pub fn tls(&self) -> Option<Arc<ServerConfig>> {
        self.tls.clone()
    }
    /// Basic authentication, if any users are configured.
    pub fn auth(&self) -> Option<&Arc<BasicAuth>> {
        self.auth.as_ref()
    }
    /// Headers added to every response.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

pub(super) fn load(path: &Path, reader: &mut Reader) -> Result<Settings, ConfigError> {
    let file = path.display().to_string();
    let bytes = reader
        .read(path, MAX_CONFIG_BYTES)
        .map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let ctx = Ctx { file: &file, dir };
    let text = String::from_utf8(bytes).map_err(|_| ConfigError::Parse {
        file: file.clone(),
        message: "not UTF-8 text".into(),
    })?;
    let raw = parse(&text, &ctx)?;
    if raw.rate_limit.is_some() {
        return Err(ctx.unsupported(
            "rate_limit",
            "use --web.max-requests to cap concurrent requests",
        ));
    }
    let headers = match raw.http_server_config {
        Some(http) => http_settings(http, &ctx)?,
        None => HeaderMap::new(),
    };
    let auth = match raw.basic_auth_users {
        Some(users) if !users.0.is_empty() => Some(Arc::new(BasicAuth::new(users.0, &ctx)?)),
        _ => None,
    };
    let tls = match raw.tls_server_config {
        Some(tls) => Some(Arc::new(tls_settings(tls, &ctx, reader)?)),
        None => None,
    };
    Ok(Settings { tls, auth, headers })
}

fn parse(text: &str, ctx: &Ctx) -> Result<WebConfigFile, ConfigError> {
    if text.trim().is_empty() {
        return Ok(WebConfigFile::default());
    }
    let de = serde_yaml::Deserializer::from_str(text);
    let raw: Option<WebConfigFile> = serde_path_to_error::deserialize(de).map_err(|e| {
        // The path names an unknown key itself, not just its parent.
        let key = e.path().to_string();
        let message = e.into_inner().to_string();
        // The YAML library prefixes nested errors with the parent's path; ours is better.
        let message = match message.split_once(": ") {
            Some((prefix, rest)) if !prefix.contains(' ') && key.starts_with(prefix) => {
                rest.to_string()
            }
            _ => message,
        };
        if key == "." {
            ConfigError::Parse {
                file: ctx.file.to_string(),
                message,
            }
        } else {
            ctx.invalid(&key, message)
        }
    })?;
    Ok(raw.unwrap_or_default())
}

fn http_settings(http: HttpServerConfig, ctx: &Ctx) -> Result<HeaderMap, ConfigError> {
    if http.http2 == Some(true) {
        return Err(ctx.unsupported(
            "http_server_config.http2",
            "only HTTP/1.1 is served; remove the key or set it to false",
        ));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in http.headers.unwrap_or_default() {
        let key = format!("http_server_config.headers.{name}");
        let lower = name.to_ascii_lowercase();
        let allowed: Option<&[&str]> = match lower.as_str() {
            "content-security-policy" | "x-xss-protection" | "strict-transport-security" => {
                Some(&[])
            }
            "x-frame-options" => Some(&["deny", "sameorigin"]),
            "x-content-type-options" => Some(&["nosniff"]),
            _ => None,
        };
        let Some(allowed) = allowed else {
            return Err(ctx.invalid(
                &key,
                "this header cannot be configured (allowed: Content-Security-Policy, \
                 X-Frame-Options, X-Content-Type-Options, X-XSS-Protection, \
                 Strict-Transport-Security)",
            ));
        };
        // Blank means unset, as in the toolkit.
        if value.trim().is_empty() {
            continue;
        }
        if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(&value)) {
            return Err(ctx.invalid(
                &key,
                format!("{value:?} is not one of {}", allowed.join(", ")),
            ));
        }
        let header_value = HeaderValue::from_str(&value)
            .map_err(|_| ctx.invalid(&key, "not a valid header value"))?;
        let header_name = HeaderName::from_bytes(lower.as_bytes())
            .map_err(|_| ctx.invalid(&key, "not a valid header name"))?;
        headers.insert(header_name, header_value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::watch::Watcher;
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn err(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "web.yml", text);
        check(&p).unwrap_err().to_string()
    }

    #[test]
    fn empty_file_means_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "web.yml", "# nothing\n");
        let s = load(&p, &mut Reader::default()).unwrap();
        assert!(s.tls.is_none() && s.auth.is_none() && s.headers.is_empty());
    }

    #[test]
    fn unknown_keys_name_the_key_path() {
        assert!(
            err("bogus: 1\n").contains(": bogus: unknown field"),
            "{}",
            err("bogus: 1\n")
        );
        let e = err("tls_server_config:\n  cert_file: a\n  certfile: b\n");
        assert!(
            e.contains("tls_server_config.certfile: unknown field"),
            "{e}"
        );
        let e = err("http_server_config:\n  headers:\n    X-Foo: bar\n");
        assert!(e.contains("http_server_config.headers.X-Foo"), "{e}");
    }

    #[test]
    fn unsupported_keys_are_refused_with_a_reason() {
        let e = err("rate_limit:\n  interval: 1s\n  burst: 2\n");
        assert!(e.contains("rate_limit: not supported"), "{e}");
        let e = err("http_server_config:\n  http2: true\n");
        assert!(e.contains("http_server_config.http2: not supported"), "{e}");
        let e = err("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n");
        assert!(
            e.contains("tls_server_config.min_version: not supported"),
            "{e}"
        );
        let e = err("tls_server_config:\n  client_allowed_sans: [a]\n");
        assert!(e.contains("client_allowed_sans: not supported"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e =
            err("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Maybe\n");
        assert!(
            e.contains("tls_server_config.client_auth_type: unknown value"),
            "{e}"
        );
        let e = err("basic_auth_users:\n  alice: notahash\n");
        assert!(
            e.contains("basic_auth_users.alice: not a bcrypt hash"),
            "{e}"
        );
        let e = err("tls_server_config:\n  cert_file: /nonexistent/c.pem\n  key_file: b\n");
        assert!(
            e.contains("tls_server_config.cert_file: cannot read"),
            "{e}"
        );
        let e = err("http_server_config:\n  headers:\n    X-Frame-Options: allow\n");
        assert!(e.contains("X-Frame-Options"), "{e}");
    }

    #[test]
    fn an_inline_key_is_never_quoted() {
        let e = err("tls_server_config:\n  cert: x\n  key: 1234567\n");
        assert!(!e.contains("1234567"), "{e}");
        let e = err(
            "tls_server_config:\n  cert: |\n    -----BEGIN CERTIFICATE-----\n    MIIB\n    -----END CERTIFICATE-----\n  key: |\n    -----BEGIN PRIVATE KEY-----\n    SECRETKEYBYTES\n    -----END PRIVATE KEY-----\n",
        );
        assert!(!e.contains("SECRETKEYBYTES"), "{e}");
    }

    #[test]
    fn debug_shows_no_hashes() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "web.yml",
            &format!("basic_auth_users:\n  alice: '{hash}'\n"),
        );
        let s = load(&p, &mut Reader::default()).unwrap();
        let text = format!("{s:?} {:?}", Watcher::new(&p));
        assert!(text.contains("alice") && !text.contains(&hash), "{text}");
        let ctx = Ctx {
            file: "f",
            dir: Path::new("."),
        };
        let raw = parse(
            &format!(
                "basic_auth_users:\n  alice: '{hash}'\ntls_server_config:\n  key: SECRETKEYBYTES\n"
            ),
            &ctx,
        )
        .unwrap();
        let text = format!("{raw:?}");
        assert!(
            !text.contains("SECRETKEYBYTES") && !text.contains(&hash),
            "{text}"
        );
    }
}
