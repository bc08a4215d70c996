//! Requests through the proxy the environment names, by reqwest, which implements the
//! proxy protocols and `NO_PROXY`. Its answers and failures are [`super::direct`]'s
//! types, so that the transport judges both routes the same way.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Url;
use rustls::pki_types::CertificateDer;

use super::direct::{error_chain, request_id, Answer, CappedBody, Failure};

/// Whether the environment names a proxy for any scheme (the variables reqwest reads).
pub(super) fn in_environment() -> bool {
    [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
}

/// reqwest with the direct route's settings: timeouts, roots, user agent, no redirects.
pub(super) fn client(
    timeout: Duration,
    user_agent: &'static str,
    extra_roots: &[CertificateDer<'static>],
    insecure: bool,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(user_agent)
        // The API never redirects a signed request: following one would send the
        // security token and the URL elsewhere and trust an unsigned answer.
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .tls_certs_merge(crate::tls::reqwest_certificates(extra_roots))
        .danger_accept_invalid_certs(insecure)
        .build()
}

/// One GET through the proxy; the body read whole, up to `limit` bytes.
pub(super) async fn get(
    client: &reqwest::Client,
    url: Url,
    headers: HeaderMap,
    limit: usize,
) -> Result<Answer, Failure> {
    let mut response = client.get(url).headers(headers).send().await.map_err(|e| {
        match (e.is_timeout(), e.is_connect()) {
            (true, _) => Failure::Timeout,
            (false, true) => Failure::Connect(error_chain(&e)),
            (false, false) => Failure::Send(error_chain(&e)),
        }
    })?;
    let request_id = request_id(response.headers());
    let Some(mut body) = CappedBody::new(response.content_length(), limit) else {
        return Err(Failure::TooLarge { request_id });
    };
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err(Failure::Timeout),
            Err(e) => {
                let message = error_chain(&e);
                return Err(Failure::Body {
                    message,
                    request_id,
                });
            }
        };
        if !body.push(&chunk) {
            return Err(Failure::TooLarge { request_id });
        }
    }
    Ok(Answer {
        status: response.status().as_u16(),
        headers: std::mem::take(response.headers_mut()),
        body: body.into_bytes(),
    })
}
