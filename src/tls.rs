//! TLS set-up shared by every outbound client (IMS, IAM, ECS metadata): the crypto
//! provider and extra CA certificates. A leaf: imports nothing of the crate but files.

/// reqwest is built without a default TLS provider (ring builds fast and small), so
/// one must be installed before any client is built; this does it once.
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads PEM certificates to trust in addition to the system's.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = crate::files::read_capped(path, crate::files::MAX_SECRET_BYTES)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificates in it", path.display()));
    }
    Ok(certs)
}
