//! The PACS outbox: the DICOM results ([`crate::record::dicom_result`]) stored to the clinic's PACS
//! by C-STORE, driven from the journal as the serial link is.
//!
//! Decisions:
//! - The journal is the queue. A cursor file (`pacs.json` beside the journal) holds the last
//!   seq whose objects the PACS confirmed; it is written durably after each confirmation. On
//!   start the outbox reads the journal from the cursor on, so a restart, a crash or a power
//!   cut resends what was not confirmed and nothing else.
//! - In journal order, one record's objects after the other's: a record is never passed
//!   while an earlier one is unconfirmed.
//! - Nothing is stored twice: the objects' SOP Instance UIDs are stable per input, so an
//!   object resent after a crash between the PACS's answer and the cursor's write is the
//!   same instance, which a PACS keeps once.
//! - A PACS that is down, busy, or answers an error that may pass (out of resources, a
//!   processing failure, an association it rejects) is retried with backoff (1 s, doubling up
//!   to `retry_max_ms`), forever: the results wait in `output.dicom_dir` and in the journal,
//!   and one log line says so per outage, not one per try.
//! - A PACS that refuses one object for good (its status says the object itself is wrong:
//!   0xA9xx, 0xCxxx, 0x0122, or it accepts no presentation context for the object's SOP
//!   class) would refuse it again on every try, holding back every later result; so would
//!   a result file that cannot be read or encoded here. Such an object is set aside: logged as an error, with the PACS's own reason, and listed in the
//!   cursor file (`refused`), written in the same durable write as the cursor that passes
//!   it; then the outbox goes on. The file is still in `output.dicom_dir`; `ptxd doctor`
//!   counts what was set aside, and removing the cursor file resends everything (stable
//!   UIDs: nothing is kept twice).
//! - Warnings (status 0xB000, 0xB006, 0xB007: stored, with coercion) count as stored.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dicom_core::value::PrimitiveValue;
use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use dicom_transfer_syntax_registry::entries::{EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN};
use dicom_ul::pdu::{AbortRQSource, PDataValueType};
use dicom_ul::{ClientAssociation, ClientAssociationOptions, Pdu};
use thiserror::Error;

use crate::base::files::{read_state, write_state, StateError};
use crate::base::worker::{nap, Backoff, Worker};
use crate::config::{Config, PacsConfig};
use crate::input::dimse::{self, UnreadableCommand};
use crate::record::journal::{JournalError, Position, Records};
use crate::record::retention::result_seq;

