//! The on-disk journal: every result, written and fsynced before it is shown or reported.
//!
//! Format: JSON lines, each ending in `*` and the CRC-32 (ISO-HDLC, zlib's crc32) of the
//! JSON bytes as 8 uppercase hex digits: `{"seq":1,...}*1A2B3C4D\n`. That is the serial
//! link's frame too, so a journal line can be sent as it is. Why not SQLite: this is an
//! append-only log read back in order (replay after a link outage), a line format needs no C
//! library in the aarch64 build, and a technician can read it with `cut -d'*' -f1 | jq`.
//! The per-line CRC makes a torn write detectable.
//!
//! Durability: a record is complete only with its newline, and [`Journal::append`] returns
//! only after `fdatasync`. Opening the journal repairs a crash: an incomplete or corrupt
//! tail is copied to `<journal>.dropped` and cut off (those bytes were never acknowledged:
//! `append` had not returned), so the next record follows the last good one. A corrupt line
//! in the middle (not a crash: a disk fault) is logged and skipped, never deleted. Sequence
//! numbers continue from the largest one in the file, so they stay monotonic across restarts.
//!
//! Segments: a journal grows by about 700 bytes a result, for years. Past a size
//! ([`Journal::rotate_at`]) the file is sealed by renaming it to `<journal>.<first seq>`
//! (ten digits) and a new one begins at the journal's path; sequence numbers go on. Readers
//! ([`Records`]) walk the sealed segments and then the live file as one journal, so replay and
//! `REPLAY n` reach across them. A sealed segment is never written again; retention removes
//! whole segments once they are past their age and every output has what they hold
//! ([`segments`]). The rename is atomic: a crash before the new file exists leaves segments
//! only, and the next open starts the new file.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::analysis::findings::{Finding, Verdict};
use crate::analysis::Analysis;
use crate::base::files::{now_rfc3339, sync_parent};
use crate::base::outcome::{self, ErrorKind, Failure};
use crate::model::infer::ModelVersions;

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("journal {}: {action}: {source}; check the disk and the directory's permissions", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
}

/// One result, as journaled and reported: the result contract, version 2 (`crate::base::outcome`,
/// `docs/contract.md`). Every field is always present, null where it does not apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredRecord")]
pub struct Record {
    /// The contract's version ([`outcome::VERSION`]); older records are migrated as read.
    pub v: u32,
    pub seq: u64,
    /// UTC, RFC 3339, e.g. "2026-11-26T19:03:04Z".
    pub time: String,
    /// Where the frame came from: `watch:<file name>` or `capture:<file name>` ([`outcome::Origin`]).
    pub source: String,
    pub input_sha256: Option<String>,
    pub verdict: Verdict,
    /// False only for a `negative` verdict ([`outcome::needs_attention`]).
    pub needs_attention: bool,
    pub probability: Option<f32>,
    pub findings: Vec<Finding>,
    pub models: ModelVersions,
    pub overlay: Option<String>,
    pub mask: Option<String>,
    /// Why there is no pneumothorax reading (`not_analyzed`, `not_chest_radiograph`); null
    /// otherwise, and for failures journaled before version 2, whose kind was not recorded.
    pub error_kind: Option<ErrorKind>,
    /// The same for people: names the file or frame and the reason.
    pub error: Option<String>,
}

impl Record {
    /// A record of `verdict` for the input `source` (with its hash, when it could be read):
    /// `needs_attention` follows from the verdict, everything else is empty, and the time is
    /// now. [`Journal::append`] gives it its `seq`.
    pub fn new(source: String, input_sha256: Option<String>, models: ModelVersions, verdict: Verdict) -> Record {
        Record {
            v: outcome::VERSION,
            seq: 0,
            time: now_rfc3339(),
            source,
            input_sha256,
            verdict,
            needs_attention: outcome::needs_attention(verdict),
            probability: None,
            findings: Vec::new(),
            models,
            overlay: None,
            mask: None,
            error_kind: None,
            error: None,
        }
    }

    /// The record of an analyzed input: its verdict, probability and findings, and for a
    /// refusal its kind and reason. The overlay and mask files are the caller's to add.
    pub fn analyzed(
        source: String,
        input_sha256: Option<String>,
        models: ModelVersions,
        analysis: &Analysis,
    ) -> Record {
        Record {
            probability: analysis.probability,
            findings: analysis.findings.clone(),
            error_kind: analysis.error_kind(),
            error: analysis.not_chest.as_ref().map(ToString::to_string),
            ..Record::new(source, input_sha256, models, analysis.verdict)
        }
    }

