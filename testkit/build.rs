//! `sqlx::migrate!` embeds `../migrations` at compile time; without this, a new migration alone
//! would not rebuild the test support, and tests would clone a template without it.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
