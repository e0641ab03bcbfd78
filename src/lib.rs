//! ptxd: pneumothorax triage beside a portable X-ray digitizer. **Not a diagnosis.**
//!
//! Layers, each depending only on those above it in this list:
//! - [`outcome`]: the result contract's words (verdict, needs_attention, error kinds);
//! - [`manifest`], [`config`]: what the models are and how the daemon is set up, parsed once;
//! - [`decode`] (with [`codestream`], what compressed frames declare, and [`jpeg12`]
//!   for the one JPEG dicom-rs cannot read), [`preprocess`], [`infer`], [`lungs`],
//!   [`findings`]: one radiograph's way through the models, put together by [`analysis`];
//!   [`reference`](mod@reference): onnxruntime's outputs that tract must reproduce, and [`variant`]: which
//!   shipped variant this CPU runs;
//! - [`render`], [`journal`], [`source`]: drawing, recording and receiving results;
//! - [`sink`] and the sinks a journaled result goes to: [`screen`] (the display),
//!   [`alert`] (LED, buzzer), [`report`] (the serial link, framing `journal` records);
//! - [`daemon`]: the service loop that ties them together; [`logging`] for its messages;
//! - [`display`] (one file per backend) and [`gpio`] (lines for the alert, the panel and
//!   `doctor`): the hardware the screen and the alert drive;
//! - [`worker`]: the stop-on-drop thread that the watch folder, the link, the capture
//!   device and the alert each run on (it uses only [`logging`]), and [`timings`]: the
//!   median of repeated runs that every speed figure is taken as (it depends on nothing).

pub mod alert;
pub mod analysis;
pub mod bench;
pub mod capture;
pub mod codestream;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod dicom_result;
pub mod dimse;
pub mod display;
pub mod doctor;
pub mod findings;
pub mod gpio;
pub mod infer;
pub mod journal;
pub mod jpeg12;
pub mod logging;
pub mod lungs;
pub mod manifest;
pub mod outcome;
pub mod pacs;
pub mod preprocess;
pub mod receive;
pub mod reference;
pub mod render;
pub mod report;
pub mod screen;
pub mod sink;
pub mod source;
pub mod timings;
pub mod variant;
pub mod worker;
