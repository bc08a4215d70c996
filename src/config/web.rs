//! The web configuration file (`--web.config.file`, in the Prometheus exporter-toolkit
//! format): parsing and validation with the key path in every error, loading the TLS
//! material and the basic-auth users, and re-reading it, and the files it names, when
//! they change, so that certificates rotate without a restart. An invalid new version
//! is logged and the previous one stays in force.
//!
//! Supported keys: `tls_server_config` (`cert_file`/`cert`, `key_file`/`key`,
//! `client_auth_type`, `client_ca_file`/`client_ca`, `min_version`, `max_version`,
//! `cipher_suites`, `prefer_server_cipher_suites`, `curve_preferences`),
//! `http_server_config` (`headers`, `http2: false`) and `basic_auth_users`. Valid
//! toolkit keys this server cannot honour (`client_allowed_sans`, `rate_limit`,
//! `http2: true`, TLS 1.0/1.1, ciphers or curves rustls does not offer) are refused with
//! a message rather than silently ignored.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, SupportedKxGroup, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite, SupportedProtocolVersion,
};
use serde::Deserialize;

use super::error::ConfigError;
use sha2::{Digest, Sha256};

/// Files named by the web config larger than this are refused (a PEM bundle is a few KiB).
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Successful basic-auth verifications remembered; beyond this the cache starts over.
const AUTH_CACHE_ENTRIES: usize = 1024;

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
struct TlsServerConfig {
    cert_file: Option<String>,
    key_file: Option<String>,
    cert: Option<String>,
    key: Option<PemSecret>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_ca: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
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

/// An inline private key: never shown by Debug, and a wrongly typed value is refused
/// without quoting it (serde's usual message would).
struct PemSecret(String);

impl fmt::Debug for PemSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for PemSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::String(s) => Ok(PemSecret(s)),
            _ => Err(serde::de::Error::custom("expected a PEM string")),
        }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

/// Reads the files a web config names, remembering what each looked like just before
/// it was read, so that a later change (even one racing the read) is noticed, and a
/// digest of everything read, so that a re-read of unchanged content is a no-op.
#[derive(Default)]
struct Reader {
    /// Path, its stamp before reading, and whether that stamp is too recent to trust.
    seen: Vec<(PathBuf, Option<Stamp>, bool)>,
    digest: Sha256,
}

/// What a cheap `stat` says about a file; a different stamp means "read it again".
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: (u64, u64, i64, i64),
}

/// File times are coarse (a few ms), so a file modified this recently may change
/// again without its stamp changing; such a file is re-read (and its content compared)
/// until its stamp is older than this, as git does for its index.
const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
    };
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        inode,
    })
}

impl Reader {
    fn read(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        let before = stamp(path);
        let racy = before
            .as_ref()
            .and_then(|s| s.modified)
            .is_none_or(|m| SystemTime::now().duration_since(m).unwrap_or_default() < RACY_WINDOW);
        self.seen.push((path.to_path_buf(), before, racy));
        self.digest.update(path.as_os_str().as_encoded_bytes());
        let result = read_capped(path);
        match &result {
            Ok(bytes) => {
                self.digest.update((bytes.len() as u64).to_be_bytes());
                self.digest.update(bytes);
            }
            Err(e) => self.digest.update(format!("error: {e}")),
        }
        result
    }

    fn unchanged(&self) -> bool {
        self.seen
            .iter()
            .all(|(path, seen, racy)| !racy && stamp(path) == *seen)
    }

    fn digest(&self) -> [u8; 32] {
        self.digest.clone().finalize().into()
    }
}

fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::files::read_capped(path, MAX_FILE_BYTES)
}

/// Builds errors that name the web config file.
struct Ctx<'a> {
    file: &'a str,
    dir: &'a Path,
}

