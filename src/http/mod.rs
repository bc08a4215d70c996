//! The HTTP side: routes and their handlers ([`routes`]), the scrape and its
//! streaming ([`scrape`]), and how connections are served ([`serve`]: TLS, auth,
//! limits, timeouts). Reads the store and renders; never calls the API.

mod api;
mod context;
pub(crate) mod routes;
mod scrape;
pub(crate) mod serve;

pub use context::{AppState, ReloadRequest};
pub use routes::{normalize_listen_address, router};
pub use serve::{
    serve, ServeOptions, BODY_READ_TIMEOUT, HEADER_READ_TIMEOUT, TLS_HANDSHAKE_TIMEOUT,
};
