//! The journal on a real file: crash repair at every byte of the last record, sequence
//! numbers across restarts, a corrupt middle line, and the line format.

use std::path::Path;

use crate::common;

use ptxd::record::journal::{decode_line, Journal, Record, Records};

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
    let after_first = reader.offset();
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
    // an offset past the end (a journal replaced meanwhile) reads from the start
    assert_eq!(seqs(Records::open_at(&path, 1 << 40, 2).unwrap()), [2, 3]);
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
