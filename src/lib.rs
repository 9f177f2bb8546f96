//! cas-server: a CAS 1/2/3 single sign-on server.
//!
//! Layers, top to bottom: `app` (composition root), `web` (axum handlers), `protocol`
//! (CAS rules), then `tickets`, `services`, `tgc`, `auth`, `config`, and the leaf
//! modules `clock`, `crypto` and `locales`. Only `app` and `web` know about HTTP.

pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod locales;
pub mod outbound;
pub mod protocol;
pub mod services;
pub mod telemetry;
pub mod tgc;
pub mod tickets;
pub mod web;

pub use app::App;
