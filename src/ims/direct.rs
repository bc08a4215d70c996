//! The HTTP/1.1 client for direct connections to the API: a keep-alive pool of hyper
//! connections (TLS by rustls, the system's roots plus `ca_file`), and nothing else.
//! A general-purpose client spent a third of the CPU of a request on layers the API
//! never needs (redirects, retries, URL conversions); proxied requests still go
//! through one ([`super::proxied`]), which implements the proxy protocols.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderMap, HeaderValue, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use reqwest::Url;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Idle connections older than this are closed rather than reused (as reqwest's
/// default), before a server's own idle timeout is likely to have closed them.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why an exchange failed, for the caller to turn into its error type.
#[derive(Debug)]
pub(super) enum Failure {
    /// The request timeout passed.
    Timeout,
    /// No connection: DNS, TCP or the TLS handshake.
    Connect(String),
    /// The request or the answer's head failed on an open connection.
    Send(String),
    /// The body failed after the head arrived.
    Body {
        message: String,
        request_id: Option<String>,
    },
    /// The body passed the limit.
    TooLarge { request_id: Option<String> },
    /// A kept-alive connection failed before the answer's head.
    Stale,
}

/// An answer's status and headers, and its body read whole.
pub(super) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Where a connection goes: the pool's key.
#[derive(Clone, PartialEq, Eq)]
struct Origin {
    tls: bool,
    host: String,
    port: u16,
}

/// An open connection: where requests go in, and what does its reading and writing.
struct Connection {
    sender: SendRequest<Empty<Bytes>>,
    driver: Driver,
}

impl Connection {
    fn new<F>((sender, future): (SendRequest<Empty<Bytes>>, F)) -> Self
    where
        F: Future<Output = hyper::Result<()>> + Send + 'static,
    {
        let future = Box::pin(future);
        Connection {
            sender,
            driver: Driver {
                future,
                ended: false,
            },
        }
    }
}

/// A connection's HTTP/1.1 state machine, which reads and writes when polled. The
/// requesting task polls it itself ([`Driver::run`]): spawned, it was a second task,
/// woken for each request and each chunk of its answer and waking the first in turn,
/// the largest cost per request after the kernel's. An idle connection is not polled:
/// one the server closed meanwhile is found out when it is next taken.
struct Driver {
    future: Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>,
    /// The connection closed.
    ended: bool,
}

impl Driver {
    /// Runs `work` (a request on this connection, reading its answer) while driving
    /// the connection.
    async fn run<T>(&mut self, work: impl Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            if !self.ended && self.future.as_mut().poll(cx).is_ready() {
                // Closed: `work` fails now that the connection's channels are gone.
                self.ended = true;
                return work.as_mut().poll(cx);
            }
            Poll::Pending
        })
        .await
    }
}

struct Idle {
    origin: Origin,
    connection: Connection,
    since: Instant,
}

pub(super) struct DirectClient {
    tls: TlsConnector,
    user_agent: HeaderValue,
    idle: Mutex<Vec<Idle>>,
}

impl DirectClient {
    /// `extra_roots` are trusted beside the system's; `insecure` trusts any certificate.
    pub fn new(
        user_agent: &'static str,
        extra_roots: Vec<CertificateDer<'static>>,
        insecure: bool,
    ) -> Result<Self, String> {
        Ok(DirectClient {
            tls: TlsConnector::from(Arc::new(crate::tls::client_config(extra_roots, insecure)?)),
            user_agent: HeaderValue::from_static(user_agent),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// One GET of `url` with `headers` (`host` is set here); the body is read whole,
    /// up to `limit` bytes. On a kept-alive connection (unless `new_connection`); one
    /// that fails before the answer's head is [`Failure::Stale`]: the server may have
    /// closed it meanwhile, and a GET is safe to send again on a new one.
    pub async fn get(
        &self,
        url: &Url,
        headers: HeaderMap,
        limit: usize,
        new_connection: bool,
    ) -> Result<Answer, Failure> {
        let origin = Origin::of(url).map_err(Failure::Connect)?;
        let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let mut request = Request::get(target)
            .body(Empty::new())
            .map_err(|e| Failure::Send(e.to_string()))?;
        let host = HeaderValue::from_str(&super::url::host_header(url))
            .map_err(|e| Failure::Send(e.to_string()))?;
        *request.headers_mut() = headers;
        request.headers_mut().insert(HOST, host);
        request
            .headers_mut()
            .insert(USER_AGENT, self.user_agent.clone());

        let reused = match new_connection {
            false => self.checkout(&origin).await,
            true => None,
        };
        let (mut conn, reused) = match reused {
            Some(conn) => (conn, true),
            None => (self.connect(&origin).await?, false),
        };
        let sent = conn.sender.send_request(request);
        let response = match conn.driver.run(sent).await {
            Ok(response) => response,
            Err(_) if reused => return Err(Failure::Stale),
            Err(e) => return Err(Failure::Send(error_chain(&e))),
        };
        let (head, body) = response.into_parts();
        let bytes = conn
            .driver
            .run(read_body(&head.headers, body, limit))
            .await?;
        self.checkin(origin, conn);
        Ok(Answer {
            status: head.status.as_u16(),
            headers: head.headers,
            body: bytes,
        })
    }

    /// An idle connection to `origin` that is still open, young enough and ready for
    /// the next request (the end of the last answer may not have been read yet).
    async fn checkout(&self, origin: &Origin) -> Option<Connection> {
        loop {
            let mut conn = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.retain(|c| {
                    !c.connection.driver.ended
                        && !c.connection.sender.is_closed()
                        && c.since.elapsed() < IDLE_TIMEOUT
                });
                let at = idle.iter().rposition(|c| c.origin == *origin)?;
                idle.swap_remove(at).connection
            };
            let ready = conn.sender.ready();
            if conn.driver.run(ready).await.is_ok() {
                return Some(conn);
            }
        }
    }

    fn checkin(&self, origin: Origin, connection: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.push(Idle {
            origin,
            connection,
            since: Instant::now(),
        });
    }

    /// A new connection (TCP, then TLS for https).
    async fn connect(&self, origin: &Origin) -> Result<Connection, Failure> {
        let connect = |e: std::io::Error| Failure::Connect(format!("tcp connect error: {e}"));
        let tcp = TcpStream::connect((origin.host.as_str(), origin.port))
            .await
            .map_err(connect)?;
        // A request is one write; waiting for more to send only delays it.
        tcp.set_nodelay(true).map_err(connect)?;
        let handshake = |e: hyper::Error| Failure::Connect(error_chain(&e));
        if !origin.tls {
            let parts = http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(handshake)?;
            return Ok(Connection::new(parts));
        }
        let name = ServerName::try_from(origin.host.clone())
            .map_err(|e| Failure::Connect(format!("{}: {e}", origin.host)))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| Failure::Connect(format!("TLS handshake: {e}")))?;
        let parts = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(handshake)?;
        Ok(Connection::new(parts))
    }
}

impl Origin {
    fn of(url: &Url) -> Result<Origin, String> {
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(format!("scheme {other:?} is not http or https")),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("the URL has no host".into()),
        };
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        Ok(Origin { tls, host, port })
    }
}

