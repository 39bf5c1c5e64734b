//! The `fsm` command-line tool (not built yet).
fn main() {}
