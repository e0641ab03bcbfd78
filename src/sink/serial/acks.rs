//! Which results the host has acknowledged, kept on disk so that a reboot replays exactly
//! what it has not confirmed.

use std::collections::BTreeSet;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::files::{read_state, write_state, StateError};

/// Which results the host has acknowledged, kept on disk (a small JSON file rewritten
/// atomically on each ACK): every seq up to `through`, and the ones in `above`. ACKs may
/// come out of order; `above` folds into `through` as the gaps fill. A seq the journal
/// lacks (see [`AckState::pass_over`]) counts as taken, so that the unbroken run, and the
/// retention of the journal's segments that follows it, does not stop below it for good.
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
        match read_state::<AckState>(path) {
            Ok(state) => Ok(AckState {
                path: path.to_path_buf(),
                ..state.unwrap_or_default()
            }),
            Err(StateError::Io { source, .. }) => Err(source),
            Err(e @ StateError::Damaged { .. }) => Err(io::Error::new(ErrorKind::InvalidData, e.to_string())),
        }
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
        self.save()?;
        Ok(true)
    }

    /// Count as taken the seqs the journal lacks below one of its records: a corrupt line (a
    /// disk fault), or a segment removed before a serial host was configured; either can never
    /// be sent. Returns how many were not taken already.
    pub fn pass_over(&mut self, seqs: std::ops::Range<u64>) -> io::Result<usize> {
        let before = self.above.len();
        for seq in seqs.filter(|&s| s > self.through) {
            self.above.insert(seq);
        }
        let added = self.above.len() - before;
        if added > 0 {
            self.save()?;
        }
        Ok(added)
    }

    /// Fold `above` into `through` as far as it runs unbroken, and write the state durably.
    fn save(&mut self) -> io::Result<()> {
        while self.above.remove(&(self.through + 1)) {
            self.through += 1;
        }
        write_state(&self.path, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_passed_over_fold_into_the_run_and_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks.json");
        let mut acks = AckState::new(&path);
        for seq in [1, 2, 5] {
            assert!(acks.ack(seq).unwrap());
        }
        assert_eq!((acks.through, acks.above.len()), (2, 1));
        // 3 and 4 are lost; 2 is taken already
        assert_eq!(acks.pass_over(2..5).unwrap(), 2);
        assert_eq!((acks.through, acks.above.len()), (5, 0));
        assert_eq!(acks.pass_over(1..4).unwrap(), 0, "nothing new");
        assert_eq!(AckState::open(&path).unwrap().through, 5);
    }
}