impl Ctx<'_> {
    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }
    fn unsupported(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Unsupported {
            file: self.file.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }
    /// Relative paths are relative to the web config's directory, as in the toolkit.
    fn resolve(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

fn load(path: &Path, reader: &mut Reader) -> Result<Settings, ConfigError> {
    let file = path.display().to_string();
    let bytes = reader.read(path).map_err(|source| ConfigError::Read {
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

/// Empty strings mean "not set", as in the toolkit.
fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// PEM text from a file key or an inline key, exactly one of which must be set.
fn pem_source(
    ctx: &Ctx,
    reader: &mut Reader,
    file_key: &str,
    file: Option<String>,
    inline_key: &str,
    inline: Option<String>,
) -> Result<Option<(String, Vec<u8>)>, ConfigError> {
    match (non_empty(file), non_empty(inline)) {
        (Some(_), Some(_)) => Err(ctx.invalid(
            inline_key,
            format!("set either {inline_key} or {file_key}, not both"),
        )),
        (Some(name), None) => {
            let path = ctx.resolve(&name);
            let bytes = reader.read(&path).map_err(|e| {
                ctx.invalid(file_key, format!("cannot read {}: {e}", path.display()))
            })?;
            Ok(Some((file_key.to_string(), bytes)))
        }
        (None, Some(text)) => Ok(Some((inline_key.to_string(), text.into_bytes()))),
        (None, None) => Ok(None),
    }
}

fn certificates(
    ctx: &Ctx,
    key: &str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ctx.invalid(key, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(ctx.invalid(key, "no PEM CERTIFICATE block found"));
    }
    Ok(certs)
}

fn tls_version(
    ctx: &Ctx,
    key: &str,
    value: Option<String>,
    default: u8,
) -> Result<u8, ConfigError> {
    match non_empty(value).as_deref() {
        None => Ok(default),
        Some("TLS12") => Ok(2),
        Some("TLS13") => Ok(3),
        Some(v @ ("TLS10" | "TLS11")) => {
            Err(ctx.unsupported(key, format!("{v}: rustls speaks only TLS12 and TLS13")))
        }
        Some(v) => Err(ctx.invalid(
            key,
            format!("unknown TLS version {v:?} (expected TLS12 or TLS13)"),
        )),
    }
}

/// A Go cipher suite name → the rustls TLS 1.2 suite; `Ok(None)` for TLS 1.3 names,
/// which Go accepts and ignores (TLS 1.3 suites are not configurable there either).
fn cipher_suite(
    ctx: &Ctx,
    key: &str,
    name: &str,
) -> Result<Option<SupportedCipherSuite>, ConfigError> {
    use rustls::crypto::ring::cipher_suite as cs;
    Ok(Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => {
            return Ok(None)
        }
        n if n.starts_with("TLS_") && (n.contains("_CBC_") || n.contains("_RC4_")) => {
            return Err(ctx.unsupported(
                key,
                format!("{n}: rustls offers only AEAD suites with ECDHE (…_GCM_…, …_CHACHA20_POLY1305…)"),
            ))
        }
        n => return Err(ctx.invalid(key, format!("unknown cipher suite {n:?}"))),
    }))
}

fn curve(ctx: &Ctx, key: &str, name: &str) -> Result<&'static dyn SupportedKxGroup, ConfigError> {
    use rustls::crypto::ring::kx_group;
    match name {
        "CurveP256" => Ok(kx_group::SECP256R1),
        "CurveP384" => Ok(kx_group::SECP384R1),
        "X25519" => Ok(kx_group::X25519),
        "CurveP521" | "X25519MLKEM768" => Err(ctx.unsupported(
            key,
            format!("{name}: the ring provider offers CurveP256, CurveP384 and X25519"),
        )),
        n => Err(ctx.invalid(key, format!("unknown curve {n:?}"))),
    }
}

/// The `tls_server_config` block as a rustls server config: client certificate mode,
/// protocol versions, cipher suites and curves, certificate and key, client CAs.
fn tls_settings(
    raw: TlsServerConfig,
    ctx: &Ctx,
    reader: &mut Reader,
) -> Result<ServerConfig, ConfigError> {
    let k = |name: &str| format!("{TLS}.{name}");
    if raw
        .client_allowed_sans
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(ctx.unsupported(
            &k("client_allowed_sans"),
            "restrict clients with a client CA that signs only their certificates",
        ));
    }
    let client_auth = client_auth_mode(ctx, raw.client_auth_type)?;
    let versions = protocol_versions(ctx, raw.min_version, raw.max_version)?;
    let provider = crypto_provider(ctx, raw.cipher_suites, raw.curve_preferences)?;
    let cert_pem = pem_source(
        ctx,
        reader,
        &k("cert_file"),
        raw.cert_file,
        &k("cert"),
        raw.cert,
    )?
    .ok_or_else(|| ctx.invalid(&k("cert_file"), "is required (or cert)"))?;
    let key_pem = pem_source(
        ctx,
        reader,
        &k("key_file"),
        raw.key_file,
        &k("key"),
        raw.key.map(|s| s.0),
    )?
    .ok_or_else(|| ctx.invalid(&k("key_file"), "is required (or key)"))?;
    let ca_pem = pem_source(
        ctx,
        reader,
        &k("client_ca_file"),
        raw.client_ca_file,
        &k("client_ca"),
        raw.client_ca,
    )?;

    let certs = certificates(ctx, &cert_pem.0, &cert_pem.1)?;
    // The key's own parse errors are not quoted: they can contain bits of the key.
    let key = PrivateKeyDer::from_pem_slice(&key_pem.1).map_err(|_| {
        ctx.invalid(
            &key_pem.0,
            "no usable PEM private key (PKCS#8, PKCS#1 or SEC1) found",
        )
    })?;

    let roots = match &ca_pem {
        Some((key, pem)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ctx, key, pem)? {
                roots
                    .add(cert)
                    .map_err(|e| ctx.invalid(key, format!("unusable CA certificate: {e}")))?;
            }
            Some((key.clone(), Arc::new(roots)))
        }
        None => None,
    };
    let verifier = client_verifier(ctx, client_auth, roots, &provider)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| ctx.invalid(&k("cipher_suites"), format!("no usable TLS setup: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            ctx.invalid(
                &key_pem.0,
                format!("does not fit the certificate in {}: {e}", cert_pem.0),
            )
        })?;
    config.ignore_client_order = raw.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

