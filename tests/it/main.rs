//! Integration tests: one binary, the real server on an ephemeral port per test.
//! Each test names the protocol-checklist items it covers (`../shared/protocol-checklist.md`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic loudly

mod support;

mod browser;
mod cli;
mod cluster;
mod connections;
mod faults;
mod hardening;
mod ldap;
mod login;
mod logout;
mod proxy;
mod redis;
mod round_trips;
mod security;
mod sentinel;
mod slo;
mod tgc;
mod tls;
mod ui;
mod validate;
