//! Rebuilds the crate when a migration is added, changed or removed: `sqlx::migrate!` embeds
//! the migration files at compile time, and Cargo does not otherwise know to look at them.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
