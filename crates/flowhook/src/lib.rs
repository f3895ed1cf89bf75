//! # flowhook
//!
//! An approval-workflow task center whose every task event is pushed, Yida-signed, in order and
//! never lost, to the organisation's own services.
//!
//! ## Layout
//! From the bottom up; each module uses only those above it in this list, never one below.
//! - [`config`]: plain settings — defaults < file < `FLOWHOOK_*` environment < flags. Imports
//!   no other module: each layer builds its typed settings from it (`DispatcherConfig`,
//!   `KeySource`, `Store::from_config`), and [`app::check_config`] runs those checks at start.
//! - [`support`]: the one clock (`now_ms`), fresh ids (`new_id`) and the [`support::Recent`]
//!   cache of settings read on hot paths. Imports no other module.
//! - [`supervise`]: restarts a background task that panicked; `/readyz` names one that is down.
//! - [`engine`]: the pure approval state machine: definitions, approvers, conditions (CEL),
//!   transitions, events, instance and task ids. No I/O, no clock, no database: it must not
//!   reach any module below.
//! - [`integration`]: connectors, actions, sync strategies and their rules, and the rendering
//!   of engine events into Yida's parameters. Pure: no SQL, no network.
//! - [`store`]: every SQL statement: SQLite (default) or PostgreSQL, migrations per backend, the
//!   command writer (group commit), claims, attempt records, secrets sealed at rest. Stored
//!   text becomes typed here: delivery statuses and event kinds (else `StoreError::Corrupt`),
//!   instance ids (bound and read as their text, `store::ids`). Uses the engine and
//!   integration types; it must not reach `delivery`, `http` or `console`.
//! - [`telemetry`]: `tracing` logs and the Prometheus registry.
//! - [`delivery`]: policy and sending: the dispatcher loop, lanes, retries, breakers, egress,
//!   request building, the exchange, the signed approval links (`taskUrl`). Asks the store for
//!   what it needs; holds no SQL.
//! - [`http`]: the REST API, `/healthz`, `/readyz`, `/metrics`, the OpenAPI document; validates
//!   input once for both backends. The API's request and response types and every schema of
//!   the document live here (`utoipa` is used nowhere else): the store's rows are converted at
//!   the edge, and domain types sent as they are get their schema from a mirror (`http::schema`).
//! - [`console`]: the web pages under `/console` (task center, task pages, integration center).
//! - [`app`]: builds and runs the service (supervised tasks, shutdown that waits for requests
//!   in flight); tests use it to run the real thing on port 0.
//! - [`demo`], [`bench`], [`cli`]: the demo organisation, `flowhook bench`, and the binary's
//!   commands (`serve`, `migrate`, `sign`, `verify`, `check-receiver`, …).
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
pub mod supervise;
pub mod support;
pub mod telemetry;

pub use app::Application;
