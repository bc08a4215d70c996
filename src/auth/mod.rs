//! Who the exporter is to the API: SDK-HMAC-SHA256 signing ([`signer`]), static
//! credentials from the config ([`credentials`]), where a target's credentials come
//! from as plain values ([`source`]: config, environment, SDK file, ECS metadata), and
//! the live providers that hold and refresh them ([`provider`]).
//! Imports nothing of config, state, render or poll.

pub mod credentials;
pub(crate) mod ecs_metadata;
pub(crate) mod provider;
pub mod signer;
pub mod source;
