// The migrations are embedded by `sqlx::migrate!`; without this, adding or editing only a
// migration file would not rebuild the binary, which would then run without it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