    /// The record of an input no model read: `not_analyzed` (or `not_chest_radiograph` for
    /// one refused from its header, [`outcome::failure_verdict`]), with its kind and message.
    pub fn failure(source: String, input_sha256: Option<String>, models: ModelVersions, failure: &Failure) -> Record {
        Record {
            error_kind: Some(failure.kind),
            error: Some(failure.message.clone()),
            ..Record::new(source, input_sha256, models, outcome::failure_verdict(failure.kind))
        }
    }

    /// True when the image could not be analyzed (its input goes to `failed/`).
    pub fn failed(&self) -> bool {
        self.verdict == Verdict::NotAnalyzed
    }
}

/// A journal line as stored by any version: version 1 (until 2026-11-28) had a nullable
/// `verdict`, a `pneumothorax` boolean that read false for images never cleared, and the
/// not-a-chest reason in `not_chest`. Reading converts, so replays go out as version 2.
#[derive(Deserialize)]
struct StoredRecord {
    seq: u64,
    time: String,
    source: String,
    input_sha256: Option<String>,
    verdict: Option<Verdict>,
    probability: Option<f32>,
    findings: Vec<Finding>,
    models: ModelVersions,
    overlay: Option<String>,
    mask: Option<String>,
    #[serde(default)]
    error_kind: Option<ErrorKind>,
    error: Option<String>,
    #[serde(default)]
    not_chest: Option<String>,
}

impl From<StoredRecord> for Record {
    fn from(r: StoredRecord) -> Record {
        let verdict = r.verdict.unwrap_or(Verdict::NotAnalyzed);
        let (error_kind, error) = match (r.error_kind, r.not_chest) {
            (None, Some(why)) => (Some(ErrorKind::NotChest), Some(why)),
            (kind, _) => (kind, r.error),
        };
        Record {
            v: outcome::VERSION,
            seq: r.seq,
            time: r.time,
            source: r.source,
            input_sha256: r.input_sha256,
            verdict,
            needs_attention: outcome::needs_attention(verdict),
            probability: r.probability,
            findings: r.findings,
            models: r.models,
            overlay: r.overlay,
            mask: r.mask,
            error_kind,
            error,
        }
    }
}

/// Frame a JSON text as a journal (and serial) line: `JSON*CRC32\n`.
pub fn encode_line(json: &str) -> String {
    format!("{json}*{:08X}\n", crc32fast::hash(json.as_bytes()))
}

/// The JSON text of a line (without its newline) whose CRC matches, or None.
pub fn decode_line(line: &str) -> Option<&str> {
    let (json, crc) = line.rsplit_once('*')?;
    // exactly as written: 8 uppercase hex digits (from_str_radix alone would take "+",
    // lowercase, and so two spellings of one line)
    if crc.len() != 8 || !crc.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')) {
        return None;
    }
    let crc = u32::from_str_radix(crc, 16).ok()?;
    (crc32fast::hash(json.as_bytes()) == crc).then_some(json)
}

/// How many recent (sha256, source, failed) entries are remembered to recognise a file that was
/// journaled but not yet moved when the power went.
const RECENT: usize = 1024;

/// A sealed segment of the journal: `<journal>.<first seq>`, never written again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The seq of its first record, from its name.
    pub first: u64,
    pub path: PathBuf,
}

/// The path a segment whose first record is `first` is sealed under.
fn segment_path(journal: &Path, first: u64) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(format!(".{first:010}"));
    name.into()
}

/// The sealed segments of the journal at `journal`, oldest first. A missing folder has none.
pub fn segments(journal: &Path) -> io::Result<Vec<Segment>> {
    let dir = match journal.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(stem) = journal.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        let first = name
            .to_str()
            .and_then(|n| n.strip_prefix(stem)?.strip_prefix('.'))
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse().ok());
        if let Some(first) = first {
            found.push(Segment {
                first,
                path: dir.join(name),
            });
        }
    }
    found.sort_by_key(|s| s.first);
    Ok(found)
}

pub struct Journal {
    path: PathBuf,
    file: File,
    len: u64,
    /// The seq of the live file's first record; None while it has none.
    first: Option<u64>,
    /// Seal the live file once it holds this many bytes ([`Journal::rotate_at`]).
    rotate_at: u64,
    /// The live file was renamed into a segment but its successor could not be created yet.
    sealed: bool,
    next_seq: u64,
    recent: VecDeque<(String, String, bool)>,
    repaired_bytes: u64,
    skipped_lines: usize,
}

