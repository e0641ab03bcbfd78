//! The PACS outbox against a real Orthanc (Debian's `orthanc`) on loopback: a modality sends
//! a JPEG 2000 radiograph to ptxd's listener, and its report and overlay arrive in Orthanc
//! (queried through Orthanc's REST API), then two more radiographs; Orthanc stopped midway and ptxd restarted while it
//! is down loses nothing, and a resend after a lost cursor stores nothing twice; `ptxd
//! doctor` echoes the PACS.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Running};
use serde_json::Value;

struct Orthanc {
    dir: PathBuf,
    dicom_port: u16,
    http_port: u16,
}

impl Orthanc {
    fn new(dir: &Path) -> Orthanc {
        let orthanc = Orthanc {
            dir: dir.to_path_buf(),
            dicom_port: free_port(),
            http_port: free_port(),
        };
        std::fs::create_dir_all(dir).unwrap();
        let config = serde_json::json!({
            "Name": "ptxd-test",
            "StorageDirectory": dir.join("db"),
            "IndexDirectory": dir.join("db"),
            "DicomAet": "ORTHANC",
            "DicomPort": orthanc.dicom_port,
            "HttpPort": orthanc.http_port,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "Plugins": [],
        });
        std::fs::write(dir.join("orthanc.json"), config.to_string()).unwrap();
        orthanc
    }