const TLS: &str = "tls_server_config";

/// `client_auth_type`, as the toolkit names its modes.
fn client_auth_mode(ctx: &Ctx, value: Option<String>) -> Result<ClientAuth, ConfigError> {
    let k = |name: &str| format!("{TLS}.{name}");
    Ok(match non_empty(value).as_deref() {
        None | Some("NoClientCert") => ClientAuth::NoClientCert,
        Some("RequestClientCert") => ClientAuth::RequestClientCert,
        // The toolkit still accepts the old name.
        Some("RequireAnyClientCert" | "RequireClientCert") => ClientAuth::RequireAnyClientCert,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyClientCertIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::RequireAndVerifyClientCert,
        Some(other) => {
            return Err(ctx.invalid(
                &k("client_auth_type"),
                format!(
                    "unknown value {other:?} (expected NoClientCert, RequestClientCert, \
                     RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
                ),
            ))
        }
    })
}

/// `min_version` and `max_version` (TLS 1.2 and 1.3 only).
fn protocol_versions(
    ctx: &Ctx,
    min: Option<String>,
    max: Option<String>,
) -> Result<Vec<&'static SupportedProtocolVersion>, ConfigError> {
    let k = |name: &str| format!("{TLS}.{name}");
    let min = tls_version(ctx, &k("min_version"), min, 2)?;
    let max = tls_version(ctx, &k("max_version"), max, 3)?;
    if min > max {
        return Err(ctx.invalid(&k("min_version"), "is above max_version"));
    }
    Ok([(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, p)| p)
        .collect())
}

/// The ring provider with `cipher_suites` (TLS 1.2) and `curve_preferences` applied.
fn crypto_provider(
    ctx: &Ctx,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
) -> Result<Arc<CryptoProvider>, ConfigError> {
    let k = |name: &str| format!("{TLS}.{name}");
    let mut provider: CryptoProvider = rustls::crypto::ring::default_provider();
    if let Some(names) = cipher_suites.filter(|n| !n.is_empty()) {
        let key = k("cipher_suites");
        let mut suites = Vec::new();
        for name in &names {
            if let Some(s) = cipher_suite(ctx, &key, name)? {
                if !suites.contains(&s) {
                    suites.push(s);
                }
            }
        }
        // As in Go, the list governs TLS 1.2 only; TLS 1.3 keeps its own suites.
        suites.extend(
            provider
                .cipher_suites
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS13)
                .copied(),
        );
        provider.cipher_suites = suites;
    }
    if let Some(names) = curve_preferences.filter(|n| !n.is_empty()) {
        let key = k("curve_preferences");
        provider.kx_groups = names
            .iter()
            .map(|n| curve(ctx, &key, n))
            .collect::<Result<_, _>>()?;
    }
    Ok(Arc::new(provider))
}

