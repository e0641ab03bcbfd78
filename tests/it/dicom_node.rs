//! ptxd as a DICOM node: `ptxd run` with a `[dicom]` listener, and dcmtk's `echoscu` and
//! `storescu` as the modality. A JPEG 2000 chest radiograph is stored in the watch folder
//! before the modality hears "success", then analyzed, and its result written as DICOM (a
//! Structured Report and the overlay, valid by dciodvfy, dsrdump and pydicom, in the source's
//! study); a stranger's association, a hand radiograph, a structured report and a CT are refused,
//! each with its reason.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::free_port;
use serde_json::Value;

fn dcmtk(tool: &str, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e} (dcmtk is needed: ./test.sh installs it)"))
}

/// The listener starts after the models load: `echo` until it answers (60 s at most).
fn wait_for_echo(ptxd: &mut common::Running, echo: impl Fn() -> Output) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !echo().status.success() {
        assert!(ptxd.child().try_wait().unwrap().is_none(), "ptxd exited");
        assert!(Instant::now() < deadline, "no C-ECHO answer within 60 s");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn journal(dir: &Path) -> Vec<Value> {
    common::journal_records(&dir.join("state/journal.log"))
}

/// The JPEG 2000 radiograph and a 12-bit source made by tests/dicom/make_syntaxes.py.
fn make_files(dir: &Path) -> (PathBuf, PathBuf) {
    common::make_dicom_syntaxes(dir);
    (dir.join("jpeg2000.dcm"), dir.join("source-12bit.dcm"))
}

#[test]
fn a_modality_sends_a_jpeg2000_radiograph_stored_before_success_then_analyzed() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("made");
    let (j2k, source) = make_files(&files);
    let port = free_port();
    let config = common::dicom_daemon_config(
        dir.path(),
        &format!("[dicom]\nlisten = \"127.0.0.1:{port}\"\nae_title = \"PTXD\"\nallowed_calling = [\"DIGITIZER\"]\n"),
    );
    let mut child = common::run_ptxd(&config);
    let port = port.to_string();
    let modality = |tool: &str, aet: &str, extra: &[&str]| {
        let mut args = vec!["-d", "-aet", aet, "-aec", "PTXD", "127.0.0.1", port.as_str()];
        args.extend_from_slice(extra);
        dcmtk(tool, &args)
    };
    wait_for_echo(&mut child, || modality("echoscu", "DIGITIZER", &[]));

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
    let sent = ptxd::pixels::decode::modality_values(&std::fs::read(&j2k).unwrap(), limits).unwrap();
    assert_eq!(ptxd::pixels::decode::modality_values(&kept, limits).unwrap(), sent);

    // a hand radiograph, a structured report and a radiograph's pixels under a CT header (the
    // header is what the listener believes): answered, refused with the reason
    let refused = [
        (
            "hand.dcm",
            ["-i", "(0018,0015)=HAND"],
            "1.2.3.4.5",
            "not a chest radiograph (body part HAND)",
        ),
        (
            "sr.dcm",
            ["-m", "(0008,0016)=1.2.840.10008.5.1.4.1.1.88.11"],
            "1.2.3.4.6",
            "not a radiograph",
        ),
        (
            "ct.dcm",
            ["-m", "(0008,0060)=CT"],
            "1.2.3.4.7",
            "Modality CT (computed tomography): not a radiograph",
        ),
    ];
    for (name, edit, instance, reason) in refused {
        let file = files.join(name);
        std::fs::copy(&source, &file).unwrap();
        let instance = format!("(0008,0018)={instance}");
        let args = ["-nb", edit[0], edit[1], "-i", &instance, file.to_str().unwrap()];
        assert!(dcmtk("dcmodify", &args).status.success());
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
    let log = child.stop();
    assert!(log.contains("DICOM: stored"), "{log}");

    // its result as DICOM: a report and the overlay, valid, in the source's study
    let sha = record["input_sha256"].as_str().unwrap();
    let (sr_uid, sc_uid) = ptxd::record::dicom_result::instance_uids(sha);
    let results = dir.path().join("state/dicom");
    let sr = results.join(format!("00000001-{uid}.sr.dcm"));
    let sc = results.join(format!("00000001-{uid}.sc.dcm"));
    for file in [&sr, &sc] {
        let out = Command::new("dciodvfy")
            .arg(file)
            .output()
            .expect("dciodvfy (dicom3tools)");
        let said = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
        assert!(
            !said.lines().any(|l| l.starts_with("Error")),
            "{}: {said}",
            file.display()
        );
    }
    let dump = dcmtk("dsrdump", &[sr.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.status.success(), "{text}");
    for words in [
        "Pneumothorax triage",
        record["verdict"].as_str().unwrap(),
        "Not a diagnosis",
        "Source image",
    ] {
        assert!(text.contains(words), "dsrdump has no {words:?}: {text}");
    }
    // pydicom reads both; same study and patient as the source, the stable instance UIDs
    let python = common::python();
    let script = "import sys, pydicom\n\
        for p in sys.argv[1:]:\n\
        \x20   d = pydicom.dcmread(p)\n\
        \x20   print(d.SOPInstanceUID, d.StudyInstanceUID, d.PatientID, d.SeriesInstanceUID)";
    let out = Command::new(python)
        .args(["-c", script])
        .args([&sr, &sc, &j2k])
        .output()
        .unwrap();
    let seen = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = seen.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(rows.len(), 3, "{seen} {}", String::from_utf8_lossy(&out.stderr));
    let (report, overlay, source) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!((report[0], overlay[0]), (sr_uid.as_str(), sc_uid.as_str()));
    assert_eq!(&report[1..3], &source[1..3], "the report is in the source's study");
    assert_eq!(&overlay[1..3], &source[1..3], "the overlay is in the source's study");
    assert!(
        report[3] != source[3] && overlay[3] != source[3] && report[3] != overlay[3],
        "new series"
    );
}

/// A report with findings (the radiograph above is negative): each finding's side, areas and
/// region as a closed polyline on the source image, valid by dciodvfy and read by dsrdump.
#[test]
fn a_report_with_findings_is_valid_dicom() {
    use ptxd::analysis::findings::{Finding, Side};
    use ptxd::pixels::decode::StudyContext;
    let study = StudyContext {
        patient_name: "Doe^Jane".into(),
        patient_id: "P-0042".into(),
        patient_sex: "F".into(),
        study_instance_uid: "1.2.826.0.1.3680043.8.498.1".into(),
        study_date: "20261128".into(),
        series_instance_uid: "1.2.826.0.1.3680043.8.498.2".into(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.1".into(),
        sop_instance_uid: "1.2.826.0.1.3680043.8.498.3".into(),
        ..StudyContext::default()
    };
    let finding = |side, x| Finding {
        side,
        area_pixels: 12_000,
        area_percent_image: 1.2,
        area_percent_side: 8.5,
        bbox: [x, 100, 120, 300],
        mean_probability: 0.8,
    };
    let findings = [finding(Side::Right, 80), finding(Side::Left, 600)];
    let models = common::models();
    let view = ptxd::record::dicom_result::ResultView {
        study: &study,
        input_sha256: "00ff",
        verdict: ptxd::base::outcome::Verdict::Positive,
        probability: Some(0.93),
        findings: &findings,
        models: &models,
        time: "2026-11-28T21:20:54Z",
    };
    let dir = tempfile::tempdir().unwrap();
    let sr = dir.path().join("report.dcm");
    std::fs::write(&sr, ptxd::record::dicom_result::structured_report(&view).unwrap()).unwrap();
    let out = Command::new("dciodvfy")
        .arg(&sr)
        .output()
        .expect("dciodvfy (dicom3tools)");
    let said = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
    assert!(!said.lines().any(|l| l.starts_with("Error")), "{said}");
    let dump = dcmtk("dsrdump", &[sr.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.status.success(), "{text}");
    for words in [
        "positive",
        "0.9300",
        "right",
        "left",
        "8.5000",
        "POLYLINE,80/100",
        "POLYLINE,600/100",
        "Doe^Jane",
    ] {
        assert!(text.contains(words), "dsrdump has no {words:?}: {text}");
    }
    // the whole closed rectangle of the first finding: x 80..200, y 100..400
    let graphic = dcmtk("dcmdump", &["+P", "0070,0022", sr.to_str().unwrap()]);
    let graphic = String::from_utf8_lossy(&graphic.stdout);
    assert!(graphic.contains(r"80\100\200\100\200\400\80\400\80\100"), "{graphic}");
    // a source without valid UIDs (the public SIIM files' made-up ones) gets no report
    let bad = StudyContext {
        sop_instance_uid: "ID_1b7cfb077".into(),
        ..study.clone()
    };
    let refused =
        ptxd::record::dicom_result::structured_report(&ptxd::record::dicom_result::ResultView { study: &bad, ..view });
    assert!(refused.unwrap_err().contains("not a valid UID"));
}

#[test]
fn a_peer_that_drips_bytes_is_cut_and_the_next_modality_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = common::dicom_daemon_config(
        dir.path(),
        &format!("[dicom]\nlisten = \"127.0.0.1:{port}\"\nae_title = \"PTXD\"\ntimeout_s = 2\nassociation_max_s = 5\n"),
    );
    let mut ptxd = common::run_ptxd(&config);
    let port_text = port.to_string();
    let echo = || dcmtk("echoscu", &["-aec", "PTXD", "127.0.0.1", port_text.as_str()]);
    wait_for_echo(&mut ptxd, echo);
    // an association request's header, a byte every second: never silent for timeout_s
    let mut drip = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let dripping = std::thread::spawn(move || {
        use std::io::Write;
        let header = [0x01u8, 0, 0, 0, 0x10, 0, 0, 1];
        for byte in header.iter().cycle().take(30) {
            if drip.write_all(&[*byte]).is_err() {
                return true; // cut
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        false
    });
    std::thread::sleep(Duration::from_millis(500));
    // a modality behind it waits in the backlog, and is answered once the drip is cut
    let asked = Instant::now();
    let answered = echo();
    let waited = asked.elapsed();
    assert!(
        answered.status.success(),
        "{}",
        String::from_utf8_lossy(&answered.stderr)
    );
    assert!(waited < Duration::from_secs(15), "the echo waited {waited:?}");
    assert!(dripping.join().unwrap(), "the dripping peer was never cut");
    let log = ptxd.stop();
    assert!(log.contains("still open after 5 s (dicom.association_max_s)"), "{log}");
}
