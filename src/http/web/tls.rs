//! The `tls_server_config` block as a rustls server config: client certificate mode,
//! protocol versions, cipher suites and curves, certificate and key, client CAs.

use std::fmt;
use std::sync::Arc;

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

use super::error::Ctx;
use super::reader::Reader;
use crate::files::{ConfigError, MAX_SECRET_BYTES};

const TLS: &str = "tls_server_config";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsServerConfig {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
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
            let bytes = reader.read(&path, MAX_SECRET_BYTES).map_err(|e| {
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
    let certs = crate::tls::pem_certificates(pem).map_err(|e| ctx.invalid(key, e))?;
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
pub(super) fn tls_settings(
    mut raw: TlsServerConfig,
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
    let client_auth = client_auth_mode(ctx, raw.client_auth_type.take())?;
    let versions = protocol_versions(ctx, raw.min_version.take(), raw.max_version.take())?;
    let provider = crypto_provider(ctx, raw.cipher_suites.take(), raw.curve_preferences.take())?;
    let pems = Pems::read(&mut raw, ctx, reader)?;
    let certs = certificates(ctx, &pems.cert.0, &pems.cert.1)?;
    // The key's own parse errors are not quoted: they can contain bits of the key.
    let key = PrivateKeyDer::from_pem_slice(&pems.key.1).map_err(|_| {
        ctx.invalid(
            &pems.key.0,
            "no usable PEM private key (PKCS#8, PKCS#1 or SEC1) found",
        )
    })?;
    let roots = client_roots(ctx, pems.ca.as_ref())?;
    let verifier = client_verifier(ctx, client_auth, roots, &provider)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| ctx.invalid(&k("cipher_suites"), format!("no usable TLS setup: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            ctx.invalid(
                &pems.key.0,
                format!("does not fit the certificate in {}: {e}", pems.cert.0),
            )
        })?;
    config.ignore_client_order = raw.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The PEM material of a `tls_server_config`, each as (the key it came from, bytes).
struct Pems {
    cert: (String, Vec<u8>),
    key: (String, Vec<u8>),
    ca: Option<(String, Vec<u8>)>,
}

impl Pems {
    /// Certificate and key (required) and client CAs, each from a file or inline.
    fn read(
        raw: &mut TlsServerConfig,
        ctx: &Ctx,
        reader: &mut Reader,
    ) -> Result<Pems, ConfigError> {
        let k = |name: &str| format!("{TLS}.{name}");
        let mut source = |file: &str, path: Option<String>, inline: &str, text: Option<String>| {
            pem_source(ctx, reader, &k(file), path, &k(inline), text)
        };
        let cert = source("cert_file", raw.cert_file.take(), "cert", raw.cert.take())?
            .ok_or_else(|| ctx.invalid(&k("cert_file"), "is required (or cert)"))?;
        let key = source(
            "key_file",
            raw.key_file.take(),
            "key",
            raw.key.take().map(|s| s.0),
        )?
        .ok_or_else(|| ctx.invalid(&k("key_file"), "is required (or key)"))?;
        let ca = source(
            "client_ca_file",
            raw.client_ca_file.take(),
            "client_ca",
            raw.client_ca.take(),
        )?;
        Ok(Pems { cert, key, ca })
    }
}

/// The client CAs as a root store, with the key they came from.
fn client_roots(
    ctx: &Ctx,
    ca: Option<&(String, Vec<u8>)>,
) -> Result<Option<(String, Arc<RootCertStore>)>, ConfigError> {
    let Some((key, pem)) = ca else {
        return Ok(None);
    };
    let mut roots = RootCertStore::empty();
    for cert in certificates(ctx, key, pem)? {
        roots
            .add(cert)
            .map_err(|e| ctx.invalid(key, format!("unusable CA certificate: {e}")))?;
    }
    Ok(Some((key.clone(), Arc::new(roots))))
}

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

/// Empty strings mean "not set", as in the toolkit.
fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}
