//! The customer's web server, from the relay's side: the HTTP client that
//! POSTs one event as OCS would ([`client`]), and what it is built from:
//! [`tls`] (trust and client certificates), [`proxy`], [`auth`] (bearer
//! tokens, OAuth2), [`signing`] (Standard Webhooks), [`budget`] (the
//! target's request rate). Each file holds its own section of `[target]`;
//! the section itself is [`settings::TargetConfig`]. Client errors live in
//! the leaf [`error`]. When to retry is [`crate::policy`]'s decision.

pub mod auth;
pub mod budget;
pub mod client;
pub mod error;
pub mod proxy;
pub mod settings;
pub mod signing;
pub mod tls;
