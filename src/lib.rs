//! ptxd: pneumothorax triage beside a portable X-ray digitizer.
//!
//! Layers, each depending only on those above it in this list:
//! - [`manifest`]: the models' facts (`models/manifest.toml`), parsed once into validated types;
//! - [`preprocess`]: a grey radiograph to the exact tensor the models were trained on;
//! - [`infer`]: the int8 ONNX models, checked against the manifest and run through tract.
//!
//! The binary (`src/main.rs`) is a thin command line over these.

pub mod infer;
pub mod manifest;
pub mod preprocess;
