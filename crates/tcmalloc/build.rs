//! Declares the `loom` cfg (the model-checking build of tests/loom_pagemap.rs).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
