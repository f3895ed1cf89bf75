//! # flowhook-sign
//!
//! Everything a receiver of Flowhook's (or Yida's) approval-task callbacks needs, and nothing
//! else: no I/O, no async, a handful of small dependencies.
//!
//! - [`yida`]: the Yida MD5 signature — values in Java `String.CASE_INSENSITIVE_ORDER` of their
//!   keys ([`order`]), then the app's systemToken, MD5, lower-case hex.
//! - [`webhooks`]: the Standard Webhooks HMAC-SHA256 signature, with key rotation.
//! - [`event`]: the five task events (`task.created`, `task.finished`, `task.cancelled`,
//!   `task.deleted`, `task.cc`) as typed payloads with Yida's parameter names.
//! - [`wire`]: the parameters as a form or JSON body.
//! - [`receive`]: a raw request in, a verified typed event out, or the precise reason why not.
//!
//! ## Layout
//! The sender (Flowhook) uses `event` → `yida` → `wire`; a receiver uses `receive`, which runs
//! the same pieces backwards. `order` is the one place where Java's key order is defined.
//!
//! ## Example: sign as Flowhook does, verify as a receiver does
//! ```
//! use std::collections::HashMap;
//! use flowhook_sign::event::{EventKind, TaskEnded, TaskEvent};
//! use flowhook_sign::receive::{RawRequest, Verifier};
//! use flowhook_sign::wire::{encode, BodyEncoding};
//!
//! let event = TaskEvent::Finished(TaskEnded {
//!     app_type: "APP_X".into(), corp_id: "ding1".into(), task_id: "t1".into(),
//!     actual_work_id: "u1".into(), form_inst_id: "f1".into() });
//! let sent_at = 1_700_000_000_000;
//! let body = encode(&event.to_signed_params(sent_at, "SYSTEM_TOKEN"), BodyEncoding::Form);
//!
//! let tokens = HashMap::from([("APP_X".to_string(), "SYSTEM_TOKEN".to_string())]);
//! let request = RawRequest { content_type: None, body: body.as_bytes(), headers: &[] };
//! let verified = Verifier::new(&tokens).verify(EventKind::Finished, &request, sent_at + 50).unwrap();
//! assert_eq!(verified.event, event);
//! ```
#![forbid(unsafe_code)]

pub mod event;
pub mod order;
pub mod receive;
pub mod webhooks;
pub mod wire;
pub mod yida;
