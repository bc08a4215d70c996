//! The Huawei Cloud IMS API: typed responses ([`model`]), typed errors ([`error`]),
//! the API operations with paging and caps ([`client`]) and how each request travels
//! ([`transport`]: signing, limits, retries, body caps); Cloud Trace Service traces
//! ([`traces`]), read with the same client.

pub(crate) mod client;
mod direct;
pub mod error;
pub mod listing;
pub mod member_page;
pub mod model;
pub mod observer;
mod proxied;
pub(crate) mod ratelimit;
pub(crate) mod retry;
pub mod shared;
pub mod traces;
pub(crate) mod transport;
pub mod url;

pub use client::ImsClient;
pub use error::ApiError;
pub use model::{Member, MemberList, PageInfo};
