//! The result contract, version 2: the words every surface (`analyze --json`, the journal,
//! serial frames, the log and the screen) uses for what became of one image.
//! `docs/contract.md` is its page; the tests check that page's examples against this code.
//!
//! Two decisions drive it:
//! - **The verdict is the primary field and is never null.** An image that could not be
//!   analyzed has the verdict `not_analyzed`, not a missing one, so no script can mistake
//!   "nothing known" for "clear".
//! - **One boolean a script may act on: `needs_attention`.** It is false for `negative` only:
//!   the model flagged nothing, so ptxd asks for no urgent read. That never clears a film (at
//!   the shipped alarm budget the model misses some pneumothoraces). Version 1's `pneumothorax` field read `false` for
//!   indeterminate, refused and failed images, and a host that acted on it filed them as
//!   clear; version 2 removes it rather than change its meaning under the same name.

use serde::{Deserialize, Serialize};

/// What ptxd concluded about an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Positive,
    Indeterminate,
    Negative,
    /// The lung-field check refused the image: no classifier verdict, no alarm.
    NotChestRadiograph,
    /// The image could not be analyzed (see the record's `error_kind`).
    NotAnalyzed,
}

impl Verdict {
    /// The contract's word for it (`crate::base::outcome`), the same in logs, JSON and frames.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Positive => "positive",
            Verdict::Indeterminate => "indeterminate",
            Verdict::Negative => "negative",
            Verdict::NotChestRadiograph => "not_chest_radiograph",
            Verdict::NotAnalyzed => "not_analyzed",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The contract's version: `v` in every `analyze --json` line, journal record and frame.
pub const VERSION: u32 = 2;

/// The verdict of an input no model read: `not_chest_radiograph` when it was refused as
/// one before any model ran (its DICOM header says CT, MR, a report...), else
/// `not_analyzed`.
pub fn failure_verdict(kind: ErrorKind) -> Verdict {
    match kind {
        ErrorKind::NotChest => Verdict::NotChestRadiograph,
        _ => Verdict::NotAnalyzed,
    }
}

/// Whether a reader must look at the image (or the digitizer must send it again): everything
/// but a `negative` verdict.
pub fn needs_attention(verdict: Verdict) -> bool {
    verdict != Verdict::Negative
}

/// Why an image got no pneumothorax reading, stable for scripts to act on (the message
/// beside it is for people and may change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Damaged, truncated or unreadable image data: send the image again.
    Decode,
    /// A valid file of a format or encoding ptxd does not read (for example a DICOM
    /// transfer syntax, a multi-frame object, an unusual pixel layout): export it otherwise.
    Unsupported,
    /// Larger than `input.max_pixels` (or a file bigger than any such image): export it
    /// smaller or raise the limit.
    TooLarge,
    /// The file could not be read or an output could not be written: check the disk.
    Io,
    /// Read, and refused as not a frontal chest radiograph (the verdict
    /// `not_chest_radiograph`): send a frontal chest film.
    NotChest,
    /// ptxd itself failed (a model that would not run): report it with the log.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Decode => "decode",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Io => "io",
            ErrorKind::NotChest => "not_chest",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the service is doing, as the idle screen, systemd's status line and the serial
/// `status` frame say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceState {
    /// Serving: watching the folder (and streaming from the capture device, if any).
    #[default]
    Ready,
    /// The capture device failed or was unplugged and is being reopened; files are still served.
    CaptureLost,
    /// A result could not be written: no space left on the disk. Its input waits in the
    /// watch folder with every later one, and ptxd retries by itself until space returns.
    DiskFull,
    /// The journal (or an output file) could not be written for another reason; handled as
    /// [`ServiceState::DiskFull`] is.
    StorageError,
}

