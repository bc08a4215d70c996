//! SMN HTTP(S) subscriptions ([`SmnMessage`] is [`super::message`]'s): the hosts its URLs may name, signature checks (the PEM certificate at
//! `signing_cert_url`, fetched over HTTPS and cached, then RSA PKCS#1 v1.5 with
//! SHA-256), and subscription confirmation (a GET of `subscribe_url`). Every URL is
//! checked before anything is fetched; every answer read is size-capped; no redirect
//! is followed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use reqwest::Url;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::message::{SmnKind, SmnMessage};

/// Longest certificate file read (a PEM certificate is a few KiB).
const MAX_CERT_BYTES: usize = 64 * 1024;
/// Certificates remembered; beyond this the cache starts over (SMN has one per region).
const MAX_CACHED_CERTS: usize = 16;

/// Why an SMN message was not trusted or not confirmed. The messages never quote the
/// message's own URLs or values.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SmnError {
    #[error("the topic is not in events.webhook.smn_topics")]
    TopicNotAllowed,
    #[error("the {0} is not a valid https URL")]
    NotHttps(&'static str),
    #[error(
        "the {0} names a host that is not allowed (smn.<region>.myhuaweicloud.com of a \
         configured target's region, or one of events.webhook.smn_hosts)"
    )]
    HostNotAllowed(&'static str),
    #[error("the message is not signed (signature and signing_cert_url are required)")]
    Unsigned,
    #[error("signature_version must be v1")]
    SignatureVersion,
    #[error("the signature is not base64")]
    SignatureEncoding,
    #[error("could not fetch the {what}: {reason}")]
    Fetch { what: &'static str, reason: String },
    #[error("the signing certificate is unusable: {0}")]
    Certificate(String),
    #[error("the signature does not verify")]
    BadSignature,
}

impl SmnError {
    /// Whether the message itself is refused (not trusted), rather than our GET of a
    /// trusted URL having failed.
    pub(crate) fn is_refusal(&self) -> bool {
        !matches!(
            self,
            SmnError::Fetch {
                what: "subscribe_url",
                ..
            }
        )
    }
}

/// The hosts SMN URLs may name: `smn.{region}.myhuaweicloud.com` of the configured
/// regions (port 443) and the configured `smn_hosts` (`host` for port 443, or
/// `host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hosts(Vec<(String, u16)>);

impl Hosts {
    pub(crate) fn new<'a>(regions: impl IntoIterator<Item = &'a str>, extra: &[String]) -> Hosts {
        let mut hosts: Vec<(String, u16)> = regions
            .into_iter()
            .map(|r| {
                (
                    format!("smn.{}.myhuaweicloud.com", r.to_ascii_lowercase()),
                    443,
                )
            })
            .collect();
        hosts.extend(
            extra
                .iter()
                .filter_map(|h| split_host_port(&h.to_ascii_lowercase())),
        );
        hosts.sort();
        hosts.dedup();
        Hosts(hosts)
    }

    /// `raw` as a URL, if it is https, without user info, on an allowed host.
    pub(crate) fn check(&self, raw: &str, field: &'static str) -> Result<Url, SmnError> {
        let url = Url::parse(raw).map_err(|_| SmnError::NotHttps(field))?;
        if url.scheme() != "https" || !url.username().is_empty() || url.password().is_some() {
            return Err(SmnError::NotHttps(field));
        }
        let host = url.host_str().ok_or(SmnError::NotHttps(field))?;
        let port = url.port_or_known_default().unwrap_or(443);
        if self.0.iter().any(|(h, p)| h == host && *p == port) {
            Ok(url)
        } else {
            Err(SmnError::HostNotAllowed(field))
        }
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults to 443.
fn split_host_port(entry: &str) -> Option<(String, u16)> {
    if let Some(rest) = entry.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 443,
            None => return None,
        };
        return Some((format!("[{v6}]"), port));
    }
    match entry.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((entry.to_string(), 443)),
    }
}

