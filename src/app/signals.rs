//! The signals the daemon acts on: SIGHUP reloads, SIGINT and SIGTERM shut down.

/// The signals the daemon acts on, listened for from the start and for its whole
/// life: a listener made anew on each pass would miss a signal sent in between.
pub struct Signals {
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the listeners; call it before any slow start-up work.
    pub fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                hangup: signal(SignalKind::hangup()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next SIGHUP, SIGINT or SIGTERM.
    pub async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            let hangup = async {
                match &mut self.hangup {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let Signals {
                terminate,
                interrupt,
                ..
            } = self;
            tokio::select! {
                _ = hangup => Signal::Hangup,
                name = shutdown(interrupt, terminate) => Signal::Shutdown(name),
            }
        }
        #[cfg(not(unix))]
        Signal::Shutdown(self.shutdown().await)
    }

    /// SIGINT or SIGTERM, and which.
    pub async fn shutdown(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            shutdown(&mut self.interrupt, &mut self.terminate).await
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// What [`Signals::next`] received.
pub enum Signal {
    Hangup,
    Shutdown(&'static str),
}

#[cfg(unix)]
async fn shutdown(
    interrupt: &mut Option<tokio::signal::unix::Signal>,
    terminate: &mut Option<tokio::signal::unix::Signal>,
) -> &'static str {
    async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    tokio::select! {
        _ = recv(interrupt) => "SIGINT",
        _ = recv(terminate) => "SIGTERM",
    }
}

impl Default for Signals {
    fn default() -> Self {
        Self::new()
    }
}
