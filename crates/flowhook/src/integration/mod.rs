//! The integration center: what leaves Flowhook. For now, rendering engine events into the
//! Yida parameters stored with each event in the outbox; connectors, the sync strategy and the
//! dispatcher come with the delivery work.

pub mod render;
