//! `sqlx::migrate!` embeds the migration files at compile time; tell Cargo to rebuild this crate
//! when one of them changes.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
