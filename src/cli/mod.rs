//! The binary's subcommands, one file each; `main.rs` parses the command line and hands over.
//! They use the library's public API only, like any other program would.

pub mod analyze;
pub mod bench;
pub mod check_models;
