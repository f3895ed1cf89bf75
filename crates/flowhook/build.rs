//! Rebuilds the crate when a migration is added or edited: `sqlx::migrate!` embeds the files of
//! `migrations/` at compile time, and Cargo does not otherwise watch them (a new migration
//! would be missing from the binary until some Rust source changed).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
