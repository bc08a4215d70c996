//! The HTTP side: routes, connection serving (TLS, auth, limits) and scrape
//! streaming ([`server`]). Reads the store and renders; never calls the API.

pub mod server;
