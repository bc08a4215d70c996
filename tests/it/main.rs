//! The integration tests, one binary (`cargo test --test it`; a module or a test by
//! name: `cargo test --test it golden`). Most start the real `ims-exporter` against the
//! fake IMS on loopback; [`support`] holds what they share: [`support::Fleet`] (a fake,
//! a config and an exporter), the member helpers, the exposition parser, the external
//! tools (Prometheus, Alertmanager, a webhook) and a test CA.

mod support;

mod alert_continuity;
mod api;
mod browser;
mod cli;
mod config_fixtures;
mod conventions;
mod credentials;
mod deploy;
mod docs;
mod events;
mod exporter;
mod fake_ims;
mod golden;
mod hardening;
mod incoming;
mod observability;
mod outbound;
mod prometheus;
mod properties;
mod reliability;
mod reload;
mod reports;
mod same_answer;
mod sdk_compat;
mod secrets;
mod sharding;
mod shares;
mod storage;
mod web;
mod webhook;
