//! The poll layer: the runtime plan built from a config's values ([`plan`]: client,
//! limiters, credential providers, watched allowlist files); the poller and its image
//! set ([`poller`]), its schedules ([`schedule`]), discovery ([`discovery`]), one
//! image's poll ([`image_poll`]), the polls share-change events trigger ([`event_polls`], with its leaves in
//! [`events`])
//! and what a reload takes over ([`takeover`]); and the change audit between two good
//! polls ([`audit`]).

pub mod audit;
mod discovery;
pub mod event_polls;
mod events;
mod image_poll;
mod incoming;
pub mod plan;
pub mod poller;
mod schedule;
mod takeover;
