//! The HTTP side: routes, connection serving (TLS, auth, limits) and scrape
//! streaming ([`server`]). Reads the store and renders; never calls the API.

pub mod server;

pub use server::{
    serve, ServeOptions, BODY_READ_TIMEOUT, HEADER_READ_TIMEOUT, TLS_HANDSHAKE_TIMEOUT,
};