    fn start(&self) -> Running {
        let child = Command::new("Orthanc")
            .arg(self.dir.join("orthanc.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Orthanc (Debian package orthanc; ./test.sh installs it)");
        let running = Running(Some(child));
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.get("/system").is_none() {
            assert!(Instant::now() < deadline, "Orthanc did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        running
    }

    fn get(&self, path: &str) -> Option<Value> {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{}{path}", self.http_port)])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The SOP Instance UIDs Orthanc holds.
    fn instances(&self) -> Vec<String> {
        let ids = self.get("/instances").unwrap();
        let mut uids: Vec<String> = ids
            .as_array()
            .unwrap()
            .iter()
            .map(|id| {
                let tags = self
                    .get(&format!("/instances/{}/simplified-tags", id.as_str().unwrap()))
                    .unwrap();
                tags["SOPInstanceUID"].as_str().unwrap().to_string()
            })
            .collect();
        uids.sort();
        uids
    }

    fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let held = self.instances();
            if held.len() >= n {
                return held;
            }
            assert!(
                Instant::now() < deadline,
                "Orthanc holds {} of {n}: {held:?}",
                held.len()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn journal(dir: &Path) -> Vec<Value> {
    common::journal_records(&dir.join("state/journal.log"))
}

fn wait_for_records(dir: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let records = journal(dir);
        if records.len() >= n {
            return records;
        }
        assert!(Instant::now() < deadline, "{} of {n} records", records.len());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The outbox's cursor file once it says `stored_through` = `seq` (missing or being
/// replaced counts as not yet), within `secs`; else the test fails with `what`.
fn wait_for_cursor(path: &Path, seq: u64, secs: u64, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let cursor: Value = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if cursor["stored_through"] == seq {
            return cursor;
        }
        assert!(Instant::now() < deadline, "{what}: cursor {cursor}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_ptxd(config: &Path) -> Running {
    Running(Some(
        Command::new(env!("CARGO_BIN_EXE_ptxd"))
            .args(["run", "--config", config.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ))
}

/// A copy of `source` with its own SOP Instance UID (a distinct radiograph to ptxd).
fn radiograph(source: &Path, uid: &str, to: &Path) {
    std::fs::copy(source, to).unwrap();
    let status = Command::new("dcmodify")
        .args(["-nb", "-i", &format!("(0008,0018)={uid}")])
        .arg(to)
        .status()
        .expect("dcmodify (dcmtk)");
    assert!(status.success());
}

/// The SR and overlay instance UIDs of every record.
fn expected(records: &[Value]) -> Vec<String> {
    let mut uids: Vec<String> = records
        .iter()
        .flat_map(|r| {
            let (sr, sc) = ptxd::record::dicom_result::instance_uids(r["input_sha256"].as_str().unwrap());
            [sr, sc]
        })
        .collect();
    uids.sort();
    uids
}

#[test]
fn results_reach_orthanc_across_its_outage_and_a_restart_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let orthanc = Orthanc::new(&dir.path().join("orthanc"));
    let listen = free_port();
    let config = common::dicom_daemon_config(
        dir.path(),
        &format!(
            "[pacs]\naddress = \"127.0.0.1:{}\"\nae_title = \"ORTHANC\"\nretry_max_ms = 1000\n\
             [dicom]\nlisten = \"127.0.0.1:{listen}\"\nae_title = \"PTXD\"\n",
            orthanc.dicom_port
        ),
    );
    let incoming = dir.path().join("incoming");
    // a real radiograph with valid UIDs: the source of tests/dicom/make_syntaxes.py
    let made = dir.path().join("made");
    common::make_dicom_syntaxes(&made);
    let source = made.join("jpeg2000-lossless.dcm");

    // `ptxd doctor` echoes the PACS: a failure while it is down, then an answer
    let doctor = || {
        let out = Command::new(env!("CARGO_BIN_EXE_ptxd"))
            .args(["doctor", "--quick", "--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = doctor();
    assert!(said.contains("pacs: C-ECHO failed"), "{said}");
    let server = orthanc.start();
    let said = doctor();
    assert!(said.contains("pacs ORTHANC at 127.0.0.1:"), "{said}");
    assert!(said.contains("answers C-ECHO from PTXD"), "{said}");

    // the modality sends a JPEG 2000 radiograph over the network (the listener starts once
    // the models are loaded: retried until it answers)
    let ptxd = start_ptxd(&config);
    let deadline = Instant::now() + Duration::from_secs(60);
    let listen = listen.to_string();
    let j2k = made.join("jpeg2000.dcm");
    while !Command::new("storescu")
        .args(["-xw", "-aet", "DIGITIZER", "-aec", "PTXD", "127.0.0.1", listen.as_str()])
        .arg(&j2k)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the listener did not take the JPEG 2000 radiograph"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let records = wait_for_records(dir.path(), 1);
    assert_eq!(orthanc.wait_for(2), expected(&records), "the first result arrived");

    // Orthanc goes away; two more radiographs are analyzed meanwhile, and ptxd restarts
    server.stop();
    radiograph(&source, "1.2.826.0.1.3680043.8.498.7002", &incoming.join("second.dcm"));
    wait_for_records(dir.path(), 2);
    ptxd.stop();
    let ptxd = start_ptxd(&config);
    radiograph(&source, "1.2.826.0.1.3680043.8.498.7003", &incoming.join("third.dcm"));
    let records = wait_for_records(dir.path(), 3);
    let cursor: Value = serde_json::from_slice(&std::fs::read(dir.path().join("state/pacs.json")).unwrap()).unwrap();
    assert_eq!(cursor["stored_through"], 1, "nothing confirmed while Orthanc was down");

    // Orthanc is back: everything arrives, once
    let server = orthanc.start();
    assert_eq!(orthanc.wait_for(6), expected(&records));
    wait_for_cursor(
        &dir.path().join("state/pacs.json"),
        3,
        30,
        "the outbox did not catch up",
    );
    ptxd.stop();

    // a lost cursor (a crash between Orthanc's answer and its write) resends everything:
    // the same instances, so Orthanc still holds each once
    std::fs::remove_file(dir.path().join("state/pacs.json")).unwrap();
    let ptxd = start_ptxd(&config);
    wait_for_cursor(&dir.path().join("state/pacs.json"), 3, 60, "the resend did not finish");
    assert_eq!(orthanc.instances(), expected(&records), "nothing stored twice");
    ptxd.stop();
    server.stop();
}

/// A PACS that refuses one object for good (here a second ptxd, whose listener refuses
/// reports with status 0xA900 and takes images) must not hold back the later results: the
/// refused reports are set aside, listed in the cursor file with the PACS's reason and
/// counted by `doctor`, and the overlays, theirs and the later record's, are stored.
#[test]
fn a_pacs_that_refuses_an_object_for_good_holds_back_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, pacs) = (dir.path().join("sender"), dir.path().join("pacs"));
    for d in [&sender, &pacs] {
        std::fs::create_dir_all(d).unwrap();
    }
    let listen = free_port();
    let pacs_config = common::dicom_daemon_config(
        &pacs,
        &format!("[dicom]\nlisten = \"127.0.0.1:{listen}\"\nae_title = \"PACS\"\n"),
    );
    let config = common::dicom_daemon_config(
        &sender,
        &format!("[pacs]\naddress = \"127.0.0.1:{listen}\"\nae_title = \"PACS\"\nretry_max_ms = 1000\n"),
    );
    let made = dir.path().join("made");
    common::make_dicom_syntaxes(&made);
    let source = made.join("jpeg2000-lossless.dcm");
    let receiver = start_ptxd(&pacs_config);
    let ptxd = start_ptxd(&config);
    radiograph(
        &source,
        "1.2.826.0.1.3680043.8.498.7101",
        &sender.join("incoming/first.dcm"),
    );
    radiograph(
        &source,
        "1.2.826.0.1.3680043.8.498.7102",
        &sender.join("incoming/second.dcm"),
    );
    let records = wait_for_records(&sender, 2);

    let cursor = wait_for_cursor(&sender.join("state/pacs.json"), 2, 90, "the outbox is held back");
    let refused = cursor["refused"].as_array().expect("the refused reports are listed");
    assert_eq!(refused.len(), 2, "{cursor}");
    for (entry, record) in refused.iter().zip(&records) {
        assert_eq!(entry["seq"], record["seq"]);
        assert!(entry["file"].as_str().unwrap().ends_with(".sr.dcm"), "{entry}");
        // the PACS's status and its own words (the listener's Error Comment)
        let reason = entry["reason"].as_str().unwrap();
        assert!(
            reason.contains("0xA900") && reason.contains("not a radiograph"),
            "{reason}"
        );
    }
    // both overlays reached the PACS: its listener wrote each into its watch folder
    let pacs_records = wait_for_records(&pacs, 2);
    let mut arrived: Vec<String> = pacs_records
        .iter()
        .map(|r| r["source"].as_str().unwrap().to_string())
        .collect();
    arrived.sort();
    let mut overlays: Vec<String> = records
        .iter()
        .map(|r| {
            let (_, sc) = ptxd::record::dicom_result::instance_uids(r["input_sha256"].as_str().unwrap());
            format!("watch:{sc}.dcm")
        })
        .collect();
    overlays.sort();
    assert_eq!(arrived, overlays);

    let out = Command::new(env!("CARGO_BIN_EXE_ptxd"))
        .args(["doctor", "--quick", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("the PACS refused 2 object(s) for good"), "{said}");
    ptxd.stop();
    receiver.stop();
}
