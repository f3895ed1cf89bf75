//! Test kit of the Flowhook workspace: what the test suites of `flowhook` and `flowhook-inbox`
//! share, so that neither keeps a copy. A dev-dependency only; nothing here ships.
//!
//! - [`db`]: a database of its own for each test — a SQLite file in a temporary directory, or a
//!   fresh PostgreSQL database on the server that `FLOWHOOK_TEST_POSTGRES` names — dropped with
//!   the test.
//! - [`eventually`](mod@eventually): waits, within a bound, for what the system under test
//!   reaches on its own time, and fails naming what it waited for and what it last saw.
//! - [`serve`]: a server under test on a task of its own, stopped when the test says.
//! - [`process`]: a server process under test, killed when its test ends, even by a panic.
//!
//! It knows neither crate's configuration or application: each suite builds those from the
//! database URL itself, and hands [`Serving`] its application's `run_until_stopped`.

pub mod db;
pub mod eventually;
pub mod process;
pub mod serve;

pub use db::{TestDb, POSTGRES_ENV};
pub use eventually::{eventually, Outcome};
pub use process::KillOnDrop;
pub use serve::{Serving, Shutdown};
