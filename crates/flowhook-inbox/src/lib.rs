//! flowhook-inbox: the reference receiver of approval-task callbacks — an enterprise's
//! unified task center fed by any number of sources (a Yida tenant, a Flowhook organisation,
//! an in-house system that signs the same way).
//!
//! # Layout
//! - [`config`]: sources (`appType → systemToken`), listen address, database, replay window.
//! - [`http`]: `POST /callbacks/{source}/{action}` (verify with `flowhook-sign`, store, then
//!   answer), `GET /users/{userId}/tasks` (the unified lists) and health.
//! - [`page`]: the lists as a plain HTML page.
//! - [`store`]: receipts (idempotency, arrival order) and the lists; a group-commit writer, so
//!   a 2xx always means "on disk".
//! - [`app`]: build and run, shared by the binary and the tests.

#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod http;
pub mod page;
pub mod store;

pub use app::Application;
