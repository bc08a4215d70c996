//! The HTTP side: routes and their handlers ([`routes`]), the scrape and its
//! streaming ([`scrape`]), where the server listens ([`listen`]: addresses or systemd
//! sockets), how connections are served ([`serve`]: TLS, auth, limits, timeouts), and
//! the web config file that sets TLS and basic auth ([`web`]), and the push endpoint's
//! HTTP half ([`events`]; the rest is an injected [`EventsEndpoint`], [`endpoint`]). Reads the store
//! and renders; never calls the API.

mod api;
mod context;
mod endpoint;
mod events;
mod limits;
pub(crate) mod listen;
pub(crate) mod routes;
mod scrape;
pub(crate) mod serve;
mod stall;
pub mod web;

pub use context::{AppState, ReloadRequest};
pub use endpoint::{
    BodyFailure, EventsAnswer, EventsEndpoint, EventsFuture, MAX_EVENTS_BODY_BYTES,
};
pub use limits::{
    Timeouts, BODY_READ_TIMEOUT, HEADER_READ_TIMEOUT, TLS_HANDSHAKE_TIMEOUT, WRITE_STALL_TIMEOUT,
};
pub use listen::{systemd_sockets, ListenError, ListenOn};
pub use routes::router;
pub use serve::{serve, ServeOptions};