impl ServiceState {
    /// The serial protocol's word (`docs/serial-protocol.md`).
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Ready => "ready",
            ServiceState::CaptureLost => "capture-lost",
            ServiceState::DiskFull => "disk-full",
            ServiceState::StorageError => "storage-error",
        }
    }

    /// The idle screen's banner and systemd's status line.
    pub fn banner(self) -> &'static str {
        match self {
            ServiceState::Ready => "READY",
            ServiceState::CaptureLost => "CAPTURE LOST",
            ServiceState::DiskFull => "DISK FULL",
            ServiceState::StorageError => "CANNOT WRITE RESULTS",
        }
    }

    /// The `error` frame that says this state began (the same word); none for `Ready`.
    pub fn error_reason(self) -> Option<ErrorReason> {
        match self {
            ServiceState::Ready => None,
            ServiceState::CaptureLost => Some(ErrorReason::CaptureLost),
            ServiceState::DiskFull => Some(ErrorReason::DiskFull),
            ServiceState::StorageError => Some(ErrorReason::StorageError),
        }
    }

    /// Nothing is being analyzed until it clears: the screen says so over any result.
    pub fn stalls(self) -> bool {
        matches!(self, ServiceState::DiskFull | ServiceState::StorageError)
    }
}

/// Why ptxd sent an `error` frame: a host line it could not take, or a device failure
/// (`docs/serial-protocol.md`'s table, in the same order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReason {
    /// A host line that is not a command.
    BadCommand,
    /// `ACK`/`NAK`/`REPLAY` for a seq ptxd has not sent or does not hold.
    UnknownSeq,
    /// `TRIGGER` with no capture device configured, or one that is not streaming.
    NoCapture,
    /// The capture device failed or was unplugged.
    CaptureLost,
    /// A result could not be written: no space left.
    DiskFull,
    /// A result could not be written for another reason.
    StorageError,
}

impl ErrorReason {
    pub const ALL: [ErrorReason; 6] = [
        ErrorReason::BadCommand,
        ErrorReason::UnknownSeq,
        ErrorReason::NoCapture,
        ErrorReason::CaptureLost,
        ErrorReason::DiskFull,
        ErrorReason::StorageError,
    ];

    /// The serial protocol's word.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::BadCommand => "bad-command",
            ErrorReason::UnknownSeq => "unknown-seq",
            ErrorReason::NoCapture => "no-capture",
            // the states' words: a host reads the same word in `error` and in `status`
            ErrorReason::CaptureLost => ServiceState::CaptureLost.as_str(),
            ErrorReason::DiskFull => ServiceState::DiskFull.as_str(),
            ErrorReason::StorageError => ServiceState::StorageError.as_str(),
        }
    }
}

impl std::fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an input came from, carried with it rather than guessed from its name: the watch
/// folder (a file someone or something dropped there) or the capture device (a frame the
/// capture thread chose and spooled into its own folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Watch,
    Capture,
}

impl Origin {
    /// The record's `source`: `watch:<name>` or `capture:<name>`.
    pub fn source(self, name: &str) -> String {
        match self {
            Origin::Watch => format!("watch:{name}"),
            Origin::Capture => format!("capture:{name}"),
        }
    }
}

/// An image that got no pneumothorax reading: the kind for scripts, the message (which names
/// the file or frame) for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The message of a caught panic (for the failure it becomes).
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_panic_keeps_its_message() {
        // the payload must be unboxed: a Box<dyn Any> is itself an Any, of the wrong type
        let panic = std::panic::catch_unwind(|| panic!("index {} out of bounds", 7)).unwrap_err();
        assert_eq!(panic_text(&*panic), "index 7 out of bounds");
        let panic = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_text(&*panic), "static");
    }

    #[test]
    fn only_a_negative_asks_for_no_urgent_read() {
        for v in [
            Verdict::Positive,
            Verdict::Indeterminate,
            Verdict::NotChestRadiograph,
            Verdict::NotAnalyzed,
        ] {
            assert!(needs_attention(v), "{v:?}");
        }
        assert!(!needs_attention(Verdict::Negative));
    }

    #[test]
    fn kinds_serialise_as_their_names() {
        for k in [
            ErrorKind::Decode,
            ErrorKind::Unsupported,
            ErrorKind::TooLarge,
            ErrorKind::Io,
            ErrorKind::NotChest,
            ErrorKind::Internal,
        ] {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
    }
}
