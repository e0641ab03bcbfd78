//! The journal on a real file: crash repair at every byte of the last record, sequence
//! numbers across restarts, a corrupt middle line, the line format, and its rotation into
//! segments read back as one journal.

use std::path::Path;

use crate::common;

use ptxd::record::journal::{decode_line, segments, Journal, Record, Records};

/// The shared fixture, for `source` (its input hash differs per source).
fn record(source: &str) -> Record {
    let mut r = common::record();
    r.seq = 0;
    r.source = source.into();
    r.input_sha256 = Some(format!("{:064x}", source.len()));
    r
}

fn write_three(path: &Path) -> Vec<Record> {
    let mut j = Journal::open(path).unwrap();
    (0..3)
        .map(|i| j.append(record(&format!("watch:{i}.dcm"))).unwrap())
        .collect()
}

#[test]
fn sequence_numbers_continue_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/journal.log");
    let first = write_three(&path);
    assert_eq!(first.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    let mut j = Journal::open(&path).unwrap();
    assert_eq!(j.next_seq(), 4);
    assert_eq!(j.repaired_bytes(), 0);
    assert_eq!(j.append(record("watch:again.png")).unwrap().seq, 4);
    let all = j.records_from(1).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[..3], first[..]);
    assert_eq!(j.records_from(3).unwrap().len(), 2);
    assert_eq!(
        j.recorded(&first[1].input_sha256.clone().unwrap(), "watch:1.dcm"),
        Some(false)
    );
    assert_eq!(
        j.recorded(&first[1].input_sha256.clone().unwrap(), "watch:other.dcm"),
        None
    );
    let mut failed = record("watch:broken.dcm");
    failed.verdict = ptxd::base::outcome::Verdict::NotAnalyzed;
    failed.error_kind = Some(ptxd::base::outcome::ErrorKind::Decode);
    failed.error = Some("broken".into());
    let failed = j.append(failed).unwrap();
    assert_eq!(
        j.recorded(&failed.input_sha256.unwrap(), "watch:broken.dcm"),
        Some(true)
    );
}

#[test]
fn a_torn_last_record_is_dropped_at_every_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log");
    let records = write_three(&path);
    let full = std::fs::read(&path).unwrap();
    let last_start = full[..full.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    for cut in last_start..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let mut j = Journal::open(&path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(j.repaired_bytes(), (cut - last_start) as u64, "cut at {cut}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            &full[..last_start],
            "cut at {cut}: file repaired"
        );
        let aside = dir.path().join("journal.log.dropped");
        if cut > last_start {
            assert_eq!(
                std::fs::read(&aside).unwrap(),
                &full[last_start..cut],
                "torn bytes kept aside"
            );
            std::fs::remove_file(&aside).unwrap();
        } else {
            assert!(!aside.exists());
        }
        assert_eq!(
            j.records_from(0).unwrap(),
            records[..2],
            "cut at {cut}: earlier records intact"
        );
        // the unacknowledged record's number is given again: nothing acknowledged is skipped
        let again = j.append(record("watch:retry.png")).unwrap();
        assert_eq!(again.seq, 3, "cut at {cut}");
        assert_eq!(Journal::open(&path).unwrap().records_from(0).unwrap().len(), 3);
    }
    // and the whole file opens as it is
    std::fs::write(&path, &full).unwrap();
    assert_eq!(Journal::open(&path).unwrap().next_seq(), 4);
}

#[test]
fn a_corrupt_middle_line_is_skipped_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log");
    write_three(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 10;
    bytes[second] ^= 0x20; // a flipped bit in record 2
    std::fs::write(&path, &bytes).unwrap();
    let mut j = Journal::open(&path).unwrap();
    assert_eq!(j.repaired_bytes(), 0, "not a torn tail: nothing is cut");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the damaged line stays for inspection"
    );
    let seqs: Vec<u64> = j.records_from(0).unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 3]);
    assert_eq!(j.append(record("watch:next.png")).unwrap().seq, 4);
}

#[test]
fn a_reader_resumes_at_its_offset_and_leaves_a_line_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log");
    write_three(&path);
    let seqs = |records: Records| records.map(|r| r.unwrap().seq).collect::<Vec<_>>();
    assert_eq!(seqs(Records::open(&path, 2).unwrap()), [2, 3]);
    let mut reader = Records::open(&path, 0).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().seq, 1);
    let after_first = reader.position();
    assert_eq!(seqs(Records::open_at(&path, after_first, 0).unwrap()), [2, 3]);
    // an append in progress (no newline yet) is not a record, even when its CRC is whole
    let mut tail = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    tail = tail.replace("\"seq\":1", "\"seq\":4");
    let json = tail.rsplit_once('*').unwrap().0;
    let line = ptxd::record::journal::encode_line(json);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(line.trim_end().as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(seqs(Records::open(&path, 0).unwrap()), [1, 2, 3]);
    // a position past the end (a journal replaced meanwhile by a shorter one) reads by seq
    let mut reader = Records::open(&path, 0).unwrap();
    assert_eq!(reader.by_ref().count(), 3);
    let at_end = reader.position();
    std::fs::remove_file(&path).unwrap();
    let mut j = Journal::open(&path).unwrap();
    j.append(record("watch:only.png")).unwrap();
    assert_eq!(seqs(Records::open_at(&path, at_end, 1).unwrap()), [1]);
}

