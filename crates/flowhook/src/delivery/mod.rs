//! Delivery: getting every outbox event to its actions, signed, in order per instance, never lost.
//!
//! - [`retry`]: the pure retry policy.
//! - [`breaker`]: a circuit breaker per endpoint.
//! - [`egress`]: which addresses deliveries may go to, checked on the resolved address.
//! - [`request`]: building the Yida-compatible request of one attempt, with secrets masked for the log.
//! - [`dispatcher`]: claims due deliveries under a lease, sends them (no transaction held across
//!   HTTP), records each attempt with group commit, schedules retries.
//! - [`retention`]: purges old attempt bodies from the delivery log.
//! - [`check`]: the receiver check: marked probe requests, sent as deliveries are, graded into
//!   a scorecard.

pub mod breaker;
pub mod check;
pub mod dispatcher;
pub mod egress;
pub mod exchange;
pub mod links;
pub mod request;
pub mod retention;
pub mod retry;
