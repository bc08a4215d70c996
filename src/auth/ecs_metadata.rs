//! Temporary credentials from the ECS/CCE metadata service (an agency bound to the
//! server): `PUT /meta-data/latest/api/token` for the optional session token, then
//! `GET /openstack/latest/securitykey`. The base URL is configurable so that tests
//! can use a loopback fake.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::auth::credentials::{Credentials, Secret};
use crate::timestamp::parse_timestamp;

pub const DEFAULT_URL: &str = "http://169.254.169.254";
const TOKEN_TTL_SECONDS: &str = "21600";

#[derive(Debug, Clone)]
pub struct EcsMetadata {
    base: Url,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct SecurityKey {
    credential: Credential,
}

#[derive(Deserialize)]
struct Credential {
    access: String,
    secret: String,
    securitytoken: String,
    expires_at: String,
}

impl EcsMetadata {
    pub fn new(base: Url, timeout: Duration) -> Result<Self, String> {
        crate::tls::ensure_crypto_provider();
        // The metadata service is link-local plain HTTP: never through a proxy.
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            // It answers from the instance itself; a redirect would carry the session
            // token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(EcsMetadata { base, http })
    }

    pub fn base_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// Fetches temporary credentials and their expiry (Unix seconds).
    pub async fn fetch(&self) -> Result<(Credentials, f64), String> {
        // The session token is optional: older metadata services have no such API.
        let token = match self
            .http
            .put(self.url("/meta-data/latest/api/token"))
            .header("X-Metadata-Token-Ttl-Seconds", TOKEN_TTL_SECONDS)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r
                .text()
                .await
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
            _ => None,
        };
        let mut req = self.http.get(self.url("/openstack/latest/securitykey"));
        if let Some(t) = &token {
            req = req.header("X-Metadata-Token", t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("metadata service {}: {e}", self.base_url()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("metadata service {}: HTTP {status} for the security key (is an agency bound to this server?)", self.base_url()));
        }
        let body: SecurityKey = resp.json().await.map_err(|e| {
            format!(
                "metadata service {}: unexpected security key response: {e}",
                self.base_url()
            )
        })?;
        let c = body.credential;
        let expires_at = parse_timestamp(&c.expires_at).ok_or_else(|| {
            format!(
                "metadata service {}: expires_at {:?} is not a time",
                self.base_url(),
                c.expires_at
            )
        })?;
        Ok((
            Credentials {
                access_key_id: c.access,
                secret_access_key: Secret::new(c.secret),
                security_token: Some(Secret::new(c.securitytoken)),
            },
            expires_at,
        ))
    }
}
