//! `[retention]` on a running daemon: at start its first sweep removes the analyzed inputs
//! and results older than `keep_days`, keeps the young ones, the DICOM results a PACS has not
//! confirmed (here a PACS that never answers), files in a results folder that are not
//! results, and the journal; and says so in one line.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::free_port;

/// A file of `bytes` bytes last written `days` ago.
fn aged(path: &Path, bytes: usize, days: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, vec![1u8; bytes]).unwrap();
    let when = SystemTime::now() - Duration::from_secs(days * 86_400);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

#[test]
fn old_inputs_and_results_go_and_what_the_pacs_owes_stays() {
    let dir = tempfile::tempdir().unwrap();
    let more = format!(
        "[pacs]\naddress = \"127.0.0.1:{}\"\nae_title = \"NOBODY\"\nretry_max_ms = 60000\n[retention]\nkeep_days = 7\n",
        free_port()
    );
    let config = common::dicom_daemon_config(dir.path(), &more);
    let state = dir.path().join("state");
    let old_input = dir.path().join("incoming/done/old.dcm");
    let old_failed = dir.path().join("incoming/failed/old.png.error.txt");
    let young_input = dir.path().join("incoming/done/young.dcm");
    let old_overlay = state.join("overlays/00000001-old.png");
    let owed_report = state.join("dicom/00000001-old.sr.dcm");
    let not_a_result = state.join("overlays/README.txt");
    aged(&old_input, 3000, 40);
    aged(&old_failed, 100, 40);
    aged(&young_input, 3000, 2);
    aged(&old_overlay, 2000, 40);
    aged(&owed_report, 500, 40);
    aged(&not_a_result, 10, 400);
    let mut ptxd = common::run_ptxd(&config);
    let deadline = Instant::now() + Duration::from_secs(60);
    while old_input.exists() || old_overlay.exists() || old_failed.exists() {
        assert!(Instant::now() < deadline, "the first sweep did not run");
        assert!(ptxd.child().try_wait().unwrap().is_none(), "ptxd exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = ptxd.stop();
    for kept in [&young_input, &owed_report, &not_a_result] {
        assert!(kept.exists(), "{} was removed", kept.display());
    }
    assert!(state.join("journal.log").exists());
    let line = log
        .lines()
        .find(|l| l.contains("retention: removed"))
        .unwrap_or_else(|| panic!("one line for the sweep:\n{log}"));
    assert!(
        line.contains("removed 3 file(s)") && line.contains("1 past their age kept"),
        "{line}"
    );
    assert_eq!(log.matches("retention: removed").count(), 1, "{log}");
}
