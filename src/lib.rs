//! ims-exporter: who Huawei Cloud images are shared with, as Prometheus metrics.
//!
//! Data flows one way (docs/how-it-works.md): [`config`] (plain values) → [`poll`]
//! (the runtime plan, poller, audit) → [`ims`] (client) → [`auth`] (signing,
//! credentials); the poller writes [`state`]; [`render`] reads it at scrape time;
//! [`http`] serves it; [`app`] wires them. `webhook` receives pushed CTS events and
//! hands them to the poller.

#[cfg(test)]
mod alloc_count;
pub mod allowlist;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod fake_ims;
pub(crate) mod files;
pub mod http;
pub mod ids;
pub mod ims;
pub(crate) mod logging;
pub mod memory;
pub mod pages;
pub(crate) mod poll;
pub mod render;
pub mod shard;
pub mod state;
pub mod timestamp;
pub mod tls;
pub(crate) mod webhook;

pub use app::run;

// The unit tests count allocations on the decode path (src/state/alloc_budget.rs).
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;
