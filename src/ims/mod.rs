//! The Huawei Cloud IMS API: typed responses ([`model`]), typed errors ([`error`]) and
//! the signing, paging HTTP client ([`client`]).

pub mod client;
pub mod error;
pub mod model;
pub mod observer;
pub mod ratelimit;
pub mod retry;
pub mod url;

pub use client::ImsClient;
pub use error::ApiError;
pub use model::{Member, MemberList, PageInfo};