/// How client certificates are checked, from the mode and the client CAs.
fn client_verifier(
    ctx: &Ctx,
    client_auth: ClientAuth,
    roots: Option<(String, Arc<RootCertStore>)>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, ConfigError> {
    let k = |name: &str| format!("{TLS}.{name}");
    let auth_key = k("client_auth_type");
    Ok(match (client_auth, roots) {
        (ClientAuth::NoClientCert, None) => WebPkiClientVerifier::no_client_auth(),
        (ClientAuth::NoClientCert, Some((key, _))) => {
            return Err(ctx.invalid(
                &key,
                "client CAs are set but client_auth_type is NoClientCert; \
                 set client_auth_type to RequireAndVerifyClientCert",
            ))
        }
        (ClientAuth::RequestClientCert, _) => Arc::new(AnyClientCert {
            mandatory: false,
            algorithms: provider.signature_verification_algorithms,
        }),
        (ClientAuth::RequireAnyClientCert, _) => Arc::new(AnyClientCert {
            mandatory: true,
            algorithms: provider.signature_verification_algorithms,
        }),
        (ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert, None) => {
            return Err(ctx.invalid(
                &auth_key,
                "verifying client certificates needs client_ca_file (or client_ca)",
            ))
        }
        (mode, Some((key, roots))) => {
            let builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            let builder = if mode == ClientAuth::VerifyClientCertIfGiven {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder
                .build()
                .map_err(|e| ctx.invalid(&key, format!("unusable client CAs: {e}")))?
        }
    })
}

/// `RequestClientCert` / `RequireAnyClientCert`: take any certificate without checking
/// who signed it (as Go does; the toolkit calls these modes insecure), but still check
/// that the client holds its key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------------------------
// Basic authentication.

/// The `basic_auth_users` of one web config version, with a cache of successful
/// verifications so that frequent scrapes do not pay for bcrypt every time.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// Verified (and the result ignored) for unknown users, so that an unknown user
    /// costs as much as a wrong password: the costliest configured hash.
    dummy: String,
    /// SHA-256 of user and password of verified credentials (never the password).
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    fn new(users: BTreeMap<String, String>, ctx: &Ctx) -> Result<BasicAuth, ConfigError> {
        let mut dummy: Option<(u32, &String)> = None;
        for (user, hash) in &users {
            let key = format!("basic_auth_users.{user}");
            if user.contains(':') {
                return Err(ctx.invalid(&key, "a user name cannot contain ':'"));
            }
            let parts: bcrypt::HashParts = hash
                .parse()
                .map_err(|e| ctx.invalid(&key, format!("not a bcrypt hash: {e}")))?;
            let cost = parts.get_cost();
            if !(4..=31).contains(&cost) {
                return Err(ctx.invalid(&key, format!("bcrypt cost {cost} is outside 4..=31")));
            }
            if dummy.is_none_or(|(c, _)| cost > c) {
                dummy = Some((cost, hash));
            }
        }
        let dummy = dummy.map(|(_, h)| h.clone()).unwrap_or_default();
        Ok(BasicAuth {
            users,
            dummy,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether the `Authorization` header carries a configured user and its password.
    /// Wrong users and wrong passwords take the same path: one bcrypt verification.
    pub async fn authorize(self: &Arc<Self>, header: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return false;
        };
        let digest = cache_key(&user, &password);
        if self.cache().contains(&digest) {
            return true;
        }
        let this = self.clone();
        // bcrypt is deliberately slow CPU work; keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || this.verify(&user, &password))
            .await
            .unwrap_or(false);
        if ok {
            let mut cache = self.cache();
            if cache.len() >= AUTH_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(digest);
        }
        ok
    }

    fn verify(&self, user: &[u8], password: &[u8]) -> bool {
        let hash = std::str::from_utf8(user)
            .ok()
            .and_then(|u| self.users.get(u));
        match hash {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, &self.dummy);
                false
            }
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // The set holds no invariant a panicking holder could break.
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn cache_key(user: &[u8], password: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((user.len() as u64).to_be_bytes());
    h.update(user);
    h.update(password);
    h.finalize().into()
}

/// User and password of a `Basic` `Authorization` header (split at the first ':').
fn basic_credentials(header: &HeaderValue) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = header.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

// ---------------------------------------------------------------------------------
// Watching for changes.

/// The live web config: the last valid version, re-read when the file or a file it
/// names changes. Whether TLS is on is fixed by the first valid version; a later one
/// that would switch it is refused (that needs a restart).
pub struct Watcher {
    path: PathBuf,
    current: ArcSwapOption<Settings>,
    tls_on: OnceLock<bool>,
    reader: Mutex<Reader>,
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("path", &self.path)
            .field("current", &self.current.load_full())
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// Loads `path`. If it is invalid (the daemon checks it at start, so only if it
    /// changed since), the error is logged and [`Watcher::current`] is `None` until a
    /// valid version appears: the server then refuses connections rather than serve
    /// without the TLS or authentication the operator asked for.
    pub fn new(path: &Path) -> Watcher {
        let watcher = Watcher {
            path: path.to_path_buf(),
            current: ArcSwapOption::empty(),
            tls_on: OnceLock::new(),
            reader: Mutex::new(Reader::default()),
        };
        watcher.reload(&mut watcher.lock_reader());
        watcher
    }

    /// The settings in force, if a valid version was ever loaded.
    pub fn current(&self) -> Option<Arc<Settings>> {
        self.current.load_full()
    }

    /// Re-reads the web config if it or a file it names changed (a cheap `stat` of each
    /// otherwise). Blocking file I/O: call it off the async workers.
    pub fn refresh(&self) {
        let mut reader = self.lock_reader();
        if !reader.unchanged() {
            self.reload(&mut reader);
        }
    }

    fn lock_reader(&self) -> std::sync::MutexGuard<'_, Reader> {
        // The reader is replaced whole on each load; a panicking holder breaks nothing.
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reload(&self, reader: &mut Reader) {
        let mut fresh = Reader::default();
        let result = load(&self.path, &mut fresh);
        let same = fresh.digest() == reader.digest();
        *reader = fresh;
        // Touched or re-checked but not changed: the outcome would be the same again.
        if same {
            return;
        }
        let file = self.path.display().to_string();
        let first = self.current.load().is_none();
        let settings = match result {
            Ok(s) => s,
            Err(e) => {
                if first {
                    tracing::error!(error = %e, "invalid web config; refusing connections until it is fixed");
                } else {
                    tracing::error!(error = %e, "invalid web config; the previous one stays in force");
                }
                return;
            }
        };
        let tls_on = *self.tls_on.get_or_init(|| settings.tls.is_some());
        if tls_on != settings.tls.is_some() {
            tracing::error!(
                file = %file,
                tls = tls_on,
                "the new web config switches TLS on or off, which needs a restart; the previous one stays in force"
            );
            return;
        }
        tracing::debug!(file = %file, settings = ?settings, "web config loaded");
        if !first {
            tracing::info!(file = %file, tls = tls_on, "web config reloaded");
        }
        self.current.store(Some(Arc::new(settings)));
    }
}

#[cfg(test)]
mod tests {
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

    #[tokio::test]
    async fn basic_auth_checks_user_and_password() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let ctx = Ctx {
            file: "f",
            dir: Path::new("."),
        };
        let auth =
            Arc::new(BasicAuth::new(BTreeMap::from([("alice".to_string(), hash)]), &ctx).unwrap());
        let header = |u: &str, p: &str| {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            HeaderValue::from_str(&format!("Basic {token}")).unwrap()
        };
        assert!(!auth.authorize(None).await);
        assert!(!auth.authorize(Some(&header("alice", "wrong"))).await);
        assert!(!auth.authorize(Some(&header("bob", "right"))).await);
        assert!(auth.authorize(Some(&header("alice", "right"))).await);
        // Now from the cache, which holds digests only.
        assert!(auth.authorize(Some(&header("alice", "right"))).await);
        assert_eq!(auth.cache().len(), 1);
        assert!(!auth.authorize(Some(&header("alice", "right2"))).await);
        assert!(
            !auth
                .authorize(Some(&HeaderValue::from_static("Bearer x")))
                .await
        );
    }
}
