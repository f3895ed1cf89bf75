//! # flowhook
//!
//! An approval-workflow task center whose every task event is pushed, Yida-signed, in order and
//! never lost, to the organisation's own services.
//!
//! ## Layout
//! - [`config`]: defaults < file < `FLOWHOOK_*` environment < flags, validated at start.
//! - [`telemetry`]: `tracing` logs and the Prometheus registry.
//! - [`engine`]: pure approval state machine: definitions, approvers, transitions, events.
//! - [`store`]: SQLite (default) or PostgreSQL, migrations per backend, durable commits.
//! - [`delivery`]: the dispatcher: leases, retries, ordering, breakers, the attempt log.
//! - [`http`]: the REST API, `/healthz`, `/readyz`, `/metrics`, the OpenAPI document.
//! - [`console`]: the web pages under `/console` (task center, task pages, processes).
//! - [`app`]: builds and runs the service; tests use it to run the real thing on port 0.
//! - [`demo`]: the demo organisation of `flowhook serve --demo`.
//! - [`bench`]: the benchmarks of `flowhook bench`.
//! - [`cli`]: the commands of the `flowhook` binary (`serve`, `migrate`, `sign`, `verify`).
//!
//! Signing and payloads live in the `flowhook-sign` crate, which receivers use on their own.
#![forbid(unsafe_code)]

pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod console;
pub mod delivery;
pub mod demo;
pub mod engine;
pub mod http;
pub mod integration;
pub mod store;
pub mod telemetry;

pub use app::Application;
