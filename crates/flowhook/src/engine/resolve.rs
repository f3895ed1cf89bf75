//! Resolving approver and cc sources to user ids against a directory snapshot.
//!
//! Pure: the directory is an input. Unknown users are skipped (people leave; a stale id must
//! not block a process), duplicates are removed keeping the first occurrence.

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
                let mut current = originator.to_owned();
                let mut found = true;
                for _ in 0..*level {
                    match dir.person(&current).and_then(|p| p.manager_id.clone()) {
                        Some(m) => current = m,
                        None => {
                            found = false;
                            break;
                        }
                    }
                }
                if found {
                    out.push(current);
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
