//! The poll layer: the schedules that fetch members and discover images
//! ([`poller`]), and the change audit between two good polls ([`audit`]). The poller
//! is the only writer of [`crate::state`].

pub mod audit;
pub mod poller;