impl Journal {
    /// Open (or create) the journal, repairing a torn tail. It grows in one file until
    /// [`Journal::rotate_at`] is set.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let io = |action: &'static str| {
            let path = path.to_path_buf();
            move |source| JournalError::Io { path, action, source }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io("create its directory"))?;
        }
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io("open"))?;
        if !existed {
            sync_parent(path).map_err(io("sync its directory"))?;
        }
        let mut journal = Journal {
            path: path.to_path_buf(),
            file,
            len: 0,
            first: None,
            rotate_at: u64::MAX,
            sealed: false,
            next_seq: 1,
            recent: VecDeque::new(),
            repaired_bytes: 0,
            skipped_lines: 0,
        };
        // the last sealed segment first: after a rotation the live file may hold nothing yet,
        // and the next seq and the recent inputs are in there
        if let Some(last) = segments(path).map_err(io("list its segments"))?.pop() {
            for record in Records::of_files(VecDeque::from([(Some(last.first), last.path)]), 0)? {
                journal.note(&record?);
            }
        }
        // Scan line by line (the file can hold years of results); remember where the last
        // good record ends.
        let mut reader = BufReader::new(journal.file.try_clone().map_err(io("read"))?);
        let (mut good_end, mut offset) = (0u64, 0u64);
        let mut pending_bad = 0usize; // bad lines not yet known to be in the middle
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(io("read"))? as u64;
            if n == 0 {
                break;
            }
            offset += n;
            match line.strip_suffix(b"\n").and_then(parse_record) {
                Some(record) => {
                    journal.skipped_lines += pending_bad;
                    pending_bad = 0;
                    journal.first.get_or_insert(record.seq);
                    journal.note(&record);
                    good_end = offset;
                }
                None => pending_bad += 1,
            }
        }
        if good_end < offset {
            // A torn tail: a last line without its newline, or bad lines after the last good
            // one. Those bytes were never acknowledged; they are kept aside, then cut off.
            journal.repaired_bytes = offset - good_end;
            let aside = PathBuf::from(format!("{}.dropped", path.display()));
            let mut tail = Vec::new();
            let copied = journal
                .file
                .seek(SeekFrom::Start(good_end))
                .and_then(|_| journal.file.read_to_end(&mut tail))
                .and_then(|_| OpenOptions::new().create(true).append(true).open(&aside))
                .and_then(|mut f| f.write_all(&tail));
            if let Err(e) = copied {
                log::warn!("journal {}: cannot keep the torn tail aside: {e}", aside.display());
            }
            log::warn!(
                "journal {}: dropped {} bytes of an unfinished record at the end (a crash or power loss during a write; \
                 kept in {}); no acknowledged record was lost",
                path.display(),
                journal.repaired_bytes,
                aside.display()
            );
            journal.file.set_len(good_end).map_err(io("repair (truncate)"))?;
            journal.file.sync_all().map_err(io("sync after repair"))?;
        }
        if journal.skipped_lines > 0 {
            log::error!(
                "journal {}: {} corrupt line(s) in the middle were skipped and left in place (disk fault?)",
                path.display(),
                journal.skipped_lines
            );
        }
        journal.len = good_end;
        journal.file.seek(SeekFrom::End(0)).map_err(io("seek"))?;
        Ok(journal)
    }

    /// Seal the live file into a segment once it holds `bytes` (checked before each append,
    /// so a segment ends on a whole record and holds at least one).
    pub fn rotate_at(mut self, bytes: u64) -> Journal {
        self.rotate_at = bytes.max(1);
        self
    }

    fn note(&mut self, record: &Record) {
        self.next_seq = self.next_seq.max(record.seq + 1);
        if let Some(sha) = &record.input_sha256 {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent
                .push_back((sha.clone(), record.source.clone(), record.failed()));
        }
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Bytes cut off a torn tail when the journal was opened (0 when it was clean).
    pub fn repaired_bytes(&self) -> u64 {
        self.repaired_bytes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a recent record has this input hash and source: None when not, else
    /// Some(true) when it was recorded as a failure, Some(false) as an analysis.
    pub fn recorded(&self, sha256: &str, source: &str) -> Option<bool> {
        self.recent
            .iter()
            .rev()
            .find(|(s, src, _)| s == sha256 && src == source)
            .map(|e| e.2)
    }

    /// Seal the live file as `<journal>.<first seq>` and start a new one. The rename is
    /// the commit: before it the live file is whole, after it the segment is, and a crash
    /// before the new file exists is repaired by the next open creating it.
    fn rotate(&mut self) -> Result<(), JournalError> {
        let io = |action: &'static str| {
            let path = self.path.clone();
            move |source| JournalError::Io { path, action, source }
        };
        if !self.sealed {
            let Some(first) = self.first else { return Ok(()) };
            std::fs::rename(&self.path, segment_path(&self.path, first)).map_err(io("seal a segment"))?;
            self.sealed = true;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(io("start a new segment"))?;
        sync_parent(&self.path).map_err(io("sync its directory"))?;
        (self.file, self.len, self.first, self.sealed) = (file, 0, None, false);
        Ok(())
    }

    /// Give `record` the next sequence number, append it and fsync. Returns the stored record.
    /// On failure the file is cut back to its previous length, so it stays well-formed.
    pub fn append(&mut self, mut record: Record) -> Result<Record, JournalError> {
        if self.sealed || self.len >= self.rotate_at {
            self.rotate()?;
        }
        record.seq = self.next_seq;
        let json = serde_json::to_string(&record).expect("a record always serialises");
        let line = encode_line(&json);
        let result = self.file.write_all(line.as_bytes()).and_then(|_| self.file.sync_data());
        if let Err(source) = result {
            let _ = self.file.set_len(self.len);
            return Err(JournalError::Io {
                path: self.path.clone(),
                action: "append",
                source,
            });
        }
        self.len += line.len() as u64;
        self.first.get_or_insert(record.seq);
        self.note(&record);
        Ok(record)
    }

    /// Every good record with `seq >= from`, in order, across segments (read back from disk).
    pub fn records_from(&self, from: u64) -> Result<Vec<Record>, JournalError> {
        read_records(&self.path, from)
    }
}

/// Every good record with `seq >= from` in the journal at `path` and its segments,
/// read-only: for readers beside the writer, which must never repair the file themselves.
/// Holds every match in memory: for a journal's tail; to walk a long stretch use [`Records`].
pub fn read_records(path: &Path, from: u64) -> Result<Vec<Record>, JournalError> {
    Records::open(path, from)?.collect()
}

/// Where a reader stopped, to resume from with [`Records::open_at`]: a line start in one of
/// the journal's files, named by the seq of that file's first record (which stays its name
/// when the live file is sealed into a segment). The default starts from the wanted seq.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    first: u64,
    offset: u64,
}

