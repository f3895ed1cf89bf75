//! The ids of the engine's instances and tasks.
//!
//! [`InstanceId`] is a process instance's id (`processInstanceId`): made by the writer for an
//! instance Flowhook runs (a UUID), or given by the caller for one it relays (validated at the
//! API); either way only its text is stored, sent and shown.
//!
//! [`TaskId`] is `{processInstanceId}-t{n}`, the instance's id and the task's ordinal within it
//! (1, 2, … in creation order). One type builds the id (the machine, when it creates a task) and
//! parses it back (the API and the console, which find a task's instance from its id without a
//! lookup). The text is the wire format receivers see as `taskId`: it never changes. Only the
//! canonical form parses, so `id.parse::<TaskId>()?.to_string() == id` always holds.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A process instance's id (`processInstanceId`). Serialised, stored and shown as its text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(String);

impl InstanceId {
    /// The id of an instance Flowhook starts: the text of `uuid`, a fresh UUID the caller
    /// makes (the engine takes no randomness).
    pub fn from_uuid(uuid: uuid::Uuid) -> Self {
        InstanceId(uuid.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An id as given from outside (a path, a form, a relayed event, a stored row): looked up,
/// never trusted to exist.
impl From<String> for InstanceId {
    fn from(id: String) -> Self {
        InstanceId(id)
    }
}

impl From<&str> for InstanceId {
    fn from(id: &str) -> Self {
        InstanceId(id.to_owned())
    }
}

impl FromStr for InstanceId {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(s.into())
    }
}

/// Compared with plain text as its text is.
impl PartialEq<str> for InstanceId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl AsRef<str> for InstanceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A task of an engine instance: its instance and its ordinal within it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskId {
    instance: InstanceId,
    ordinal: u64,
}

impl TaskId {
    const SEPARATOR: &'static str = "-t";

    pub fn new(instance: impl Into<InstanceId>, ordinal: u64) -> Self {
        TaskId {
            instance: instance.into(),
            ordinal,
        }
    }

    /// The instance's id (`processInstanceId`).
    pub fn instance(&self) -> &InstanceId {
        &self.instance
    }

    /// The task's place in its instance's creation order, from 1.
    pub fn ordinal(&self) -> u64 {
        self.ordinal
    }

    /// Creation order of task ids: by ordinal, anything that is not a task id last.
    pub fn order_key(id: &str) -> u64 {
        id.parse::<TaskId>().map_or(u64::MAX, |t| t.ordinal)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.instance, Self::SEPARATOR, self.ordinal)
    }
}

/// Not a task id of the form `{instance}-t{n}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a task id (`{{instance}}-t{{n}}`)")]
pub struct MalformedTaskId(pub String);

impl FromStr for TaskId {
    type Err = MalformedTaskId;

    /// The ordinal is the digits after the last `-t` (instance ids may contain `-t` themselves),
    /// without sign or leading zero; the instance is not empty.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || MalformedTaskId(s.to_owned());
        let (instance, n) = s.rsplit_once(Self::SEPARATOR).ok_or_else(malformed)?;
        let canonical = !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && (n == "0" || !n.starts_with('0'));
        if instance.is_empty() || !canonical {
            return Err(malformed());
        }
        Ok(TaskId {
            instance: instance.into(),
            ordinal: n.parse().map_err(|_| malformed())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_id_is_its_text_everywhere() {
        let id = InstanceId::from_uuid(uuid::Uuid::nil());
        let text = "00000000-0000-0000-0000-000000000000";
        assert_eq!(id.to_string(), text);
        assert_eq!(id.as_str(), text);
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{text}\""));
        let relayed: InstanceId = serde_json::from_str("\"ext-t3\"").unwrap();
        assert_eq!(relayed, "ext-t3".parse::<InstanceId>().unwrap());
        assert_eq!(TaskId::new(relayed.clone(), 7).instance(), &relayed);
    }

    #[test]
    fn round_trips_through_its_text() {
        for (text, instance, ordinal) in [
            ("inst-1-t1", "inst-1", 1),
            ("a-t42", "a", 42),
            // An instance id may itself hold `-t`: the ordinal follows the last one.
            ("ext-t3-t7", "ext-t3", 7),
            ("田-t18446744073709551615", "田", u64::MAX),
        ] {
            let id: TaskId = text.parse().unwrap();
            assert_eq!(
                (id.instance().as_str(), id.ordinal()),
                (instance, ordinal),
                "{text}"
            );
            assert_eq!(id.to_string(), text);
            assert_eq!(TaskId::new(instance, ordinal), id);
        }
    }

    #[test]
    fn refuses_what_is_not_a_task_id() {
        for text in [
            "",
            "inst",
            "inst-1",
            "inst-t",
            "-t1",
            "inst-tx",
            "inst-t1x",
            "inst-t+1",
            "inst-t-1",
            "inst-t 1",
            "inst-t01",
            "inst-t18446744073709551616",
        ] {
            assert_eq!(
                text.parse::<TaskId>(),
                Err(MalformedTaskId(text.to_owned())),
                "{text:?}"
            );
        }
    }

    #[test]
    fn orders_by_ordinal_not_by_text() {
        let mut ids = ["i-t10", "i-t2", "junk", "i-t1"];
        ids.sort_by_key(|id| TaskId::order_key(id));
        assert_eq!(ids, ["i-t1", "i-t2", "i-t10", "junk"]);
    }
}
