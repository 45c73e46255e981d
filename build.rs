//! `sqlx::migrate!` embeds the `migrations/` folder at compile time; without this, adding a
//! migration and nothing else would not rebuild the binaries, and they would run without it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
