//! ptxd as a DICOM node: `ptxd run` with a `[dicom]` listener, and dcmtk's `echoscu` and
//! `storescu` as the modality. A JPEG 2000 chest radiograph is stored in the watch folder
//! before the modality hears "success", then analyzed; a stranger's association, a hand
//! radiograph and a structured report are refused, each with its reason.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{data, root};
use ptxd::journal::decode_line;
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn dcmtk(tool: &str, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e} (dcmtk is needed: ./test.sh installs it)"))
}

fn journal(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("state/journal.log"))
        .unwrap_or_default()
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .map(|l| serde_json::from_str(decode_line(l).expect("CRC ok")).unwrap())
        .collect()
}

/// The daemon, killed if the test panics first: a ptxd left running would hold cargo's
/// pipe open and the test run would never end.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn stop(mut running: Running) -> String {
    let child = running.0.take().unwrap();
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "clean exit on SIGTERM: {}\n{log}", out.status);
    log
}

/// The JPEG 2000 radiograph and a 12-bit source made by tests/dicom/make_syntaxes.py.
fn make_files(dir: &Path) -> (PathBuf, PathBuf) {
    let python = std::env::var_os("PTXD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv-ci/bin/python"));
    let status = Command::new(&python)
        .arg(root().join("tests/dicom/make_syntaxes.py"))
        .arg(data("dicom/ID_0a920cc01.dcm"))
        .arg(dir)
        .status()
        .unwrap_or_else(|e| panic!("{}: {e}: run models/training/setup-venv.sh", python.display()));
    assert!(status.success());
    (dir.join("jpeg2000.dcm"), dir.join("source-12bit.dcm"))
}

#[test]
fn a_modality_sends_a_jpeg2000_radiograph_stored_before_success_then_analyzed() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("made");
    let (j2k, source) = make_files(&files);
    let port = free_port();
    let config = dir.path().join("ptxd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[models]
manifest = "{}"
threads = 1
[watch]
dir = "incoming"
settle_ms = 200
[journal]
path = "state/journal.log"
[output]
overlay_dir = "state/overlays"
[dicom]
listen = "127.0.0.1:{port}"
ae_title = "PTXD"
allowed_calling = ["DIGITIZER"]
"#,
            root().join("models/manifest.toml").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("incoming")).unwrap();
    let mut child = Running(Some(
        Command::new(env!("CARGO_BIN_EXE_ptxd"))
            .args(["run", "--config", config.to_str().unwrap()])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let port = port.to_string();
    let modality = |tool: &str, aet: &str, extra: &[&str]| {
        let mut args = vec!["-d", "-aet", aet, "-aec", "PTXD", "127.0.0.1", port.as_str()];
        args.extend_from_slice(extra);
        dcmtk(tool, &args)
    };
    // the listener starts after the models load: echo until it answers
    let deadline = Instant::now() + Duration::from_secs(60);
    while !modality("echoscu", "DIGITIZER", &[]).status.success() {
        assert!(child.0.as_mut().unwrap().try_wait().unwrap().is_none(), "ptxd exited");
        assert!(Instant::now() < deadline, "no C-ECHO answer within 60 s");
        std::thread::sleep(Duration::from_millis(300));
    }

    // a calling AE title not in allowed_calling is rejected at association
    let stranger = modality("echoscu", "STRANGER", &[]);
    assert!(!stranger.status.success());
    let said = String::from_utf8_lossy(&stranger.stderr) + String::from_utf8_lossy(&stranger.stdout);
    assert!(said.contains("Calling AE Title Not Recognized"), "{said}");

    // the JPEG 2000 radiograph: on disk in the watch folder by the time success is heard
    let stored = modality("storescu", "DIGITIZER", &["-xw", j2k.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&stored.stderr) + String::from_utf8_lossy(&stored.stdout);
    assert!(stored.status.success(), "{said}");
    assert!(
        said.contains("DIMSE Status                  : 0x0000: Success"),
        "{said}"
    );
    let uid = String::from_utf8(dcmtk("dcmdump", &["+P", "0008,0018", "-s", j2k.to_str().unwrap()]).stdout).unwrap();
    let uid = uid
        .split('[')
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap()
        .to_string();
    let name = format!("{uid}.dcm");
    let incoming = dir.path().join("incoming");
    assert!(
        incoming.join(&name).exists() || incoming.join("done").join(&name).exists(),
        "{name} not in the watch folder when success was answered"
    );
    // byte for byte the data set sent: same pixels as the file
    let kept = std::fs::read(if incoming.join(&name).exists() {
        incoming.join(&name)
    } else {
        incoming.join("done").join(&name)
    })
    .unwrap();
    let limits = ptxd::config::Limits::default();
    let sent = ptxd::decode::modality_values(&std::fs::read(&j2k).unwrap(), limits).unwrap();
    assert_eq!(ptxd::decode::modality_values(&kept, limits).unwrap(), sent);

    // a hand radiograph and a structured report: answered, refused with the reason
    let hand = files.join("hand.dcm");
    std::fs::copy(&source, &hand).unwrap();
    assert!(dcmtk(
        "dcmodify",
        &[
            "-nb",
            "-i",
            "(0018,0015)=HAND",
            "-i",
            "(0008,0018)=1.2.3.4.5",
            hand.to_str().unwrap()
        ]
    )
    .status
    .success());
    let sr = files.join("sr.dcm");
    std::fs::copy(&source, &sr).unwrap();
    assert!(dcmtk(
        "dcmodify",
        &[
            "-nb",
            "-m",
            "(0008,0016)=1.2.840.10008.5.1.4.1.1.88.11",
            "-i",
            "(0008,0018)=1.2.3.4.6",
            sr.to_str().unwrap()
        ]
    )
    .status
    .success());
    for (file, reason) in [
        (&hand, "not a chest radiograph (body part HAND)"),
        (&sr, "not a radiograph"),
    ] {
        let out = modality("storescu", "DIGITIZER", &[file.to_str().unwrap()]);
        let said = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("0xa900: Error: Data Set does not match SOP Class"),
            "{said}"
        );
        assert!(said.contains(reason), "the Error Comment gives the reason: {said}");
    }

    // the stored radiograph is analyzed; the refused objects never reached the folder
    let deadline = Instant::now() + Duration::from_secs(120);
    let record = loop {
        if let Some(r) = journal(dir.path())
            .into_iter()
            .find(|r| r["source"] == format!("watch:{name}"))
        {
            break r;
        }
        assert!(Instant::now() < deadline, "no journal record for {name}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        ["positive", "negative"].contains(&record["verdict"].as_str().unwrap()),
        "{record}"
    );
    assert_eq!(journal(dir.path()).len(), 1, "only the radiograph was recorded");
    let log = stop(child);
    assert!(log.contains("DICOM: stored"), "{log}");
}
