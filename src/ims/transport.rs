//! How one API request travels: signed, rate limited, bounded in concurrency and in
//! body size, timed and counted, retried as the retry policy says, every failure an
//! [`ApiError`]. The API operations themselves are [`super::client`]'s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::Url;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::direct::{request_id, DirectClient, Failure};
use super::error::{ApiError, Reason};
use super::observer::RequestObserver;
use super::proxied;
use super::retry::{self, RetryPolicy};
use super::url::host_header;
use crate::auth::provider::CredentialProvider;
use crate::auth::signer::{self, RequestParts};
use crate::ims::ratelimit::TokenBucket;
use crate::tls::USER_AGENT;

/// Who a call is made for: whose credentials sign it, which project header it
/// carries and which rate limit it waits for.
#[derive(Clone, Copy)]
pub struct CallContext<'a> {
    pub credentials: &'a CredentialProvider,
    pub project_id: Option<&'a str>,
    pub rate_limit: Option<&'a TokenBucket>,
    /// The target's share of the concurrent requests, taken before a global slot.
    pub concurrency: Option<&'a Semaphore>,
}
/// How the API client behaves: from the config, and for IAM look-ups before the
/// config is complete.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    pub retry: RetryPolicy,
    pub max_response_bytes: usize,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}
/// The HTTP side of the client: one per config, shared by every target.
#[derive(Clone)]
pub struct Transport {
    http: Arc<Http>,
    /// For the whole exchange: connecting, sending, reading the body.
    request_timeout: Duration,
    /// Requests in flight across all targets (`max_concurrent_requests`).
    limiter: Arc<Semaphore>,
    retry: RetryPolicy,
    max_response_bytes: usize,
    observer: Arc<dyn RequestObserver>,
}

/// Why the HTTP side of the client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Proxied(#[from] reqwest::Error),
    #[error("{0}")]
    Tls(String),
}

/// How requests travel: straight to the API, or through the proxy the environment
/// names (reqwest implements the proxy protocols and `NO_PROXY`).
enum Http {
    Direct(DirectClient),
    Proxied(reqwest::Client),
}

/// Decodes a JSON body. The body is checked as UTF-8 once, as a whole, which is much
/// cheaper than serde_json checking each string of a 1,000-member page on its own. The
/// plain decoder is used first; only a body that fails is decoded again to find the
/// field path for the error message.
pub(crate) fn decode_json<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    serde_json::from_str(text).map_err(|plain| {
        let de = &mut serde_json::Deserializer::from_str(text);
        match serde_path_to_error::deserialize::<_, T>(de) {
            Err(e) => format!("at {}: {}", e.path(), e.inner()),
            Ok(_) => plain.to_string(),
        }
    })
}
impl Transport {
    /// A client with the config's timeout, concurrency limit, retry policy and body cap.
    pub fn new(
        config: &ClientOptions,
        observer: Arc<dyn RequestObserver>,
    ) -> Result<Self, ClientError> {
        crate::tls::ensure_crypto_provider();
        let extra_roots = match &config.ca_file {
            // Validated when the config was loaded; a file gone since is reported then.
            Some(path) => crate::tls::read_ca_file(path).unwrap_or_else(|e| {
                tracing::error!(error = %e, "ca_file");
                Vec::new()
            }),
            None => Vec::new(),
        };
        if config.insecure_skip_verify {
            tracing::warn!(
                "insecure_skip_verify is set: API server certificates are NOT verified; \
                 anyone on the network path can read the signed requests and forge the answers"
            );
        }
        let insecure = config.insecure_skip_verify;
        let http = match proxied::in_environment() {
            true => Http::Proxied(proxied::client(
                config.request_timeout,
                USER_AGENT,
                &extra_roots,
                insecure,
            )?),
            false => Http::Direct(
                DirectClient::new(USER_AGENT, extra_roots, insecure).map_err(ClientError::Tls)?,
            ),
        };
        Ok(Transport {
            http: Arc::new(http),
            request_timeout: config.request_timeout,
            limiter: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            retry: config.retry,
            max_response_bytes: config.max_response_bytes,
            observer,
        })
    }

