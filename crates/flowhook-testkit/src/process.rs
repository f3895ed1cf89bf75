//! A server process under test that cannot outlive its test: a [`Child`] killed (SIGKILL) and
//! reaped when dropped, unless it has already exited. A test that fails half-way (a panic before
//! its own `kill` or `stop`) leaves no `flowhook serve` running behind it, holding its port, its
//! database or a file descriptor the test runner waits on.

use std::ops::{Deref, DerefMut};
use std::process::Child;

/// A child process, killed and reaped on drop if still running.
#[derive(Debug)]
pub struct KillOnDrop(Child);

impl KillOnDrop {
    pub fn new(child: Child) -> Self {
        KillOnDrop(child)
    }
}

impl From<Child> for KillOnDrop {
    fn from(child: Child) -> Self {
        KillOnDrop(child)
    }
}

impl Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn a_running_child_is_killed_and_reaped_on_drop() {
        let child = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .expect("sleep starts");
        let pid = child.id();
        drop(KillOnDrop::new(child));
        // Reaped: no process of that id is left (not even a zombie).
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still there after drop"
        );
    }

    #[test]
    fn an_exited_child_is_left_alone() {
        let mut child = KillOnDrop::new(Command::new("true").spawn().expect("true starts"));
        assert!(child.wait().expect("waits").success());
        drop(child);
    }
}
