//! The poll layer: the runtime plan built from a config's values ([`plan`]: client,
//! limiters, credential providers, watched allowlist files), the schedules that fetch
//! members and discover images ([`poller`]), and the change audit between two good
//! polls ([`audit`]).

pub mod audit;
pub mod plan;
pub mod poller;
