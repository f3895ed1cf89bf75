//! The integration center: what leaves Flowhook — connectors and actions, each organisation's
//! sync strategy, and the rendering of engine events into the Yida parameters stored with each
//! event in the outbox. Sending is `delivery`'s.

pub mod connectors;
pub mod render;
