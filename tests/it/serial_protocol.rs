//! `docs/serial-protocol.md`, `docs/contract.md` and the code agree: every example frame and
//! record on the pages has a valid CRC, and the codec produces each example byte for byte
//! from the same facts.

use std::path::PathBuf;

use crate::common;

use ptxd::base::outcome::{needs_attention, ErrorKind, ErrorReason, ServiceState, Verdict};
use ptxd::record::journal::{decode_line, encode_line, read_records, Record};
use ptxd::sink::serial::{error_frame, hello_frame, parse_command, result_frame, status_frame, Hello};

fn page_lines(page: &str, prefix: &str) -> Vec<String> {
    let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(page)).expect(page);
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn examples() -> Vec<String> {
    page_lines("docs/serial-protocol.md", "{\"v\":")
}

fn example(kind: &str) -> String {
    examples()
        .into_iter()
        .find(|l| l.starts_with(&format!("{{\"v\":2,\"type\":\"{kind}\"")))
        .unwrap_or_else(|| panic!("no {kind} example on the page"))
}

#[test]
fn every_example_has_a_valid_crc() {
    let lines = examples();
    assert_eq!(lines.len(), 4, "one example per frame type");
    for line in lines {
        let json = decode_line(line.trim_end()).unwrap_or_else(|| panic!("bad CRC in the docs: {line}"));
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["v"], ptxd::base::outcome::VERSION);
        assert!(v["seq"].is_u64());
    }
}

#[test]
fn the_codec_writes_the_documented_frames() {
    let record = common::record();
    assert_eq!(result_frame(&record), example("result"));
    let models = common::models();
    let hello = Hello {
        device: "ptxd-pi4-0007",
        firmware: "ptxd 0.1.0",
        models: &models,
        last_seq: 41,
    };
    assert_eq!(hello_frame(&hello), example("hello"));
    assert_eq!(status_frame(42, 1, 0, ServiceState::Ready), example("status"));
    let detail = parse_command(b"HELLO").unwrap_err().to_string();
    assert_eq!(error_frame(42, ErrorReason::BadCommand, &detail), example("error"));
}

/// The page's table of `error` reasons is the code's, word for word and in order.
#[test]
fn the_page_lists_every_error_reason() {
    let text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/serial-protocol.md")).unwrap();
    let table = text.split("| `reason` | when |").nth(1).expect("the reason table");
    let words: Vec<&str> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with("| `"))
        .map(|l| l.trim_start_matches("| `").split('`').next().unwrap())
        .collect();
    let code: Vec<&str> = ErrorReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(words, code);
}

/// docs/contract.md's journal records: each is what ptxd writes for it (a record read back
/// and written again is the same line), `needs_attention` follows the verdict, and the
/// fields come in the order of the serial example's.
#[test]
fn the_contract_page_shows_records_as_written() {
    let records = page_lines("docs/contract.md", "{\"v\":2,\"seq\"");
    assert_eq!(records.len(), 3, "a positive, a failure and a refusal");
    let mut verdicts = Vec::new();
    for line in &records {
        let json = decode_line(line.trim_end()).unwrap_or_else(|| panic!("bad CRC in docs/contract.md: {line}"));
        let record: Record = serde_json::from_str(json).unwrap();
        assert_eq!(encode_line(&serde_json::to_string(&record).unwrap()), *line);
        assert_eq!(record.needs_attention, needs_attention(record.verdict));
        assert_eq!(record.error_kind.is_some(), record.error.is_some(), "{line}");
        verdicts.push(record.verdict);
    }
    assert_eq!(
        verdicts,
        [Verdict::Positive, Verdict::NotAnalyzed, Verdict::NotChestRadiograph]
    );
    assert_eq!(
        serde_json::to_string(&common::record()).unwrap() + "*",
        records[0].split_inclusive('*').next().unwrap()
    );
}

/// A version-1 journal (the `pneumothorax` field, a null verdict for a failure, `not_chest`)
/// is read as version 2: nothing an old journal holds reads as clear.
#[test]
fn version_1_records_are_migrated_as_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let v1 = [
        r#"{"seq":1,"time":"2026-11-20T10:00:00Z","source":"watch:a.png","input_sha256":null,"verdict":null,"pneumothorax":false,"probability":null,"findings":[],"models":{"classifier":"c","segmenter":"s"},"overlay":null,"mask":null,"error":"a.png: file is empty"}"#,
        r#"{"seq":2,"time":"2026-11-20T10:00:01Z","source":"watch:b.png","input_sha256":"ab","verdict":"indeterminate","pneumothorax":false,"probability":0.25,"findings":[],"models":{"classifier":"c","segmenter":"s","lungs":"l"},"overlay":null,"mask":null,"error":null,"not_chest":null}"#,
        r#"{"seq":3,"time":"2026-11-20T10:00:02Z","source":"watch:c.png","input_sha256":"cd","verdict":"not_chest_radiograph","pneumothorax":false,"probability":null,"findings":[],"models":{"classifier":"c","segmenter":"s","lungs":"l"},"overlay":null,"mask":null,"error":null,"not_chest":"a blank frame"}"#,
    ];
    std::fs::write(&path, v1.iter().map(|j| encode_line(j)).collect::<String>()).unwrap();
    let records = read_records(&path, 0).unwrap();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.v == 2 && r.needs_attention), "{records:?}");
    assert_eq!(
        (records[0].verdict, records[0].error_kind),
        (Verdict::NotAnalyzed, None)
    );
    assert_eq!(records[1].verdict, Verdict::Indeterminate);
    assert_eq!(records[2].error_kind, Some(ErrorKind::NotChest));
    assert_eq!(records[2].error.as_deref(), Some("a blank frame"));
    let frame = result_frame(&records[0]);
    assert!(
        frame.starts_with(r#"{"v":2,"type":"result","seq":1,"#) && !frame.contains("pneumothorax"),
        "{frame}"
    );
}
