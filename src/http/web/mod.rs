//! The web configuration file (`--web.config.file`, in the Prometheus exporter-toolkit
//! format), the HTTP server's own business as in exporter-toolkit's `web` package:
//! its schema and parsing with the key path in every error ([`file`]), the TLS
//! material ([`tls`]), the basic-auth users ([`basic_auth`]), and re-reading it, and the
//! files it names, when they change ([`watch`], [`reader`]), so that certificates rotate
//! without a restart. An invalid new version is logged and the previous one stays in
//! force.
//!
//! Supported keys: `tls_server_config` (`cert_file`/`cert`, `key_file`/`key`,
//! `client_auth_type`, `client_ca_file`/`client_ca`, `min_version`, `max_version`,
//! `cipher_suites`, `prefer_server_cipher_suites`, `curve_preferences`),
//! `http_server_config` (`headers`, `http2: false`) and `basic_auth_users`. Valid
//! toolkit keys this server cannot honour (`client_allowed_sans`, `rate_limit`,
//! `http2: true`, TLS 1.0/1.1, ciphers or curves rustls does not offer) are refused with
//! a message rather than silently ignored.

mod basic_auth;
mod error;
mod file;
mod reader;
mod tls;
mod watch;

pub use basic_auth::BasicAuth;
pub use file::{check, Settings};
pub use watch::Watcher;