impl Position {
    /// The file it is in, by the seq of its first record (as the reader listed the file).
    pub fn file(&self) -> u64 {
        self.first
    }
}

/// The journal's good records with `seq >= from`, across its segments and then the live
/// file, read one line at a time (a journal can hold years of results; a reader holds one).
/// Read-only, like [`read_records`]. Each line read is bounded by the file, never by what a
/// reader is willing to hold: the files are ptxd's own.
pub struct Records {
    /// The file being read, and the ones after it with the seq their first record has
    /// where it is known (a segment's name).
    path: PathBuf,
    reader: Option<BufReader<File>>,
    rest: VecDeque<(Option<u64>, PathBuf)>,
    from: u64,
    position: Position,
    /// `position` is still in the file before this one: no line of this one was read yet
    /// (an empty live file must not make a resumed reader start over by seq).
    behind: bool,
    line: Vec<u8>,
}

impl Records {
    pub fn open(path: &Path, from: u64) -> Result<Records, JournalError> {
        Records::open_at(path, Position::default(), from)
    }

    /// Resume at `position`, which an earlier reader's [`Records::position`] gave. Where that
    /// file is gone (removed by retention) or shorter than the position (replaced), start from
    /// `from` instead: in the segment that holds it, by the segments' names.
    pub fn open_at(path: &Path, position: Position, from: u64) -> Result<Records, JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_path_buf(),
            action: "read",
            source,
        };
        let mut files: Vec<(Option<u64>, PathBuf)> = segments(path)
            .map_err(io)?
            .into_iter()
            .map(|s| (Some(s.first), s.path))
            .collect();
        files.push((first_seq(path).map_err(io)?, path.to_path_buf()));
        let resume = (position.first > 0)
            .then(|| files.iter().position(|(first, _)| *first == Some(position.first)))
            .flatten();
        // else the last file starting at or before `from` (one starting later cannot hold it)
        let start = resume.unwrap_or_else(|| {
            files
                .iter()
                .rposition(|(first, _)| first.is_some_and(|f| f <= from))
                .unwrap_or(0)
        });
        let mut records = Records::of_files(files.drain(start..).collect(), from)?;
        if let (Some(_), Some(reader)) = (resume, records.reader.as_mut()) {
            let len = reader.get_ref().metadata().map_err(io)?.len();
            // a position past the end is not in this file: read it whole, by seq
            if position.offset <= len {
                reader.seek(SeekFrom::Start(position.offset)).map_err(io)?;
                records.position = position;
            }
        }
        Ok(records)
    }

    /// The records of these files in turn (each with its first record's seq where known),
    /// from the first.
    fn of_files(files: VecDeque<(Option<u64>, PathBuf)>, from: u64) -> Result<Records, JournalError> {
        let mut records = Records {
            path: files.front().map(|(_, p)| p.clone()).unwrap_or_default(),
            reader: None,
            rest: files,
            from,
            position: Position::default(),
            behind: false,
            line: Vec::new(),
        };
        records.next_file().map_err(|source| JournalError::Io {
            path: records.path.clone(),
            action: "read",
            source,
        })?;
        Ok(records)
    }

    /// Open the next file to read (one removed meanwhile is passed over). False at the end.
    fn next_file(&mut self) -> io::Result<bool> {
        while let Some((first, path)) = self.rest.pop_front() {
            match File::open(&path) {
                Ok(file) => {
                    self.reader = Some(BufReader::new(file));
                    self.path = path;
                    match first {
                        Some(first) => self.position = Position { first, offset: 0 },
                        None => self.behind = true,
                    }
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        self.reader = None;
        Ok(false)
    }

    /// Where the line after the last record returned starts.
    pub fn position(&self) -> Position {
        self.position
    }
}

impl Iterator for Records {
    type Item = Result<Record, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let reader = self.reader.as_mut()?;
            self.line.clear();
            let n = match reader.read_until(b'\n', &mut self.line) {
                Ok(n) => n,
                Err(source) => {
                    return Some(Err(JournalError::Io {
                        path: self.path.clone(),
                        action: "read",
                        source,
                    }))
                }
            };
            if n == 0 || !self.line.ends_with(b"\n") {
                if self.rest.is_empty() {
                    // the live file's end; a last line without its newline is being appended
                    // (or torn): not a record yet, and a later read must not start mid-line
                    if n > 0 {
                        self.reader = None;
                    }
                    return None;
                }
                if let Err(source) = self.next_file() {
                    return Some(Err(JournalError::Io {
                        path: self.path.clone(),
                        action: "read",
                        source,
                    }));
                }
                continue;
            }
            if std::mem::take(&mut self.behind) {
                self.position = Position::default();
            }
            self.position.offset += n as u64;
            let Some(record) = parse_record(&self.line[..n - 1]) else {
                continue;
            };
            if self.position.first == 0 {
                self.position.first = record.seq;
            }
            if record.seq >= self.from {
                return Some(Ok(record));
            }
        }
    }
}

