//! Pushed events (`events.webhook`, docs/webhook.md): [`endpoint`] answers
//! `POST /api/v1/events` (token, rate, shapes, SMN checks, the channel to the poller);
//! [`token`], [`body`] (shapes), [`message`] (the SMN message), [`smn`] (hosts,
//! certificates, signatures, confirmations) and [`errors`] are its parts.

mod body;
pub mod endpoint;
mod errors;
mod message;
mod smn;
mod token;

pub use endpoint::Webhook;
