//! A result that cannot be made durable (the disk is full, the journal cannot be written)
//! stalls the service rather than being lost: it is kept in memory, its input stays in its
//! folder, no new input is taken, and its durable steps are tried again until they succeed.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::analysis::Analysis;
use crate::base::files;
use crate::base::outcome::{Failure, ServiceState};

use crate::input::source;

use super::{Daemon, Input};

/// How often a stalled outcome is tried again.
pub(super) const STALL_RETRY: Duration = Duration::from_secs(2);

/// An outcome that could not be made durable (the disk is full, the journal cannot be
/// written). It is kept in memory, its input stays in the folder, no new input is taken, and
/// the durable steps are tried again every [`STALL_RETRY`] until they succeed: ptxd resumes by
/// itself when space returns, and after a restart the input is simply analyzed again.
pub(super) struct Stalled {
    pub(super) input: Input,
    pub(super) sha: Option<String>,
    pub(super) outcome: Result<Analysis, Failure>,
    pub(super) why: Unwritten,
    pub(super) retry_at: Instant,
}

/// A durable step failed: what, and the state it puts the service in (disk full, or
/// storage error for any other write failure).
#[derive(Debug, Clone)]
pub(super) struct Unwritten {
    pub(super) state: ServiceState,
    pub(super) message: String,
}

impl Unwritten {
    pub(super) fn new(what: &Path, e: &std::io::Error) -> Unwritten {
        Unwritten {
            state: match files::is_disk_full(e) {
                true => ServiceState::DiskFull,
                false => ServiceState::StorageError,
            },
            message: format!("{}: {e}", what.display()),
        }
    }

    /// For the screen and the host: what is wrong and what to do.
    pub(super) fn advice(&self) -> String {
        match self.state {
            ServiceState::DiskFull => format!(
                "No space left on the disk ({}): free space there; images wait in the watch folder and are analyzed when it returns",
                self.message
            ),
            _ => format!(
                "Results cannot be written ({}): check the disk; images wait in the watch folder",
                self.message
            ),
        }
    }
}

impl Daemon {
    /// Start waiting for the disk: say so once (log, host, screen through the status).
    pub(super) fn stall(&mut self, stalled: Stalled) {
        let why = &stalled.why;
        log::error!(
            "{}: result NOT recorded, the input stays in its folder: {}; retrying every {} s",
            stalled.input.name,
            why.message,
            STALL_RETRY.as_secs()
        );
        if let (Some(link), Some(reason)) = (&self.link, why.state.error_reason()) {
            link.send_error(reason, &why.advice());
        }
        self.stalled = Some(stalled);
    }

    /// Try the stalled outcome's durable steps again, when due.
    pub(super) fn retry_stalled(&mut self) {
        let Some(stalled) = self.stalled.as_mut() else { return };
        if Instant::now() < stalled.retry_at {
            return;
        }
        if !source::takeable(&stalled.input.path) {
            log::warn!(
                "{}: removed while waiting for the disk; nothing recorded",
                stalled.input.name
            );
            self.stalled = None;
            return;
        }
        let stalled = self.stalled.take().expect("checked above");
        match self.record(&stalled.input, stalled.sha.clone(), &stalled.outcome) {
            Ok(()) => log::info!("{}: recorded; the disk is writable again, resuming", stalled.input.name),
            Err(why) => {
                self.stalled = Some(Stalled {
                    why,
                    retry_at: Instant::now() + STALL_RETRY,
                    ..stalled
                })
            }
        }
    }
}