/// The answer's request id, which errors carry for the user to quote.
pub(super) fn request_id(headers: &HeaderMap) -> Option<String> {
    let id = headers.get("x-request-id");
    id.and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// A body being read under the response cap, for both routes: a body over the cap
/// fails the call, never the daemon's memory.
pub(super) struct CappedBody {
    bytes: Vec<u8>,
    limit: usize,
}

impl CappedBody {
    /// `None` when `Content-Length` already passes `limit`; else sized once from it
    /// rather than grown chunk by chunk.
    pub fn new(content_length: Option<u64>, limit: usize) -> Option<Self> {
        let expected = content_length.unwrap_or(0);
        (expected <= limit as u64).then(|| CappedBody {
            bytes: Vec::with_capacity(expected as usize),
            limit,
        })
    }

    /// Appends `chunk`; `false` when the body would pass the cap.
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        if self.bytes.len() + chunk.len() > self.limit {
            return false;
        }
        self.bytes.extend_from_slice(chunk);
        true
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// A body read whole under the cap.
async fn read_body(
    headers: &HeaderMap,
    mut body: hyper::body::Incoming,
    limit: usize,
) -> Result<Vec<u8>, Failure> {
    let too_large = || Failure::TooLarge {
        request_id: request_id(headers),
    };
    let content_length = headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut capped = CappedBody::new(content_length, limit).ok_or_else(too_large)?;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::Body {
            message: error_chain(&e),
            request_id: request_id(headers),
        })?;
        if let Ok(data) = frame.into_data() {
            if !capped.push(&data) {
                return Err(too_large());
            }
        }
    }
    Ok(capped.into_bytes())
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Reads one request head (this test's requests have no body).
    async fn read_head(socket: &mut TcpStream) -> bool {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !seen.ends_with(b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        true
    }

    async fn answer(socket: &mut TcpStream, body: &str) {
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-request-id: r1\r\n\r\n",
            body.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(body.as_bytes()).await.unwrap();
    }

    /// A server whose first connection answers one request and then drops the next
    /// one unanswered (as a server closes a connection it kept alive too long); its
    /// second connection answers.
    pub(crate) async fn forgetful_server() -> (Url, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!(
            "http://{}/v1/x?limit=1",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let task = tokio::spawn(async move {
            let (mut first, _) = listener.accept().await.unwrap();
            assert!(read_head(&mut first).await);
            answer(&mut first, r#"{"n":1}"#).await;
            assert!(read_head(&mut first).await);
            drop(first);
            let (mut second, _) = listener.accept().await.unwrap();
            assert!(read_head(&mut second).await);
            answer(&mut second, r#"{"n":2}"#).await;
        });
        (url, task)
    }

    #[tokio::test]
    async fn a_kept_alive_connection_the_server_dropped_is_stale_and_a_new_one_answers() {
        let (url, server) = forgetful_server().await;
        let client = DirectClient::new("test", Vec::new(), false).unwrap();
        let first = client
            .get(&url, HeaderMap::new(), 1024, false)
            .await
            .unwrap();
        assert_eq!(
            (first.status, first.body.as_slice()),
            (200, &br#"{"n":1}"#[..])
        );
        assert_eq!(first.headers.get("x-request-id").unwrap(), "r1");
        let reused = client.get(&url, HeaderMap::new(), 1024, false).await;
        assert!(matches!(reused, Err(Failure::Stale)), "{:?}", reused.err());
        let fresh = client
            .get(&url, HeaderMap::new(), 1024, true)
            .await
            .unwrap();
        assert_eq!(fresh.body, br#"{"n":2}"#);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_body_over_the_limit_fails_with_its_request_id() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            assert!(read_head(&mut socket).await);
            answer(&mut socket, "0123456789").await;
        });
        let client = DirectClient::new("test", Vec::new(), false).unwrap();
        match client.get(&url, HeaderMap::new(), 9, false).await {
            Err(Failure::TooLarge { request_id }) => assert_eq!(request_id.as_deref(), Some("r1")),
            other => panic!("expected TooLarge, got {:?}", other.err()),
        }
        server.await.unwrap();
    }
}
