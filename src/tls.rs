//! Set-up shared by every outbound client (IMS, IAM, ECS metadata, SMN): the crypto
//! provider, extra CA certificates, the rustls configuration of direct API connections
//! and the `User-Agent`. A leaf: imports nothing of the crate but files.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// Every outbound request's `User-Agent`.
pub const USER_AGENT: &str = concat!("ims-exporter/", env!("CARGO_PKG_VERSION"));

/// reqwest is built without a default TLS provider (ring builds fast and small), so
/// one must be installed before any client is built; this does it once.
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificates of a PEM text (none when it holds no CERTIFICATE block).
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))
}

/// Reads PEM certificates to trust in addition to the system's.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = crate::files::read_capped(path, crate::files::MAX_SECRET_BYTES)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = pem_certificates(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificates in it", path.display()));
    }
    Ok(certs)
}

/// The same certificates for reqwest.
pub fn reqwest_certificates(certs: &[CertificateDer<'static>]) -> Vec<reqwest::Certificate> {
    certs
        .iter()
        .filter_map(|c| reqwest::Certificate::from_der(c).ok())
        .collect()
}

/// What reqwest configures: the platform's verifier (the system's roots) with
/// `extra_roots` beside them, or no verification at all when `insecure`; HTTP/1.1.
pub fn client_config(
    extra_roots: Vec<CertificateDer<'static>>,
    insecure: bool,
) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = if insecure {
        Arc::new(NoVerifier(provider))
    } else if extra_roots.is_empty() {
        Arc::new(
            rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| format!("system certificates: {e}"))?,
        )
    } else {
        Arc::new(
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider)
                .map_err(|e| format!("ca_file certificates: {e}"))?,
        )
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `insecure_skip_verify`: any certificate is accepted (the handshake's signatures
/// are still checked, so the connection is at least to the key it presented).
#[derive(Debug)]
struct NoVerifier(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
