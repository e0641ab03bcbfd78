//! Which results the host has acknowledged, kept on disk so that a reboot replays exactly
//! what it has not confirmed.

use std::collections::BTreeSet;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::files::write_durably;

/// Which results the host has acknowledged, kept on disk (a small JSON file rewritten
/// atomically on each ACK): every seq up to `through`, and the ones in `above`. ACKs may
/// come out of order; `above` folds into `through` as the gaps fill.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AckState {
    pub through: u64,
    pub above: BTreeSet<u64>,
    #[serde(skip)]
    path: PathBuf,
}

impl AckState {
    /// Load the state, or start empty when the file does not exist yet. A file that cannot
    /// be parsed is an error (resending everything silently would flood the host).
    pub fn open(path: &Path) -> io::Result<AckState> {
        let mut state = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<AckState>(&bytes)
                .map_err(|e| io::Error::new(ErrorKind::InvalidData, format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == ErrorKind::NotFound => AckState::new(path),
            Err(e) => return Err(e),
        };
        state.path = path.to_path_buf();
        Ok(state)
    }

    /// No ACKs yet, to be kept at `path`.
    pub fn new(path: &Path) -> AckState {
        AckState {
            path: path.to_path_buf(),
            ..AckState::default()
        }
    }

    pub fn is_acked(&self, seq: u64) -> bool {
        seq <= self.through || self.above.contains(&seq)
    }

    /// Record an ACK durably. Returns false when it was already acknowledged.
    pub fn ack(&mut self, seq: u64) -> io::Result<bool> {
        if self.is_acked(seq) {
            return Ok(false);
        }
        self.above.insert(seq);
        while self.above.remove(&(self.through + 1)) {
            self.through += 1;
        }
        let json = serde_json::to_vec(self).expect("ack state serialises");
        write_durably(&self.path, &json)?;
        Ok(true)
    }
}