/// The seq of the first good record of the file at `path`; None when it has none (or is gone).
pub fn first_seq(path: &Path) -> io::Result<Option<u64>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 || !line.ends_with(b"\n") {
            return Ok(None);
        }
        if let Some(record) = parse_record(&line[..line.len() - 1]) {
            return Ok(Some(record.seq));
        }
    }
}

/// One journal line (without its newline) as a record, or None when its CRC or JSON is bad.
pub fn parse_record(line: &[u8]) -> Option<Record> {
    let json = decode_line(std::str::from_utf8(line).ok()?)?;
    serde_json::from_str(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_framing_round_trips_and_rejects_damage() {
        let line = encode_line(r#"{"a":1}"#);
        assert!(line.ends_with('\n'));
        let body = line.trim_end();
        assert_eq!(decode_line(body), Some(r#"{"a":1}"#));
        // found by fuzzing: another spelling of the same CRC is not the line as written
        let lower = format!("{}{}", &body[..body.len() - 8], body[body.len() - 8..].to_lowercase());
        assert_ne!(lower, body, "561BACAF has letters");
        assert_eq!(decode_line(&lower), None);
        assert_eq!(decode_line(&body.replace("*561BACAF", "*+61BACAF")), None);
        assert_eq!(
            &body[body.len() - 8..],
            format!("{:08X}", crc32fast::hash(br#"{"a":1}"#))
        );
        assert_eq!(decode_line(&body.replace("1}", "2}")), None);
        assert_eq!(decode_line(r#"{"a":1}"#), None);
        assert_eq!(decode_line(&body[..body.len() - 1]), None);
    }

    #[test]
    fn crc_is_iso_hdlc() {
        // the check value of CRC-32/ISO-HDLC
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }
}
