//! The matrix runner (being built).
fn main() {}