/// A journal sealing its live file after every two records: once it holds one and a half.
fn rotating(path: &Path) -> Journal {
    let json = serde_json::to_string(&record("watch:1.dcm")).unwrap();
    let line = ptxd::record::journal::encode_line(&json).len() as u64;
    Journal::open(path).unwrap().rotate_at(line * 3 / 2)
}

fn seqs(records: Records) -> Vec<u64> {
    records.map(|r| r.unwrap().seq).collect()
}

#[test]
fn a_rotated_journal_reads_as_one_across_its_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log");
    let mut j = rotating(&path);
    for i in 1..=7 {
        assert_eq!(j.append(record(&format!("watch:{i}.dcm"))).unwrap().seq, i);
    }
    let sealed = segments(&path).unwrap();
    let firsts: Vec<u64> = sealed.iter().map(|s| s.first).collect();
    assert_eq!(firsts, [1, 3, 5], "sealed after two records each");
    assert!(sealed[1].path.ends_with("journal.log.0000000003"));
    assert_eq!(seqs(Records::open(&path, 1).unwrap()), (1..=7).collect::<Vec<_>>());
    // a reader starting mid-journal starts in the segment that holds its seq
    assert_eq!(seqs(Records::open(&path, 4).unwrap()), [4, 5, 6, 7]);
    assert_eq!(j.records_from(7).unwrap().len(), 1);
    // sequence numbers and the recent inputs go on across a restart
    drop(j);
    let mut j = rotating(&path);
    assert_eq!(j.next_seq(), 8);
    assert_eq!(
        j.recorded(&format!("{:064x}", "watch:6.dcm".len()), "watch:6.dcm"),
        Some(false)
    );
    assert_eq!(j.append(record("watch:8.dcm")).unwrap().seq, 8);
    // segments are never written again
    let before: Vec<Vec<u8>> = sealed.iter().map(|s| std::fs::read(&s.path).unwrap()).collect();
    for i in 9..=12 {
        j.append(record(&format!("watch:{i}.dcm"))).unwrap();
    }
    for (s, bytes) in sealed.iter().zip(&before) {
        assert_eq!(&std::fs::read(&s.path).unwrap(), bytes, "{}", s.path.display());
    }
}

#[test]
fn a_crash_between_sealing_and_starting_the_new_file_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log");
    let mut j = rotating(&path);
    for i in 1..=4 {
        j.append(record(&format!("watch:{i}.dcm"))).unwrap();
    }
    drop(j);
    // the power went right after the rename: segments, no live file
    std::fs::rename(&path, path.with_extension("log.0000000003")).unwrap();
    let mut j = rotating(&path);
    assert_eq!(j.next_seq(), 5, "the last segment gives the next seq");
    assert_eq!(j.append(record("watch:5.dcm")).unwrap().seq, 5);
    assert_eq!(seqs(Records::open(&path, 1).unwrap()), [1, 2, 3, 4, 5]);
    // a torn tail of the live file is repaired; the segments are not touched
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"seq\":6,\"ti");
    std::fs::write(&path, &bytes).unwrap();
    let j = rotating(&path);
    assert!(j.repaired_bytes() > 0);
    assert_eq!(seqs(Records::open(&path, 1).unwrap()), [1, 2, 3, 4, 5]);
}

#[test]
fn a_reader_resumes_across_a_rotation_and_past_a_removed_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log");
    let mut j = rotating(&path);
    j.append(record("watch:1.dcm")).unwrap();
    let mut reader = Records::open(&path, 1).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().seq, 1);
    assert!(reader.next().is_none());
    let at = reader.position();
    // the live file the position was taken in is sealed, and a new one begun
    for i in 2..=5 {
        j.append(record(&format!("watch:{i}.dcm"))).unwrap();
    }
    let mut reader = Records::open_at(&path, at, 2).unwrap();
    assert_eq!(
        reader.by_ref().map(|r| r.unwrap().seq).collect::<Vec<_>>(),
        [2, 3, 4, 5]
    );
    let at = reader.position();
    // the live file goes on: the reader takes up where it was
    j.append(record("watch:6.dcm")).unwrap();
    assert_eq!(seqs(Records::open_at(&path, at, 6).unwrap()), [6]);
    // the segment a position was in is removed (retention): the reader goes by seq
    let mut reader = Records::open(&path, 1).unwrap();
    reader.next().unwrap().unwrap();
    let in_first = reader.position();
    std::fs::remove_file(&segments(&path).unwrap()[0].path).unwrap();
    assert_eq!(seqs(Records::open_at(&path, in_first, 2).unwrap()), [3, 4, 5, 6]);
}

#[test]
fn every_line_is_json_with_its_crc() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log");
    write_three(&path);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 3);
    for line in text.lines() {
        let json = decode_line(line).unwrap_or_else(|| panic!("bad CRC: {line}"));
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        for key in [
            "seq",
            "time",
            "source",
            "input_sha256",
            "verdict",
            "probability",
            "findings",
            "models",
            "overlay",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {json}");
        }
        assert_eq!(v["findings"][0]["side"], "right");
    }
}

#[test]
fn an_unwritable_journal_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let err = Journal::open(&blocker.join("journal.log"))
        .err()
        .expect("cannot open under a file");
    let msg = err.to_string();
    assert!(msg.contains("journal.log") && msg.contains("check the disk"), "{msg}");
}
