//! `ptxd doctor` as a technician runs it: on this machine (no camera, framebuffer or GPIO),
//! with and without a config naming devices.

use std::path::{Path, PathBuf};
use std::process::Command;

use serialport::SerialPort;

use crate::common;

use common::{models_with_tampered_segmenter, root};

fn doctor(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ptxd"))
        .arg("doctor")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

#[test]
fn models_are_checked_and_every_device_kind_is_listed() {
    let (code, out) = doctor(&[]);
    assert_eq!(code, 0, "{out}");
    for heading in [
        "Models",
        "Capture devices",
        "Framebuffers",
        "Serial ports",
        "GPIO chips",
        "SPI",
    ] {
        assert!(out.contains(heading), "{heading} missing:\n{out}");
    }
    assert_eq!(out.matches("sha256 ok, loaded and ran").count(), 3, "{out}");
    assert!(out.contains("no problems found"), "{out}");
}

#[test]
fn quick_checks_the_model_checksums_without_loading() {
    let (code, out) = doctor(&["--quick"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.matches("sha256 ok (--quick: not loaded or run)").count(),
        3,
        "{out}"
    );
    assert!(!out.contains("loaded and ran"), "{out}");

    // a model file that is not the manifest's fails the quick check too
    let dir = tempfile::tempdir().unwrap();
    let manifest = models_with_tampered_segmenter(dir.path());
    let (code, out) = doctor(&["--quick", "--manifest", manifest.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    // the classifier and the segmenter are one file: both roles fail, naming it
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("  FAIL")).collect();
    assert_eq!(fails.len(), 2, "{out}");
    for (fail, role) in fails.iter().zip(["classifier", "segmenter"]) {
        assert!(
            fail.contains(&format!("FAIL {role}:")) && fail.contains("segmenter.int8.onnx") && fail.contains("sha256"),
            "{out}"
        );
    }
}

/// `dir/ptxd.toml`: the shipped models, folders `in` and `overlays`, `output` lines added to
/// `[output]` and `more` after it.
fn write_config(dir: &Path, output: &str, more: &str) -> PathBuf {
    let config = dir.join("ptxd.toml");
    let text = format!(
        "[models]\nmanifest = \"{}\"\n[watch]\ndir = \"in\"\n[journal]\npath = \"journal.log\"\n\
         [output]\noverlay_dir = \"overlays\"\n{output}\n{more}",
        root().join("models/manifest.toml").display()
    );
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn devices_the_config_names_are_checked_and_failures_set_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let (_host, device) = serialport::TTYPort::pair().unwrap();
    let port = device.name().unwrap();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            r#"
[serial]
port = "{port}"
[capture]
device = "/dev/video-not-here"
[display]
kind = "png"
dir = "screen"
[gpio]
chip = "/dev/gpiochip-not-here"
led = 17
"#
        ),
    );
    let (code, out) = doctor(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("  FAIL")).collect();
    assert_eq!(fails.len(), 2, "{out}");
    assert!(fails[0].contains("/dev/video-not-here"), "{out}");
    assert!(
        fails[1].contains("/dev/gpiochip-not-here") && fails[1].contains("without the alert"),
        "{out}"
    );
    assert!(out.contains(&format!("ok   serial {port}: can be opened")), "{out}");
    assert!(out.contains("ok   display") && out.contains("800x480"), "{out}");
    assert!(out.contains("2 problem(s)"), "{out}");
}

/// `doctor` reports the disk the inputs and results are on: what is kept, since when, the
/// days to the retention floor, and results a PACS still owes holding it under that floor.
#[test]
fn the_disk_report_names_what_is_kept_and_what_the_pacs_holds() {
    let dir = tempfile::tempdir().unwrap();
    let at = |rel: &str, bytes: usize, days: u64| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![0u8; bytes]).unwrap();
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86_400);
        std::fs::File::open(&path).unwrap().set_modified(when).unwrap();
    };
    at("in/done/old.dcm", 1000, 20);
    at("overlays/00000001-old.png", 300, 20);
    at("dicom/00000001-old.sr.dcm", 200, 2);
    let config = write_config(
        dir.path(),
        "dicom_dir = \"dicom\"",
        &format!(
            r#"
[pacs]
address = "127.0.0.1:{}"
ae_title = "NOBODY"
timeout_s = 1
[retention]
min_free = 1000000000000000
"#,
            common::free_port()
        ),
    );
    let (code, out) = doctor(&["--quick", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let report = out.split("Disk (retention)").nth(1).unwrap_or_else(|| panic!("{out}"));
    assert!(
        report.contains("3 inputs and results kept") && report.contains("the oldest from"),
        "{report}"
    );
    assert!(report.contains("until the floor at the last week's"), "{report}");
    assert!(
        report.contains("FAIL") && report.contains("wait for the PACS") && report.contains("under its floor"),
        "{report}"
    );
    assert!(report.contains("one file, no sealed segment yet"), "{report}");
    // a journal sealed into segments: how many, from which result, and what the outputs have
    let journal = dir.path().join("journal.log");
    let mut j = ptxd::record::journal::Journal::open(&journal).unwrap().rotate_at(1);
    for _ in 0..3 {
        j.append(common::record()).unwrap();
    }
    let (_, out) = doctor(&["--quick", "--config", config.to_str().unwrap()]);
    assert!(
        out.contains("2 sealed segment(s)")
            && out.contains("from result #1")
            && out.contains("has every result through #0"),
        "{out}"
    );
}
