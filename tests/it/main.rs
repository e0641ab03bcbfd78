//! ptxd's integration tests, one binary (one link of tract, not one per file): a module per
//! concern, sharing the fixtures of [`common`]. Run one module with
//! `cargo test --test it -- serial_link::`.

mod common;
mod analyze;
mod bombs;
mod daemon;
mod decode_robustness;
mod deploy;
mod dicom_node;
mod dicom_syntaxes;
mod doctor;
mod journal;
mod layers;
mod mqtt;
mod pacs;
mod reference_vectors;
mod render;
mod retention;
mod serial_link;
mod serial_protocol;
mod year;
