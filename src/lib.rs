//! ptxd: pneumothorax triage beside a portable X-ray digitizer. **Not a diagnosis.**
//!
//! One folder per layer. A module may use its own layer and those listed before it, never one
//! listed after it (`tests/it/layers.rs` reads every `crate::` path and holds this order):
//! 1. [`base`]: the result contract's words ([`base::outcome`]), the stop-on-drop thread
//!    ([`base::worker`]), the log, durable writes and digests, timings;
//! 2. [`config`]: how the daemon is set up, parsed once into validated types;
//! 3. [`pixels`]: bytes on disk to an 8-bit grey image (DICOM, PNG, JPEG, TIFF);
//! 4. [`model`]: the shipped models, their input, tract, and which variant this CPU runs;
//! 5. [`analysis`]: one radiograph through the models: lung fields, verdict, findings;
//! 6. [`record`]: a result written down: the journal, the result screen's pixels, DICOM;
//! 7. [`hw`]: GPIO lines and the attached screen, behind embedded-hal traits;
//! 8. [`input`]: where radiographs come from: watch folder, V4L2 capture, DICOM listener;
//! 9. [`sink`]: where a journaled result goes: screen, alert lines, serial link, PACS, MQTT;
//! 10. [`tools`]: `doctor` and `bench`, for the people who install and tune a board;
//! 11. [`daemon`]: the service loop that ties them together.

pub mod base;
pub mod config;
pub mod pixels;
pub mod model;
pub mod analysis;
pub mod record;
pub mod hw;
pub mod input;
pub mod sink;
pub mod tools;
pub mod daemon;
