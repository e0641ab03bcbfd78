//! `docs/serial-protocol.md` and the codec agree: every example frame on the page has a
//! valid CRC, and the codec produces each example byte for byte from the same facts.

use std::path::PathBuf;

use ptxd::findings::{Finding, Side, Verdict};
use ptxd::infer::ModelVersions;
use ptxd::journal::{decode_line, Record};
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

fn models() -> ModelVersions {
    ModelVersions {
        classifier: "ptx-cls-densenet121-int8-20261126 int8".into(),
        segmenter: "ptx-seg-unetpp-effnetlite0-int8-20261126 int8".into(),
    }
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
    let record = Record {
        seq: 42,
        time: "2026-11-26T19:03:04Z".into(),
        source: "watch:0007.dcm".into(),
        input_sha256: Some("2de932701529c33bc0e26537a3cde9186b84f2a440dc15a6b8c576cc7709078e".into()),
        verdict: Some(Verdict::Positive),
        pneumothorax: true,
        probability: Some(0.83),
        findings: vec![Finding {
            side: Side::Right,
            area_pixels: 4832,
            area_percent_image: 1.84,
            area_percent_side: 3.69,
            bbox: [96, 78, 101, 71],
            mean_probability: 0.97,
        }],
        models: models(),
        overlay: Some("/var/lib/ptxd/overlays/00000042-0007.png".into()),
        mask: None,
        error: None,
    };
    assert_eq!(result_frame(&record), example("result"));
    let models = models();
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
