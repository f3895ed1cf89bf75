//! Integration tests: the real application on port 0, real databases (SQLite always,
//! PostgreSQL when `FLOWHOOK_TEST_POSTGRES` is set), real HTTP.

mod check;
mod connectors;
mod console;
mod crash;
mod delivery;
mod exchange;
mod fidelity;
mod fuzz;
mod helpers;
mod ingest;
mod limits;
mod operations;
mod receiver;
mod secrets;
mod storage;
mod task_center;
mod tenancy;