    /// One signed GET decoded from JSON, retried as the retry policy says. Credentials
    /// the API rejects are refreshed once (temporary ones may have been rotated).
    pub(super) async fn get_json<T: DeserializeOwned + Send>(
        &self,
        operation: &'static str,
        ctx: &CallContext<'_>,
        url: Url,
    ) -> Result<T, ApiError> {
        self.get_decoded(operation, ctx, url, &mut |body| decode_json(body))
            .await
            .map(|(value, _)| value)
    }

    /// [`Self::get_json`] with the decoding left to `decode` (which may borrow from
    /// the body); its error message becomes an [`ApiError::Decode`]. Also returns the
    /// answer's request id.
    pub(super) async fn get_decoded<T: Send>(
        &self,
        operation: &'static str,
        ctx: &CallContext<'_>,
        url: Url,
        decode: &mut (dyn FnMut(&[u8]) -> Result<T, String> + Send),
    ) -> Result<(T, Option<String>), ApiError> {
        let mut attempt = 1;
        let mut refreshed = false;
        loop {
            let (error, retry_after) = match self
                .attempt(operation, ctx, url.clone(), &mut *decode)
                .await
            {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            if error.reason() == Reason::Auth && !refreshed {
                refreshed = true;
                match ctx.credentials.refresh().await {
                    Ok(()) if ctx.credentials.is_refreshable() => {
                        tracing::info!(
                            operation, provider = ctx.credentials.kind(), error = %error,
                            "credentials rejected; refreshed them and retrying once"
                        );
                        continue;
                    }
                    Ok(()) => {}
                    Err(e) => tracing::warn!(
                        operation, provider = ctx.credentials.kind(), error = %e,
                        "credentials rejected and cannot be refreshed"
                    ),
                }
            }
            let Some(wait) = self
                .retry
                .delay(attempt, &error, retry_after, rand::random())
            else {
                return Err(error);
            };
            self.observer.retry(operation);
            tracing::debug!(
                operation, attempt, wait_seconds = wait.as_secs_f64(), error = %error,
                "retrying API request"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One try: waits for the target's rate limit and a concurrency slot, sends,
    /// counts and times it, decodes a 2xx body. An error comes with the server's
    /// `Retry-After`, if any.
    async fn attempt<T: Send>(
        &self,
        operation: &'static str,
        ctx: &CallContext<'_>,
        url: Url,
        decode: &mut (dyn FnMut(&[u8]) -> Result<T, String> + Send),
    ) -> Result<(T, Option<String>), (ApiError, Option<Duration>)> {
        if let Some(bucket) = ctx.rate_limit {
            bucket.acquire().await;
        }
        // The target's own share first: a target whose endpoint hangs waits here,
        // holding no more global slots than its share. (Semaphores are closed only
        // when dropped, which cannot happen while they are borrowed.)
        let closed = |_| {
            let message = "client shut down".into();
            (ApiError::Transport { operation, message }, None)
        };
        let _target_permit = match ctx.concurrency {
            Some(s) => Some(s.acquire().await.map_err(closed)?),
            None => None,
        };
        let _permit = self.limiter.acquire().await.map_err(closed)?;
        let started = Instant::now();
        let result = self.send(operation, ctx, url).await;
        let code = match &result {
            Ok(response) => response.status.to_string(),
            Err(ApiError::Timeout { .. }) => "timeout".to_string(),
            Err(_) => "error".to_string(),
        };
        self.observer.request(operation, &code, started.elapsed());
        let response = result.map_err(|e| (e, None))?;
        judge(operation, response, decode)
    }

    /// Signs and sends one GET, and reads its answer (capped at the body limit).
    async fn send(
        &self,
        operation: &'static str,
        ctx: &CallContext<'_>,
        url: Url,
    ) -> Result<RawResponse, ApiError> {
        let headers = signed_headers(operation, ctx, &url)?;
        let limit = self.max_response_bytes;
        let answer = match &*self.http {
            Http::Proxied(client) => proxied::get(client, url, headers, limit).await,
            Http::Direct(client) => {
                let exchange = async {
                    match client.get(&url, headers, limit, false).await {
                        // Signed anew: the date in the signature moves on.
                        Err(Failure::Stale) => {
                            let headers = signed_headers(operation, ctx, &url)?;
                            Ok(client.get(&url, headers, limit, true).await)
                        }
                        other => Ok(other),
                    }
                };
                tokio::time::timeout(self.request_timeout, exchange)
                    .await
                    .unwrap_or(Ok(Err(Failure::Timeout)))?
            }
        };
        let answer = answer.map_err(|failure| api_error(operation, limit, failure))?;
        let meta = Meta::of(&answer.headers);
        Ok(RawResponse {
            status: answer.status,
            request_id: meta.request_id,
            retry_after: meta.retry_after,
            location: meta.location,
            body: answer.body,
        })
    }
}

/// What a failed exchange is as an API error.
fn api_error(operation: &'static str, limit: usize, failure: Failure) -> ApiError {
    match failure {
        Failure::Timeout => ApiError::Timeout { operation },
        Failure::Connect(message) => ApiError::Connect { operation, message },
        Failure::Send(message) => ApiError::Transport { operation, message },
        Failure::Stale => ApiError::Transport {
            operation,
            message: "the connection closed before the answer".into(),
        },
        Failure::Body {
            message,
            request_id,
        } => ApiError::Read {
            operation,
            message,
            request_id,
        },
        Failure::TooLarge { request_id } => ApiError::TooLarge {
            operation,
            limit,
            request_id,
        },
    }
}

/// The headers of an answer that matter: its request id, a redirect's target (cut
/// short) and `Retry-After`.
struct Meta {
    request_id: Option<String>,
    location: Option<String>,
    retry_after: Option<Duration>,
}
impl Meta {
    fn of(headers: &HeaderMap) -> Meta {
        Meta {
            request_id: request_id(headers),
            location: headers
                .get(reqwest::header::LOCATION)
                .map(|v| super::error::excerpt(&String::from_utf8_lossy(v.as_bytes()), 256)),
            retry_after: headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry::parse_retry_after(v, std::time::SystemTime::now())),
        }
    }
}

/// What an answer means: a redirect or a non-2xx status is an error (with the
/// server's `Retry-After`, if any); a 2xx body is decoded.
fn judge<T: Send>(
    operation: &'static str,
    response: RawResponse,
    decode: &mut (dyn FnMut(&[u8]) -> Result<T, String> + Send),
) -> Result<(T, Option<String>), (ApiError, Option<Duration>)> {
    if (300..400).contains(&response.status) {
        let error = ApiError::Redirect {
            operation,
            status: response.status,
            location: response.location.unwrap_or_default(),
            request_id: response.request_id,
        };
        return Err((error, None));
    }
    if !(200..300).contains(&response.status) {
        let error = ApiError::from_response(
            operation,
            response.status,
            response.request_id,
            &response.body,
        );
        return Err((error, response.retry_after));
    }
    match decode(&response.body) {
        Ok(value) => Ok((value, response.request_id)),
        Err(message) => Err((
            ApiError::Decode {
                operation,
                message: super::error::excerpt(&message, super::error::MAX_MESSAGE_CHARS),
                request_id: response.request_id,
            },
            None,
        )),
    }
}

/// The headers of a signed GET of `url`: date, project, security token and the
/// `Authorization` signature (marked sensitive, so never logged).
fn signed_headers(
    operation: &'static str,
    ctx: &CallContext<'_>,
    url: &Url,
) -> Result<HeaderMap, ApiError> {
    let signing = |message: String| ApiError::Signing { operation, message };
    let Some(credentials) = ctx.credentials.current() else {
        let message = format!("no credentials yet from {}", ctx.credentials.describe());
        return Err(ApiError::NoCredentials { operation, message });
    };
    let date = signer::sdk_date(std::time::SystemTime::now());
    let mut signed: Vec<(String, String)> = vec![
        ("host".into(), host_header(url)),
        (signer::DATE_HEADER.into(), date),
    ];
    if let Some(project_id) = ctx.project_id {
        // As the SDKs do; /v2/cloudimages takes the project from it.
        signed.push(("x-project-id".into(), project_id.to_string()));
    }
    if let Some(token) = &credentials.security_token {
        signed.push(("x-security-token".into(), token.expose().to_string()));
    }
    let query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let parts = RequestParts {
        method: "GET",
        path: url.path(),
        query: &query,
        headers: &signed,
        body: b"",
    };
    let authorization = signer::authorization(
        &credentials.access_key_id,
        &credentials.secret_access_key,
        &parts,
    )
    .map_err(|e| signing(e.to_string()))?;
    header_map(&signed, &authorization).map_err(signing)
}

/// The signed headers (but `host`, which the HTTP client sets) and the signature, the
/// secret ones marked sensitive.
fn header_map(signed: &[(String, String)], authorization: &str) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in signed.iter().filter(|(n, _)| n != "host") {
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err(format!("header {name} is not valid"));
        };
        headers.insert(n, v);
    }
    let mut auth = HeaderValue::from_str(authorization)
        .map_err(|_| "access key is not a valid header value".to_string())?;
    auth.set_sensitive(true);
    headers.insert(AUTHORIZATION, auth);
    if let Some(v) = headers.get_mut("x-security-token") {
        v.set_sensitive(true);
    }
    Ok(headers)
}

/// What one HTTP exchange returned, before the status is judged.
struct RawResponse {
    status: u16,
    request_id: Option<String>,
    retry_after: Option<Duration>,
    /// `Location` of a 3xx, cut short.
    location: Option<String>,
    body: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::auth::credentials::{Credentials, Secret};
    use crate::auth::source::CredentialSource;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);
    impl RequestObserver for Seen {
        fn request(&self, _: &'static str, code: &str, _: Duration) {
            self.0.lock().unwrap().push(code.to_string());
        }
        fn retry(&self, _: &'static str) {
            self.0.lock().unwrap().push("retry".into());
        }
    }

