//! Who the exporter is to the API: SDK-HMAC-SHA256 signing ([`signer`]), static
//! credentials from the config ([`credentials`]), and the providers that hold and
//! refresh them ([`provider`]: config, environment, SDK file, ECS metadata).
//! Imports nothing of config, state, render or poll.

pub mod credentials;
pub(crate) mod ecs_metadata;
pub(crate) mod provider;
pub mod signer;
