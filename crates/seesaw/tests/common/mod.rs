//! Running the `seesaw` binary from the CLI test crates.

// Each test crate that includes this module uses part of it.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `seesaw args...` with backtraces on, so that a panic shows where.
pub fn seesaw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seesaw"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the seesaw binary runs")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
