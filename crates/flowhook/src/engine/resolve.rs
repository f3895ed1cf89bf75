//! Resolving approver and cc sources to user ids against a directory snapshot.
//!
//! Pure: the directory is an input. Unknown users are skipped (people leave; a stale id must
//! not block a process), duplicates are removed keeping the first occurrence. A leader is
//! looked for up the manager chain no further than the chain goes: it ends at someone without
//! a manager, or where it comes back to someone already passed (a cycle, which the store
//! refuses now but may hold from before) — so the work is bounded by the chain, whatever the
//! level asked.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::definition::{RoleCatalog, Source};

/// A person of the organisation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Person {
    pub user_id: String,
    pub name: String,
    pub avatar: String,
    pub manager_id: Option<String>,
    /// Admins may terminate and delete any instance, and receive nodes with no approver.
    pub admin: bool,
}

/// What the engine needs to know about the organisation's people.
pub trait Directory: RoleCatalog {
    fn person(&self, user_id: &str) -> Option<&Person>;
    fn role_members(&self, role: &str) -> Vec<String>;
    fn admins(&self) -> Vec<String>;
}

/// An in-memory directory (a snapshot loaded from the store, or built by tests).
#[derive(Debug, Clone, Default)]
pub struct DirectorySnapshot {
    pub people: HashMap<String, Person>,
    /// role id → member ids, in membership order.
    pub roles: BTreeMap<String, Vec<String>>,
}

impl RoleCatalog for DirectorySnapshot {
    fn role_exists(&self, role: &str) -> bool {
        self.roles.contains_key(role)
    }
}

impl Directory for DirectorySnapshot {
    fn person(&self, user_id: &str) -> Option<&Person> {
        self.people.get(user_id)
    }
    fn role_members(&self, role: &str) -> Vec<String> {
        self.roles.get(role).cloned().unwrap_or_default()
    }
    fn admins(&self) -> Vec<String> {
        let mut admins: Vec<String> = self
            .people
            .values()
            .filter(|p| p.admin)
            .map(|p| p.user_id.clone())
            .collect();
        admins.sort();
        admins
    }
}

/// The manager `level` steps above `user`, if the chain goes that far without a cycle.
fn leader(user: &str, level: u32, dir: &dyn Directory) -> Option<String> {
    let mut current = user.to_owned();
    let mut passed = HashSet::from([current.clone()]);
    for _ in 0..level {
        let manager = dir.person(&current)?.manager_id.clone()?;
        if !passed.insert(manager.clone()) {
            return None;
        }
        current = manager;
    }
    Some(current)
}

/// The users named by `sources`, for an instance started by `originator` with `form`.
pub fn resolve(
    sources: &[Source],
    originator: &str,
    form: &BTreeMap<String, Option<String>>,
    dir: &dyn Directory,
) -> Vec<String> {
    let mut out = Vec::new();
    for source in sources {
        match source {
            Source::Users { ids } => out.extend(ids.iter().cloned()),
            Source::Role { role } => out.extend(dir.role_members(role)),
            Source::Originator => out.push(originator.to_owned()),
            Source::Leader { level } => {
                if let Some(leader) = leader(originator, *level, dir) {
                    out.push(leader);
                }
            }
            Source::FormField { field } => {
                if let Some(Some(value)) = form.get(field) {
                    match serde_json::from_str::<Vec<String>>(value) {
                        Ok(ids) => out.extend(ids),
                        Err(_) => out.extend(
                            value
                                .split(',')
                                .map(str::trim)
                                .filter(|s| !s.is_empty())
                                .map(str::to_owned),
                        ),
                    }
                }
            }
        }
    }
    let mut seen = HashSet::new();
    out.retain(|u| dir.person(u).is_some() && seen.insert(u.clone()));
    out
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A directory that counts its look-ups.
    struct Counting {
        snapshot: DirectorySnapshot,
        lookups: Cell<u64>,
    }

    impl RoleCatalog for Counting {
        fn role_exists(&self, role: &str) -> bool {
            self.snapshot.role_exists(role)
        }
    }

    impl Directory for Counting {
        fn person(&self, user_id: &str) -> Option<&Person> {
            self.lookups.set(self.lookups.get() + 1);
            self.snapshot.person(user_id)
        }
        fn role_members(&self, role: &str) -> Vec<String> {
            self.snapshot.role_members(role)
        }
        fn admins(&self) -> Vec<String> {
            self.snapshot.admins()
        }
    }

    fn directory(chain: &[(&str, Option<&str>)]) -> Counting {
        let mut snapshot = DirectorySnapshot::default();
        for (id, manager) in chain {
            snapshot.people.insert(
                id.to_string(),
                Person {
                    user_id: id.to_string(),
                    name: id.to_string(),
                    avatar: String::new(),
                    manager_id: manager.map(str::to_owned),
                    admin: false,
                },
            );
        }
        Counting {
            snapshot,
            lookups: Cell::new(0),
        }
    }

    fn leader_of(dir: &Counting, level: u32) -> Vec<String> {
        resolve(&[Source::Leader { level }], "alice", &BTreeMap::new(), dir)
    }

    #[test]
    fn the_leader_search_stops_at_the_chain_s_end_and_at_a_cycle() {
        let line = directory(&[
            ("alice", Some("bob")),
            ("bob", Some("carol")),
            ("carol", None),
        ]);
        assert_eq!(leader_of(&line, 1), ["bob"]);
        assert_eq!(leader_of(&line, 2), ["carol"]);
        assert!(leader_of(&line, 3).is_empty());
        line.lookups.set(0);
        assert!(leader_of(&line, u32::MAX).is_empty());
        assert!(line.lookups.get() <= 4, "{} look-ups", line.lookups.get());

        // A cycle stored before cycles were refused: no leader beyond it, and no endless walk
        // (level 10⁸ once took 3.2 s per start).
        let cycle = directory(&[("alice", Some("bob")), ("bob", Some("alice"))]);
        assert_eq!(leader_of(&cycle, 1), ["bob"]);
        assert!(leader_of(&cycle, 2).is_empty(), "back at alice");
        cycle.lookups.set(0);
        assert!(leader_of(&cycle, 100_000_000).is_empty());
        assert!(cycle.lookups.get() <= 4, "{} look-ups", cycle.lookups.get());
    }
}
