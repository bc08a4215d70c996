//! The Huawei Cloud IMS API: typed responses ([`model`]), typed errors ([`error`]) and
//! the signing, paging HTTP client ([`client`]).

pub(crate) mod client;
pub mod error;
pub mod model;
pub mod observer;
pub(crate) mod ratelimit;
pub(crate) mod retry;
pub mod url;

pub use client::ImsClient;
pub use error::ApiError;
pub use model::{Member, MemberList, PageInfo};
