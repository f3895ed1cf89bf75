//! The approval engine: process definitions, approver resolution and the pure state machine.
//!
//! Nothing here performs I/O or reads a clock: the store loads state and a directory snapshot,
//! calls the engine, and writes what it returns — new state and task events — in one
//! transaction. That keeps every rule testable in isolation and replayable.

pub mod condition;
pub mod definition;
pub mod ids;
pub mod limits;
pub mod machine;
pub mod resolve;
#[cfg(test)]
mod tests;

/// Why a command was refused. The instance is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("node `{0}` has no approver and its policy is `error`")]
    NoApprover(String),
    /// Forward or append to someone who already holds (or waits for) a task at the node: they
    /// would have to act twice (DingTalk: 该审批人已存在).
    #[error("`{user}` is already an approver of node `{node}`")]
    AlreadyAssignee { user: String, node: String },
    #[error("inconsistent instance state: {0}")]
    Corrupt(String),
}