/// Certificates fetched, by URL (DER).
#[derive(Debug, Default)]
pub(crate) struct CertCache(Mutex<HashMap<String, Arc<CertificateDer<'static>>>>);

impl CertCache {
    fn get(&self, url: &str) -> Option<Arc<CertificateDer<'static>>> {
        self.lock().get(url).cloned()
    }

    fn put(&self, url: String, cert: Arc<CertificateDer<'static>>) {
        let mut map = self.lock();
        if map.len() >= MAX_CACHED_CERTS {
            map.clear();
        }
        map.insert(url, cert);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CertificateDer<'static>>>> {
        // A map of parsed certificates: no invariant a panicking holder could break.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What SMN messages are checked against, and the client that fetches for them.
pub(crate) struct Smn {
    topics: Vec<String>,
    pub(crate) hosts: Hosts,
    verify: bool,
    http: Result<reqwest::Client, String>,
    pub(crate) certs: Arc<CertCache>,
}

impl Smn {
    pub(crate) fn new(
        topics: Vec<String>,
        hosts: Hosts,
        verify: bool,
        ca_file: Option<&Path>,
        timeout: Duration,
        certs: Arc<CertCache>,
    ) -> Smn {
        Smn {
            topics,
            hosts,
            verify,
            http: client(ca_file, timeout),
            certs,
        }
    }

    /// Whether the message may be acted on: its topic listed (when topics are), and
    /// its signature valid (when verification is on).
    pub(crate) async fn trust(&self, m: &SmnMessage) -> Result<(), SmnError> {
        let listed = self.topics.contains(&m.topic_urn);
        if !listed && (!self.topics.is_empty() || m.kind == SmnKind::SubscriptionConfirmation) {
            return Err(SmnError::TopicNotAllowed);
        }
        if self.verify {
            self.verify_signature(m).await?;
        }
        Ok(())
    }

    async fn verify_signature(&self, m: &SmnMessage) -> Result<(), SmnError> {
        let (Some(signature), Some(cert_url)) = (&m.signature, &m.signing_cert_url) else {
            return Err(SmnError::Unsigned);
        };
        if m.signature_version.as_deref().is_some_and(|v| v != "v1") {
            return Err(SmnError::SignatureVersion);
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| SmnError::SignatureEncoding)?;
        // The URL is checked before the signature is even looked at further, so that
        // no message makes us fetch from a host we do not trust.
        let url = self.hosts.check(cert_url, "signing_cert_url")?;
        let cert = self.certificate(url).await?;
        verify(&cert, m.canonical().as_bytes(), &signature)
    }

    /// The certificate at `url`, from the cache or fetched.
    async fn certificate(&self, url: Url) -> Result<Arc<CertificateDer<'static>>, SmnError> {
        let key = url.to_string();
        if let Some(cert) = self.certs.get(&key) {
            return Ok(cert);
        }
        let what = "signing certificate";
        let pem = self.get(url, what, MAX_CERT_BYTES).await?;
        let der = CertificateDer::from_pem_slice(&pem)
            .map_err(|_| SmnError::Certificate("not a PEM certificate".into()))?;
        webpki::EndEntityCert::try_from(&der)
            .map_err(|e| SmnError::Certificate(format!("not an X.509 certificate: {e}")))?;
        let cert = Arc::new(der);
        self.certs.put(key, cert.clone());
        Ok(cert)
    }

    /// Confirms a subscription: a GET of its `subscribe_url`, once the topic is listed
    /// and the URL's host allowed.
    pub(crate) async fn confirm(&self, m: &SmnMessage) -> Result<(), SmnError> {
        if !self.topics.contains(&m.topic_urn) {
            return Err(SmnError::TopicNotAllowed);
        }
        let raw = m.subscribe_url.as_deref().unwrap_or("");
        let url = self.hosts.check(raw, "subscribe_url")?;
        self.get(url, "subscribe_url", MAX_CERT_BYTES)
            .await
            .map(|_| ())
    }

    /// A GET answered 2xx, its body read up to `cap` bytes.
    async fn get(&self, url: Url, what: &'static str, cap: usize) -> Result<Vec<u8>, SmnError> {
        let fail = |reason: String| SmnError::Fetch { what, reason };
        let http = self.http.as_ref().map_err(|e| fail(e.clone()))?;
        let mut response = http.get(url).send().await.map_err(|e| fail(reason(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(fail(format!("HTTP {}", status.as_u16())));
        }
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(fail(format!("more than {cap} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(reason(&e)))? {
            if body.len() + chunk.len() > cap {
                return Err(fail(format!("more than {cap} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Checks `signature` over `message` with the certificate's RSA key (PKCS#1 v1.5,
/// SHA-256). A public-key operation of well under a millisecond: fine on a worker.
pub(crate) fn verify(
    cert: &CertificateDer<'_>,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SmnError> {
    let cert = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| SmnError::Certificate(format!("not an X.509 certificate: {e}")))?;
    cert.verify_signature(webpki::ring::RSA_PKCS1_2048_8192_SHA256, message, signature)
        .map_err(|_| SmnError::BadSignature)
}

/// A failed request in a few words (reqwest's own message names the URL).
fn reason(e: &reqwest::Error) -> String {
    // The URL is the message's; its error's own text is not logged.
    tracing::debug!(
        timeout = e.is_timeout(),
        connect = e.is_connect(),
        "SMN fetch failed"
    );
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else if e.is_redirect() {
        "redirected (not followed)".into()
    } else {
        "request failed".into()
    }
}

/// The client for certificates and confirmations: HTTPS only, no redirects, the
/// config's timeout and extra CA certificates (never `insecure_skip_verify`: the
/// certificate's origin is what a signature is worth).
fn client(ca_file: Option<&Path>, timeout: Duration) -> Result<reqwest::Client, String> {
    crate::tls::ensure_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(crate::tls::USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .https_only(true);
    if let Some(path) = ca_file {
        let certs = crate::tls::read_ca_file(path)?;
        builder = builder.tls_certs_merge(crate::tls::reqwest_certificates(&certs));
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::errors::BodyError;

    fn message(kind: SmnKind) -> SmnMessage {
        SmnMessage {
            kind,
            topic_urn: "urn:smn:cn-north-4:0123:ims-events".into(),
            message_id: "a1b2".into(),
            message: "{\"trace_id\":\"t\"}".into(),
            timestamp: "2024-07-10T09:43:44Z".into(),
            subject: None,
            subscribe_url: None,
            signature: None,
            signature_version: None,
            signing_cert_url: None,
        }
    }

    #[test]
    fn the_canonical_string_lists_the_fields_in_order() {
        let mut n = message(SmnKind::Notification);
        assert_eq!(
            n.canonical(),
            "message\n{\"trace_id\":\"t\"}\nmessage_id\na1b2\ntimestamp\n2024-07-10T09:43:44Z\n\
             topic_urn\nurn:smn:cn-north-4:0123:ims-events\ntype\nNotification\n"
        );
        n.subject = Some("IMS".into());
        assert!(n
            .canonical()
            .contains("message_id\na1b2\nsubject\nIMS\ntimestamp\n"));
        let mut c = message(SmnKind::SubscriptionConfirmation);
        c.subject = Some("ignored".into());
        c.subscribe_url = Some("https://smn.cn-north-4.myhuaweicloud.com/c?x=1".into());
        assert_eq!(
            c.canonical(),
            "message\n{\"trace_id\":\"t\"}\nmessage_id\na1b2\n\
             subscribe_url\nhttps://smn.cn-north-4.myhuaweicloud.com/c?x=1\n\
             timestamp\n2024-07-10T09:43:44Z\ntopic_urn\nurn:smn:cn-north-4:0123:ims-events\n\
             type\nSubscriptionConfirmation\n"
        );
        let mut u = c.clone();
        u.kind = SmnKind::UnsubscribeConfirmation;
        assert!(u.canonical().ends_with("type\nUnsubscribeConfirmation\n"));
    }

    #[test]
    fn confirmations_need_a_subscribe_url() {
        let c = message(SmnKind::SubscriptionConfirmation);
        assert!(matches!(
            c.check_fields(),
            Err(BodyError::SmnMissing(_, "subscribe_url"))
        ));
        assert!(message(SmnKind::Notification).check_fields().is_ok());
    }

    #[test]
    fn the_region_comes_from_the_topic() {
        let mut m = message(SmnKind::Notification);
        assert_eq!(m.region().as_deref(), Some("cn-north-4"));
        m.topic_urn = "urn:smn:BAD REGION:p:t".into();
        assert_eq!(m.region(), None);
        m.topic_urn = "arn:aws:sns:x".into();
        assert_eq!(m.region(), None);
    }

    #[test]
    fn a_signature_verifies_with_the_certificate_of_its_key_only() {
        use rcgen::{CertificateParams, KeyPair, SigningKey};
        // The test-only key of tests/data/webhook (inline: the container build compiles
        // src/ without tests/).
        const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQDNHcjORv0FN+cD
yr2+/kZdgPqFw2kOhnD6abrDK6hhOYsnQ/f13vlvz4zDBwdC9L7AJKXoA84LyRkn
3YrZpOZZrP8j4qE5tu2W6CwcASOTMP7J7m9RWBcuznlVqFC5Km28NV3Xp4aYRS3j
VUN2Rn2xWJfDFiY5Fu/7wVwNaXjG9GbHNwyWEwVCnMmQakBGEoiR4kQ5lNty6J8g
isiYIZxmHSvKiaN9W955KE1TXeup2UFk6tL8Vll+D7sB4Hwe6uQE2BzxigSglNnb
O5+rI1vGJcL1g/s4WxRrKahebx+L/extgf3os/Iq+Py1n1IMIjN7OkhVnNJwyYHR
k6ZOXrnjAgMBAAECggEAHj1Js+4vnNvWJoR2vy13No9udQGklNwe1C7PNmPS0evt
BxppotQUZmFXtA7us/Z8wrtZwYqsufxpRYEkrcaLoTqJw4LErctkBpnu8Cf+KdPm
KY4J15kK6JR5uzZHxFdW0JGg5qC6N+uxrVtjc+Xw35BF5iB3UnZTu1lmgUxZ3na5
CJNy4hHu1msbYAMBTV3wglFqJgkTdkjNlDALLSpZb8NYMfJt+ROrBk2B3gvKi+0G
wfoRwjo4Vg4vc+1iTtMcuiZWjdEoAWGeK73Cy8fmXCIoL3X6B+Q6I/eVAgSmGM8j
t0a3UlGf25VoQInjB1r5LVd7OlAtFU4Tv/pst42PTQKBgQDrTzhdDPFFmA8YAjoB
wbVhA5c48Idk5niKegrnpHyBYoyPk2cLQHTfCgVjIX+Z0eZbY9s5UM4s0glx7Zzd
TxmQAK0DsGDQwdOFc40LHCWboXPcYgpGdfkQ6k0hK7pm8hujogvap22TmngLMQQe
KzFC6p4P/PxvNbdwYlboRdDQBQKBgQDfJuwGVgoGIuQX/GAR7FmSbxQVWuwwRqqz
ySBmSG51j6DqSpfYlnNgF6MLhVyq+Ys4GPcE3FDpNdNGqR5deviDsFwY/WjVQ+Db
y2SEwKlf7TdciH4xZmdrA4Hhq6JMhUXI946aq+sXI5N0isxYtwdiqDxuR6QFM4qd
WYGEMFXOxwKBgQCrsXsT0hy9xezFfOJsY7X/moodvstb4Rp1GAWa7Zb3JTwgitI2
EIr2Ly6tHUUorFIjvuG3mXFGnN7NZS3/APdK7mNPfMO3rqWzCxQP1jLOsuiCFnse
3HemUv+CQ5DYCrIGHHf/zAiVGbGboOE7ThK8m8pHKjXaw1wcwXReOIrbLQKBgQCS
D1fNjeNhwNSrHnWDRcAbKLlsgOa3comow6yBRkeGi0w4Djr1eQRrkQ0XLWNKRavq
O+zzMYGEI8b2KRvG9AZVq8mcUcGcVaGIO8i/W5uBPjNOTcjLbMukL9eDbmP80f6r
W93rPzvRGWgaj/7Q0nvzB0sGo72n6eSAuWUcsMZ5YQKBgQChUkJfZi1BbPWh4VAg
3iCfeCTwu8EQG+mQU2zq5jZIdp5f/tej9sdjsjB7vOzBJbg4w0jjwOlj0SS9NNB/
5TACZHVpJkFCiFTXPGlCnnFU0U5MhxfVBCI9eWFckA8Twzso1sGRdRYcXLNLlCdA
G31t9SwD8VAxQ7WYjrpb04W+4w==
-----END PRIVATE KEY-----";
        let key = KeyPair::from_pkcs8_pem_and_sign_algo(TEST_KEY, &rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = CertificateDer::from_pem_slice(cert.pem().as_bytes()).unwrap();
        let m = message(SmnKind::Notification);
        let signature = key.sign(m.canonical().as_bytes()).unwrap();
        assert!(verify(&der, m.canonical().as_bytes(), &signature).is_ok());
        let mut tampered = m.clone();
        tampered.message_id.push('x');
        assert!(matches!(
            verify(&der, tampered.canonical().as_bytes(), &signature),
            Err(SmnError::BadSignature)
        ));
        // An EC key's certificate cannot vouch for an RSA signature.
        let other = KeyPair::generate().unwrap();
        let other = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&other)
            .unwrap();
        assert!(verify(other.der(), m.canonical().as_bytes(), &signature).is_err());
    }

    #[test]
    fn only_https_urls_on_allowed_hosts_pass() {
        let hosts = Hosts::new(
            ["cn-north-4"],
            &[
                "127.0.0.1:8443".into(),
                "smn.example.org".into(),
                "[::1]:9443".into(),
            ],
        );
        let ok = |u: &str| hosts.check(u, "subscribe_url").is_ok();
        assert!(ok("https://smn.cn-north-4.myhuaweicloud.com/smn/x.pem"));
        assert!(ok("https://SMN.cn-north-4.myhuaweicloud.com:443/x"));
        assert!(ok("https://127.0.0.1:8443/c"));
        assert!(ok("https://smn.example.org/c"));
        assert!(ok("https://[::1]:9443/c"));
        assert!(!ok("http://smn.cn-north-4.myhuaweicloud.com/x"));
        assert!(!ok("https://smn.cn-north-4.myhuaweicloud.com:8443/x"));
        assert!(!ok("https://smn.cn-south-1.myhuaweicloud.com/x"));
        assert!(!ok("https://127.0.0.1:8444/c"));
        assert!(!ok("https://evil.example.org/c"));
        assert!(!ok("https://user@smn.example.org/c"));
        assert!(!ok("not a url"));
    }
}
