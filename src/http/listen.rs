//! Where the server listens, as exporter-toolkit does it: every `--web.listen-address`
//! (repeatable; `:PORT` is every interface), or with `--web.systemd-socket` the
//! sockets systemd passed (socket activation: `LISTEN_FDS`, `LISTEN_PID`, fds from 3).
//! Only TCP stream sockets are taken; anything else systemd passes is refused by name.
//! Also the accept loop of one listener, which backs off when accepting fails.

use std::net::TcpListener as StdListener;
use std::time::Duration;

/// Why the server cannot listen.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("--web.listen-address {address}: cannot listen: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error(
        "--web.systemd-socket: no socket activation file descriptors found \
         (LISTEN_FDS is unset or 0, or LISTEN_PID names another process)"
    )]
    NoSockets,
    #[error("--web.systemd-socket: file descriptor {fd}: {message}")]
    Inherited { fd: usize, message: String },
}

/// `:PORT` means every interface, as in the Go exporters.
pub fn normalize_listen_address(addr: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    }
}

/// Takes the sockets systemd passed. Call it before the async runtime starts: it
/// unsets `LISTEN_FDS`/`LISTEN_PID` (so children do not take them too), which is only
/// sound while the process has one thread.
pub fn systemd_sockets() -> Result<Vec<StdListener>, ListenError> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Err(ListenError::NoSockets);
    }
    (0..fds.len())
        .map(|i| {
            // systemd numbers them from 3 (SD_LISTEN_FDS_START).
            let fd = i + 3;
            let listener = fds
                .take_tcp_listener(i)
                .map_err(|e| ListenError::Inherited {
                    fd,
                    message: format!("not a TCP listening socket: {e}"),
                })?
                .ok_or(ListenError::Inherited {
                    fd,
                    message: "already taken".into(),
                })?;
            // A bound socket nobody called listen() on passes as TCP, then every
            // accept fails (EINVAL): refuse it here, by name.
            if !is_listening(&listener) {
                return Err(ListenError::Inherited {
                    fd,
                    message: "a TCP socket that is not listening (listen() was never called \
                              on it; check ListenStream= in the .socket unit)"
                        .into(),
                });
            }
            listener
                .set_nonblocking(true)
                .map_err(|e| ListenError::Inherited {
                    fd,
                    message: e.to_string(),
                })?;
            Ok(listener)
        })
        .collect()
}

/// Whether `listen()` was called on the socket (`SO_ACCEPTCONN`). Where the kernel
/// cannot say, the socket is given the benefit of the doubt.
fn is_listening(listener: &StdListener) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        socket2::SockRef::from(listener)
            .is_listener()
            .unwrap_or(true)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        let _ = listener;
        true
    }
}

/// What to listen on.
#[derive(Debug)]
pub enum ListenOn {
    /// `--web.listen-address`, one or more.
    Addresses(Vec<String>),
    /// `--web.systemd-socket`: what [`systemd_sockets`] took.
    Inherited(Vec<StdListener>),
}

impl ListenOn {
    /// The listeners, inside the runtime.
    pub async fn open(self) -> Result<Vec<tokio::net::TcpListener>, ListenError> {
        match self {
            ListenOn::Addresses(a) => bind(&a).await,
            ListenOn::Inherited(s) => adopt(s),
        }
    }
}

/// Binds every address, in order; the first that fails stops it. An address given
/// twice (`:9100` and `0.0.0.0:9100` too) is bound once.
async fn bind(addresses: &[String]) -> Result<Vec<tokio::net::TcpListener>, ListenError> {
    let mut listeners = Vec::with_capacity(addresses.len());
    let mut seen = std::collections::HashSet::new();
    for address in addresses {
        let normalized = normalize_listen_address(address);
        if !seen.insert(normalized.clone()) {
            tracing::warn!(address = %address, "--web.listen-address given twice; listening once");
            continue;
        }
        let listener = tokio::net::TcpListener::bind(&normalized)
            .await
            .map_err(|source| ListenError::Bind {
                address: address.clone(),
                source,
            })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Hands inherited sockets to the runtime.
fn adopt(sockets: Vec<StdListener>) -> Result<Vec<tokio::net::TcpListener>, ListenError> {
    sockets
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            tokio::net::TcpListener::from_std(s).map_err(|e| ListenError::Inherited {
                fd: i + 3,
                message: e.to_string(),
            })
        })
        .collect()
}

/// The first and the longest wait after a failed accept (as Go's net/http).
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

/// The wait after a failed accept, given the wait after the one before (if any).
fn next_backoff(last: Option<Duration>) -> Duration {
    last.map_or(ACCEPT_BACKOFF.0, |b| (b * 2).min(ACCEPT_BACKOFF.1))
}

/// Accepts connections on one listener for as long as the server wants them.
pub(super) async fn accept_loop(
    listener: tokio::net::TcpListener,
    accepted: tokio::sync::mpsc::Sender<tokio::net::TcpStream>,
) {
    let mut backoff: Option<Duration> = None;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff = None;
                let _ = stream.set_nodelay(true);
                if accepted.send(stream).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, doubling the wait up
                // to a second, instead of spinning (and logging) in a tight loop.
                let wait = next_backoff(backoff);
                backoff = Some(wait);
                tracing::warn!(
                    error = %e, retry_in = %humantime::format_duration(wait),
                    "accepting a connection failed"
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_address() {
        assert_eq!(normalize_listen_address(":10027"), "0.0.0.0:10027");
        assert_eq!(normalize_listen_address("[::1]:9"), "[::1]:9");
    }
}

#[cfg(test)]
mod accept_tests {
    use super::*;

    #[test]
    fn failed_accepts_back_off_to_a_second() {
        let mut waits = vec![next_backoff(None)];
        for _ in 0..12 {
            waits.push(next_backoff(waits.last().copied()));
        }
        assert_eq!(waits[0], Duration::from_millis(5));
        assert_eq!(waits[1], Duration::from_millis(10));
        assert_eq!(waits[8], Duration::from_secs(1));
        assert_eq!(waits[12], Duration::from_secs(1));
        // At most a few log lines a second once it is failing for good, where it
        // used to be ten.
        let first_second: Duration = waits.iter().take(9).sum();
        assert!(first_second >= Duration::from_secs(2), "{first_second:?}");
    }
}
