//! The leaves of event-driven polls ([`super::event_polls`]): which traces count and
//! which images they name ([`names`]), where a target's trace reads stand
//! ([`window`]), and one poll of an image at a time ([`gate`]). None of them knows
//! the poller.

pub mod gate;
pub mod names;
pub mod window;