/// Why the PACS could not be reached or talked to, or the outbox's own files not used.
#[derive(Debug, Error)]
pub enum PacsError {
    #[error("{}: unreadable ({source}); fix or remove it to resend every result", path.display())]
    CursorUnreadable { path: PathBuf, source: serde_json::Error },
    #[error("{}: {source}", path.display())]
    File { path: PathBuf, source: std::io::Error },
    #[error("{ae_title} at {address}: {source}")]
    Associate {
        ae_title: String,
        address: String,
        source: Box<dicom_ul::association::Error>,
    },
    #[error("cannot send {what}: {source}")]
    Send {
        what: &'static str,
        source: Box<dicom_ul::association::Error>,
    },
    #[error("cannot send the data set: {0}")]
    SendData(#[source] std::io::Error),
    #[error("no answer: {0}")]
    NoAnswer(#[source] Box<dicom_ul::association::Error>),
    #[error(transparent)]
    Command(#[from] UnreadableCommand),
    #[error("an answer without a Status")]
    NoStatus,
    #[error("the PACS aborted ({0:?})")]
    Aborted(AbortRQSource),
    /// A PDU other than an answer or an abort (its short description).
    #[error("unexpected {0}")]
    Unexpected(String),
    #[error("C-ECHO answered status 0x{0:04X}")]
    EchoStatus(u16),
    /// A C-STORE answered with a failure status; `comment` is the PACS's Error Comment.
    #[error("{ae_title} answered status 0x{status:04X}{} for {}", quoted(comment), file.display())]
    StoreStatus {
        ae_title: String,
        status: u16,
        comment: String,
        file: PathBuf,
    },
    #[error("cannot read the journal: {0}")]
    Journal(#[source] JournalError),
    #[error("cannot start the PACS outbox: {0}")]
    Thread(#[source] std::io::Error),
}

/// `: "comment"`, or nothing for an empty comment.
fn quoted(comment: &str) -> String {
    match comment.is_empty() {
        true => String::new(),
        false => format!(": \"{comment}\""),
    }
}

/// What the PACS confirmed, kept on disk.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// The last journal seq whose DICOM objects are all stored or set aside (0: none yet).
    pub stored_through: u64,
    /// The objects the PACS refused for good, set aside so the later ones could go on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refused>,
}

/// An object the PACS refused for good, as the cursor file lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Refused {
    /// Its journal record.
    pub seq: u64,
    /// Its file in `output.dicom_dir`.
    pub file: PathBuf,
    /// Why, in the PACS's words where it gave some.
    pub reason: String,
}

/// Why a C-STORE did not store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The PACS could not be reached or could not take it now: try again later.
    #[error(transparent)]
    Unavailable(#[from] PacsError),
    /// This object will not be stored, whenever it is sent: the PACS refused it, or its
    /// file cannot be read or encoded here. The reason as the cursor file keeps it.
    #[error("{0}")]
    Refused(String),
}

/// A C-STORE failure status that says the object itself is wrong for this PACS, so that
/// sending it again cannot help (PS3.4 B.2.3, PS3.7 C): "data set does not match SOP
/// class" (0xA9xx), "cannot understand" (0xCxxx), "SOP class not supported" (0x0122). Out
/// of resources (0xA7xx), processing failure (0x0110) and the rest may pass.
pub fn refuses_for_good(status: u16) -> bool {
    matches!(status, 0xA900..=0xA9FF | 0xC000..=0xCFFF | 0x0122)
}

impl Cursor {
    /// The cursor at `path`; a missing file is a start from the beginning, an unreadable
    /// one an error (it must not silently resend or skip a whole journal).
    /// Whether the PACS has yet to confirm (or a person to settle) result `seq`'s objects.
    pub fn owes(&self, seq: u64) -> bool {
        seq > self.stored_through || self.refused.iter().any(|r| r.seq == seq)
    }

    pub fn load(path: &Path) -> Result<Cursor, PacsError> {
        read_state(path).map(Option::unwrap_or_default).map_err(|e| match e {
            StateError::Damaged { path, source } => PacsError::CursorUnreadable { path, source },
            StateError::Io { path, source } => PacsError::File { path, source },
        })
    }

    fn save(&self, path: &Path) -> std::io::Result<()> {
        write_state(path, self)
    }
}

/// The DICOM result files the PACS has yet to confirm, as its cursor says when read: what
/// retention must keep whatever its age. A cursor that cannot be read keeps them all.
pub struct Unconfirmed {
    dir: PathBuf,
    cursor: Option<Cursor>,
}

impl Unconfirmed {
    /// None when no PACS is configured (nothing is owed to one).
    pub fn now(config: &Config) -> Option<Unconfirmed> {
        match (&config.pacs, &config.output.dicom_dir) {
            (Some(_), Some(dir)) => Some(Unconfirmed {
                dir: dir.clone(),
                cursor: Cursor::load(&config.pacs_cursor()).ok(),
            }),
            _ => None,
        }
    }

    /// Whether `file` is a DICOM result the PACS has yet to confirm.
    pub fn holds(&self, file: &Path) -> bool {
        if !file.starts_with(&self.dir) {
            return false;
        }
        match (&self.cursor, result_seq(file)) {
            (Some(cursor), Some(seq)) => cursor.owes(seq),
            _ => true,
        }
    }
}

/// The DICOM result files of journal record `seq` in `dir` (`<seq>-<name>.sr.dcm` and
/// `.sc.dcm`), the report first.
pub fn result_files(dir: &Path, seq: u64) -> std::io::Result<Vec<PathBuf>> {
    let prefix = format!("{seq:08}-");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with(&prefix) && (name.ends_with(".sr.dcm") || name.ends_with(".sc.dcm"))
        })
        .collect();
    // ".sr.dcm" after ".sc.dcm" in byte order: reversed, the report goes first
    files.sort_by(|a, b| b.cmp(a));
    Ok(files)
}

fn associate(config: &PacsConfig, abstract_syntax: &str) -> Result<ClientAssociation<TcpStream>, PacsError> {
    let timeout = Duration::from_secs(config.timeout_s.get());
    ClientAssociationOptions::new()
        .calling_ae_title(config.calling_ae_title.as_str())
        .called_ae_title(config.ae_title.as_str())
        .with_presentation_context(
            abstract_syntax,
            vec![EXPLICIT_VR_LITTLE_ENDIAN.uid(), IMPLICIT_VR_LITTLE_ENDIAN.uid()],
        )
        .connection_timeout(timeout)
        .read_timeout(timeout)
        .write_timeout(timeout)
        .establish_with(&format!("{}@{}", config.ae_title, config.address))
        .map_err(|source| PacsError::Associate {
            ae_title: config.ae_title.to_string(),
            address: config.address.to_string(),
            source: Box::new(source),
        })
}

/// The Status of the DIMSE response that comes next on `association`, and its Error
/// Comment (empty when it gave none).
fn response_status(association: &mut ClientAssociation<TcpStream>) -> Result<(u16, String), PacsError> {
    loop {
        match association.receive().map_err(|e| PacsError::NoAnswer(Box::new(e)))? {
            Pdu::PData { data } => {
                if let Some(value) = data.into_iter().find(|v| v.value_type == PDataValueType::Command) {
                    let response = dimse::read_command(&value.data)?;
                    let status = dimse::status(&response).ok_or(PacsError::NoStatus)?;
                    return Ok((status, dimse::text(&response, tags::ERROR_COMMENT)));
                }
            }
            Pdu::AbortRQ { source } => return Err(PacsError::Aborted(source)),
            other => return Err(PacsError::Unexpected(other.short_description().to_string())),
        }
    }
}

/// C-ECHO: is the PACS there and does it accept us?
pub fn echo(config: &PacsConfig) -> Result<(), PacsError> {
    let mut association = associate(config, uids::VERIFICATION)?;
    let context = association.presentation_contexts()[0].id;
    let command = dimse::command([
        (
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(uids::VERIFICATION),
        ),
        (tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(dimse::C_ECHO_RQ)),
        (tags::MESSAGE_ID, VR::US, PrimitiveValue::from(1u16)),
        (
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(dimse::NO_DATA_SET),
        ),
    ]);
    association
        .send(&dimse::command_pdu(context, &command))
        .map_err(|source| PacsError::Send {
            what: "C-ECHO",
            source: Box::new(source),
        })?;
    let (status, _) = response_status(&mut association)?;
    let _ = association.release();
    match status {
        0 => Ok(()),
        s => Err(PacsError::EchoStatus(s)),
    }
}

/// C-STORE one of our result files; Ok when the PACS kept it (success or a warning).
pub fn store(config: &PacsConfig, file: &Path) -> Result<(), StoreError> {
    // our own file, written durably: unreadable now, unreadable on every try
    let object = dicom_object::open_file(file)
        .map_err(|e| StoreError::Refused(format!("{}: unreadable here: {e}", file.display())))?;
    let class = object
        .meta()
        .media_storage_sop_class_uid()
        .trim_end_matches('\0')
        .to_string();
    let instance = object
        .meta()
        .media_storage_sop_instance_uid()
        .trim_end_matches('\0')
        .to_string();
    let mut association = associate(config, &class)?;
    let context = association
        .presentation_contexts()
        .iter()
        .find(|pc| pc.reason == dicom_ul::pdu::PresentationContextResultReason::Acceptance)
        .cloned()
        .ok_or_else(|| {
            StoreError::Refused(format!(
                "{} does not accept SOP class {class} ({})",
                config.ae_title,
                file.display()
            ))
        })?;
    let syntax = if context.transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN.uid() {
        IMPLICIT_VR_LITTLE_ENDIAN.erased()
    } else {
        EXPLICIT_VR_LITTLE_ENDIAN.erased()
    };
    let mut data_set = Vec::new();
    object
        .write_dataset_with_ts(&mut data_set, &syntax)
        .map_err(|e| StoreError::Refused(format!("{}: cannot encode it: {e}", file.display())))?;
    let command = dimse::command([
        (
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(class.as_str()),
        ),
        (tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(dimse::C_STORE_RQ)),
        (tags::MESSAGE_ID, VR::US, PrimitiveValue::from(1u16)),
        (tags::PRIORITY, VR::US, PrimitiveValue::from(0u16)),
        (
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(dimse::DATA_SET),
        ),
        (
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(instance.as_str()),
        ),
    ]);
    association
        .send(&dimse::command_pdu(context.id, &command))
        .map_err(|source| PacsError::Send {
            what: "C-STORE",
            source: Box::new(source),
        })?;
    {
        // the writer splits the data set into P-DATA PDUs of the agreed size
        use std::io::Write;
        let mut writer = association.send_pdata(context.id);
        writer.write_all(&data_set).map_err(PacsError::SendData)?;
        writer.finish().map_err(PacsError::SendData)?;
    }
    let (status, comment) = response_status(&mut association)?;
    let _ = association.release();
    if matches!(status, 0x0000 | 0xB000 | 0xB006 | 0xB007) {
        return Ok(());
    }
    let e = PacsError::StoreStatus {
        ae_title: config.ae_title.to_string(),
        status,
        comment,
        file: file.into(),
    };
    Err(match refuses_for_good(status) {
        true => StoreError::Refused(e.to_string()),
        false => StoreError::Unavailable(e),
    })
}

/// The running outbox; dropping it stops it (after the object in hand).
pub struct Outbox {
    _worker: Worker,
}

impl Outbox {
    /// Store the DICOM results in `dicom_dir` of every journal record after the cursor at
    /// `cursor`, in order, as they come.
    pub fn start(
        config: PacsConfig,
        journal: PathBuf,
        dicom_dir: PathBuf,
        cursor: PathBuf,
    ) -> Result<Outbox, PacsError> {
        let mut at = Cursor::load(&cursor)?;
        let worker = Worker::spawn("pacs-outbox", move |stop| {
            let mut backoff = Backoff::new(Duration::from_millis(config.retry_max_ms.get()));
            // the reason last logged: a new one is worth a line even within one outage
            let mut logged: Option<String> = None;
            let mut offset = Position::default();
            while !stop.load(Ordering::Relaxed) {
                match send_from(&config, &journal, &dicom_dir, &cursor, &mut at, &mut offset, stop) {
                    Ok(()) => {
                        if backoff.worked() {
                            log::info!("PACS {}: storing again", config.ae_title);
                        }
                        logged = None;
                        nap(Duration::from_millis(500), stop);
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        if backoff.failed() | (logged.as_deref() != Some(reason.as_str())) {
                            log::warn!("PACS: {reason}; results wait in the journal and are retried");
                            logged = Some(reason);
                        }
                        backoff.sleep(stop);
                    }
                }
            }
        })
        .map_err(PacsError::Thread)?;
        Ok(Outbox { _worker: worker })
    }
}

/// Store every record's objects after `at`, advancing and saving the cursor. `offset` is
/// where in the journal to read from (a line start, so an idle outbox does not rescan the
/// whole journal every half second); it stays before a record that could not be stored.
fn send_from(
    config: &PacsConfig,
    journal: &Path,
    dicom_dir: &Path,
    cursor: &Path,
    at: &mut Cursor,
    offset: &mut Position,
    stopping: &AtomicBool,
) -> Result<(), PacsError> {
    let mut records = Records::open_at(journal, *offset, at.stored_through + 1).map_err(PacsError::Journal)?;
    let save = |at: &Cursor| {
        at.save(cursor).map_err(|source| PacsError::File {
            path: cursor.into(),
            source,
        })
    };
    let saved = at.stored_through;
    while !stopping.load(Ordering::Relaxed) {
        let line_start = records.position();
        let Some(record) = records.next() else { break };
        let stored = record.map_err(PacsError::Journal).and_then(|record| {
            let files = result_files(dicom_dir, record.seq).map_err(|source| PacsError::File {
                path: dicom_dir.into(),
                source,
            })?;
            for file in &files {
                match store(config, file) {
                    Ok(()) => {}
                    Err(StoreError::Refused(reason)) => set_aside(at, record.seq, file, reason),
                    Err(StoreError::Unavailable(e)) => return Err(e),
                }
            }
            Ok((record.seq, files.len()))
        });
        let (seq, objects) = match stored {
            Ok(done) => done,
            Err(e) => {
                *offset = line_start;
                if at.stored_through != saved {
                    save(at)?;
                }
                return Err(e);
            }
        };
        at.stored_through = seq;
        *offset = records.position();
        // records without DICOM results (PNG inputs, failures) are passed without an fsync
        // each; the cursor is saved after each stored one and at the end
        if objects > 0 {
            log::info!("PACS {}: stored result #{seq} ({objects} objects)", config.ae_title);
            save(at)?;
        }
    }
    if at.stored_through != saved {
        save(at)?;
    }
    Ok(())
}

/// Note an object the PACS refused for good (once, however often its record is retried for
/// the others), to be saved with the cursor that passes it.
fn set_aside(at: &mut Cursor, seq: u64, file: &Path, reason: String) {
    if at.refused.iter().any(|r| r.file == file) {
        return;
    }
    log::error!(
        "PACS: result #{seq}'s {} cannot be stored, whenever it is sent: {reason}. It is set aside (listed in the PACS cursor file) and the later results go on; fix the cause, then remove that file to resend every result",
        file.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
    );
    at.refused.push(Refused {
        seq,
        file: file.to_path_buf(),
        reason,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_statuses_about_the_object_itself_set_it_aside() {
        for status in [0xA900, 0xA950, 0xC000, 0xC123, 0x0122] {
            assert!(refuses_for_good(status), "0x{status:04X}");
        }
        // out of resources, processing failure, not authorized, duplicate: may pass
        for status in [0xA700, 0xA7FF, 0x0110, 0x0124, 0x0111, 0xFE00] {
            assert!(!refuses_for_good(status), "0x{status:04X}");
        }
    }

    #[test]
    fn an_unreadable_result_file_is_set_aside_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("00000001-x.sr.dcm");
        std::fs::write(&file, b"not DICOM").unwrap();
        // no PACS listens there: the file is judged before any connection
        let config: PacsConfig = toml::from_str("address = \"127.0.0.1:9\"\nae_title = \"PACS\"").unwrap();
        match store(&config, &file) {
            Err(StoreError::Refused(reason)) => assert!(reason.contains("unreadable here"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_cursor_file_without_refusals_reads_and_writes_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pacs.json");
        std::fs::write(&path, r#"{"stored_through":7}"#).unwrap();
        let mut cursor = Cursor::load(&path).unwrap();
        assert_eq!(cursor.stored_through, 7);
        assert!(cursor.refused.is_empty());
        cursor.save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), r#"{"stored_through":7}"#);
        set_aside(&mut cursor, 8, Path::new("d/00000008-x.sr.dcm"), "0xA900".into());
        set_aside(&mut cursor, 8, Path::new("d/00000008-x.sr.dcm"), "0xA900".into());
        cursor.save(&path).unwrap();
        assert_eq!(Cursor::load(&path).unwrap().refused.len(), 1);
    }
}
