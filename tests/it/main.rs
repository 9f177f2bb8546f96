//! Integration tests: one binary, the real server on an ephemeral port per test.
//! Each test names the protocol-checklist items it covers (`../shared/protocol-checklist.md`).

mod support;

mod login;
