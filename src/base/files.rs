//! Files that survive a power cut, and the digests that name them.
//!
//! Every result file, cursor and ACK store is written through [`write_durably`], so a crash
//! leaves either the old file or the new one, never half of either; the cursors and the ACK
//! store are small JSON files read and written by [`read_state`] and [`write_state`].
//! [`sha256_file`] names inputs and model files by content (the journal's duplicate check,
//! the manifest's check).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Why a state file (a cursor, the ACK store) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{}: unreadable ({source})", path.display())]
    Damaged { path: PathBuf, source: serde_json::Error },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// The JSON state file at `path`: None when there is none yet. One that cannot be read or
/// parsed is an error, never a fresh start: an output that silently started over would
/// resend, or skip, a whole journal.
pub fn read_state<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Damaged {
                path: path.into(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io {
            path: path.into(),
            source,
        }),
    }
}

/// `state` as JSON at `path`, written durably.
pub fn write_state<T: Serialize>(path: &Path, state: &T) -> std::io::Result<()> {
    write_durably(path, &serde_json::to_vec(state).expect("state files serialize"))
}

/// fsync the directory holding `path`, so that a rename or a new file in it survives a crash.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

/// Write a whole file so that after a crash it is either absent or complete: write a
/// temporary file beside it, fsync, rename over, fsync the directory.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
    ));
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        // a half-written temporary on a full disk would keep it full
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_parent(path)
}

/// Whether a write failed for want of space (a full disk or a spent quota): the one failure
/// ptxd waits out rather than logs and passes over.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// The current time as the journal and the log write it (UTC, whole seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// The sha256 of a file, streamed (a large file is never held in memory), as hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// The sha256 of bytes already in memory, as hex (an input's name in the journal).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
