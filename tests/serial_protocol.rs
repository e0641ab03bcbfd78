//! `docs/serial-protocol.md` and the codec agree: every example frame on the page has a
//! valid CRC, and the codec produces each example byte for byte from the same facts.

use std::path::PathBuf;

mod common;

use ptxd::journal::decode_line;
use ptxd::report::{error_frame, hello_frame, parse_command, result_frame, status_frame, Hello};

fn examples() -> Vec<String> {
    let page = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/serial-protocol.md"))
        .expect("docs/serial-protocol.md");
    page.lines()
        .filter(|l| l.starts_with("{\"v\":"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn example(kind: &str) -> String {
    examples()
        .into_iter()
        .find(|l| l.starts_with(&format!("{{\"v\":1,\"type\":\"{kind}\"")))
        .unwrap_or_else(|| panic!("no {kind} example on the page"))
}

#[test]
fn every_example_has_a_valid_crc() {
    let lines = examples();
    assert_eq!(lines.len(), 4, "one example per frame type");
    for line in lines {
        let json = decode_line(line.trim_end()).unwrap_or_else(|| panic!("bad CRC in the docs: {line}"));
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["v"], 1);
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
    assert_eq!(status_frame(42, 1, 0, "ready"), example("status"));
    let detail = parse_command(b"HELLO").unwrap_err();
    assert_eq!(error_frame(42, "bad-command", &detail), example("error"));
}