    #[derive(Deserialize)]
    struct N {
        n: u32,
    }

    /// A connection the server dropped while it was kept alive costs neither a failed
    /// request nor a retry: the request goes out again, signed anew, on a new one.
    #[tokio::test]
    async fn a_dropped_kept_alive_connection_does_not_fail_the_request() {
        let (url, server) = super::super::direct::tests::forgetful_server().await;
        let options = ClientOptions {
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 4,
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            max_response_bytes: 1024,
            ca_file: None,
            insecure_skip_verify: false,
        };
        let seen = Arc::new(Seen::default());
        let transport = Transport::new(&options, seen.clone()).unwrap();
        let credentials = CredentialProvider::new(&CredentialSource::Environment(Credentials {
            access_key_id: "AK".into(),
            secret_access_key: Secret::new("SK"),
            security_token: None,
        }))
        .unwrap();
        let ctx = CallContext {
            credentials: &credentials,
            project_id: None,
            rate_limit: None,
            concurrency: None,
        };
        for expected in [1, 2] {
            let got: N = transport.get_json("test", &ctx, url.clone()).await.unwrap();
            assert_eq!(got.n, expected);
        }
        assert_eq!(*seen.0.lock().unwrap(), ["200", "200"]);
        server.await.unwrap();
    }
}
