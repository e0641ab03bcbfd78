//! `ptxd run` as a real process on a real watch folder (inotify), with the shipped models:
//! files that arrive slowly, through a rename, in a burst larger than the queue, with a bad
//! file in the middle; SIGTERM; a restart that continues the journal and recognises an
//! input it had already recorded.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;

use common::{data, root, Tmpfs, REAL_PNG};
use ptxd::record::journal::decode_line;
use serde_json::Value;

fn phantom(name: &str) -> Vec<u8> {
    std::fs::read(root().join("models/reference").join(name)).unwrap()
}

fn real_png() -> Vec<u8> {
    std::fs::read(data(REAL_PNG)).unwrap()
}

struct Rig {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Rig {
    fn new(queue: usize) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let config = common::daemon_config(
            dir.path(),
            &format!("queue = {queue}"),
            "mask_dir = \"state/masks\"\noverlay_size = [320, 240]",
            "",
        );
        Rig { dir, config }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn start(&self) -> Child {
        self.start_as(None)
    }

    /// Start ptxd, as the user `uid` (and its group) when given.
    fn start_as(&self, uid: Option<u32>) -> Child {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(env!("CARGO_BIN_EXE_ptxd"));
        command
            .args(["run", "--config", self.config.to_str().unwrap()])
            .stderr(Stdio::piped());
        if let Some(uid) = uid {
            command.uid(uid).gid(uid);
        }
        command.spawn().unwrap()
    }

    /// The journal's complete lines, across its segments (one being appended while we read
    /// has no newline yet).
    fn journal(&self) -> Vec<Value> {
        common::journal_records(&self.path("state/journal.log"))
    }

    fn wait_for_records(&self, n: usize, child: &mut Child) -> Vec<Value> {
        self.wait_for_records_within(n, child, Duration::from_secs(120))
    }

    fn wait_for_records_within(&self, n: usize, child: &mut Child, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let records = self.journal();
            if records.len() >= n {
                return records;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("ptxd exited early: {status}: {}", stderr(child));
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} records: {records:?}",
                records.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn names(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(rel))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn stderr(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut s);
    }
    s
}

fn terminate(mut child: Child) -> String {
    // the shell's builtin kill: no procps needed on the test machine
    let status = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let log = stderr(&mut child);
            assert!(status.success(), "clean exit on SIGTERM: {status}\n{log}");
            return log;
        }
        assert!(Instant::now() < deadline, "ptxd did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_until_watching(rig: &Rig) {
    // the journal file is created at start-up, after the models loaded
    let deadline = Instant::now() + Duration::from_secs(60);
    while !rig.path("state/journal.log").exists() {
        assert!(Instant::now() < deadline, "ptxd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
}

fn write_slowly(path: &Path, bytes: &[u8], pieces: usize, pause: Duration) {
    let mut f = std::fs::File::create(path).unwrap();
    for chunk in bytes.chunks(bytes.len().div_ceil(pieces)) {
        f.write_all(chunk).unwrap();
        f.flush().unwrap();
        std::thread::sleep(pause);
    }
}

#[test]
fn watch_folder_end_to_end() {
    let rig = Rig::new(1);
    // already waiting before start-up
    std::fs::write(rig.path("incoming/early.png"), phantom("phantom-clear.png")).unwrap();
    let mut child = rig.start();
    wait_until_watching(&rig);

    // a slow writer (pauses longer than settle_ms while the file is open), a renamer, then a
    // bad file in the middle of a burst larger than the queue
    write_slowly(
        &rig.path("incoming/slow.png"),
        &real_png(),
        5,
        Duration::from_millis(300),
    );
    std::fs::write(rig.path("incoming/renamed.png.part"), phantom("phantom-ptx.png")).unwrap();
    std::fs::rename(rig.path("incoming/renamed.png.part"), rig.path("incoming/renamed.png")).unwrap();
    for (name, bytes) in [
        ("burst1.png", phantom("phantom-clear.png")),
        ("bad.png", b"\x89PNG\r\n\x1a\nthis is not really a png".to_vec()),
        ("burst2.png", phantom("phantom-ptx.png")),
        ("burst3.png", real_png()),
    ] {
        std::fs::write(rig.path(&format!("incoming/{name}")), bytes).unwrap();
    }

    let records = rig.wait_for_records(7, &mut child);
    std::thread::sleep(Duration::from_millis(500)); // let the last move happen
    let log = terminate(child);
    assert!(log.contains("stopped: 6 analyzed, 1 failed"), "{log}");
    // the burst overflowed the one-file queue: files waited in the folder, none was lost
    assert!(log.contains("queue full"), "{log}");

    assert_eq!(records.len(), 7, "each file once: {records:?}");
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    let source = |r: &Value| r["source"].as_str().unwrap().to_string();
    let sources: Vec<String> = records.iter().map(source).collect();
    assert_eq!(sources[0], "watch:early.png", "files present at start-up come first");
    for name in [
        "slow.png",
        "renamed.png",
        "burst1.png",
        "burst2.png",
        "burst3.png",
        "bad.png",
    ] {
        assert!(
            sources.contains(&format!("watch:{name}")),
            "{name} missing: {sources:?}"
        );
    }
    // the slow file was read whole: analyzed, not failed as truncated
    let slow = records.iter().find(|r| source(r) == "watch:slow.png").unwrap();
    assert!(slow["error"].is_null(), "{slow}");
    // burst order is kept through the full queue
    let pos = |n: &str| sources.iter().position(|s| s == &format!("watch:{n}")).unwrap();
    assert!(pos("burst1.png") < pos("burst2.png") && pos("burst2.png") < pos("burst3.png"));

    let bad = records.iter().find(|r| source(r) == "watch:bad.png").unwrap();
    let error = bad["error"].as_str().unwrap();
    assert!(error.contains("bad.png"), "{error}");
    assert!(bad["input_sha256"].is_string());
    // contract v2: an image that was not analyzed is never read as clear
    assert_eq!(bad["verdict"], "not_analyzed", "{bad}");
    assert_eq!(bad["needs_attention"], true, "{bad}");
    assert_eq!(bad["error_kind"], "decode", "{bad}");
    for r in &records {
        assert_eq!(r["v"], 2, "{r}");
        assert_eq!(
            r["needs_attention"].as_bool().unwrap(),
            r["verdict"] != "negative",
            "{r}"
        );
        assert!(r.get("pneumothorax").is_none(), "{r}");
    }

    for r in records.iter().filter(|r| r["error"].is_null()) {
        let overlay = PathBuf::from(r["overlay"].as_str().unwrap());
        let png = image::open(&overlay).unwrap_or_else(|e| panic!("{}: {e}", overlay.display()));
        assert_eq!((png.width(), png.height()), (320, 240));
        if r["verdict"] == "positive" {
            assert!(PathBuf::from(r["mask"].as_str().unwrap()).exists());
        }
    }

    assert_eq!(
        rig.names("incoming"),
        vec!["done", "failed"],
        "the watch folder is emptied"
    );
    assert_eq!(
        rig.names("incoming/done"),
        vec![
            "burst1.png",
            "burst2.png",
            "burst3.png",
            "early.png",
            "renamed.png",
            "slow.png"
        ]
    );
    assert_eq!(rig.names("incoming/failed"), vec!["bad.png", "bad.png.error.txt"]);
    let why = std::fs::read_to_string(rig.path("incoming/failed/bad.png.error.txt")).unwrap();
    assert!(why.contains("bad.png") && why.contains("png"), "{why}");

    // restart: the journal continues; an input recorded before a crash but never moved
    // (simulated by putting it back) is recognised and moved, not analyzed twice
    std::fs::copy(rig.path("incoming/done/burst2.png"), rig.path("incoming/burst2.png")).unwrap();
    std::fs::copy(rig.path("incoming/failed/bad.png"), rig.path("incoming/bad.png")).unwrap();
    let mut child = rig.start();
    wait_until_watching(&rig);
    std::fs::write(rig.path("incoming/after-restart.png"), phantom("phantom-clear.png")).unwrap();
    let records = rig.wait_for_records(8, &mut child);
    std::thread::sleep(Duration::from_millis(500));
    let log = terminate(child);
    assert_eq!(records.len(), 8, "{records:?}");
    assert_eq!(records[7]["seq"], 8);
    assert_eq!(records[7]["source"], "watch:after-restart.png");
    assert!(log.contains("already in the journal"), "{log}");
    assert!(rig.names("incoming/done").contains(&"burst2.2.png".to_string()));
    assert!(!rig.path("incoming/burst2.png").exists());
    assert!(
        rig.names("incoming/failed").contains(&"bad.2.png".to_string()),
        "a recorded failure goes back to failed/"
    );
    assert!(log.contains("2 already journaled"), "{log}");
}

/// `variant = "auto"`: the first start times every variant and checks it against the
/// reference vectors, caches the fastest within tolerance beside the journal, and loads it;
/// later starts load the cached choice without measuring; `bench --choose --config` measures
/// again and caches for the service.
#[test]
fn variant_auto_is_measured_once_cached_and_loaded() {
    let rig = Rig::new(1);
    let text = std::fs::read_to_string(&rig.config)
        .unwrap()
        .replace("threads = 1", "threads = 1\nvariant = \"auto\"");
    std::fs::write(&rig.config, text).unwrap();
    let cache = rig.path("state/variant.json");
    let loaded = |record: &Value| record["models"]["classifier"].as_str().unwrap().to_string();
    let chosen = |choice: &Value| {
        // the fastest trial within tolerance, from the trials the choice records
        let trials = choice["trials"].as_array().unwrap();
        assert!(trials.len() >= 2, "every shipped variant is tried: {choice}");
        let total = |t: &Value| {
            t["models"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["median_ms"].as_f64().unwrap())
                .sum::<f64>()
        };
        let within = |t: &&Value| {
            t["models"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["worst"].as_f64() <= m["tolerance"].as_f64() && m.get("refused").is_none())
        };
        let best = trials
            .iter()
            .filter(within)
            .min_by(|a, b| total(a).total_cmp(&total(b)))
            .expect("one within tolerance");
        best["variant"].as_str().unwrap().to_string()
    };

    let doctor = || {
        let out = Command::new(env!("CARGO_BIN_EXE_ptxd"))
            .args(["doctor", "--quick", "--config", rig.config.to_str().unwrap()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = doctor();
    assert!(text.contains("variant = \"auto\": not yet measured"), "{text}");

    std::fs::write(rig.path("incoming/a.png"), phantom("phantom-ptx.png")).unwrap();
    let mut child = rig.start();
    let records = rig.wait_for_records(1, &mut child);
    let log = terminate(child);
    assert!(log.contains("measured now"), "{log}");
    let first: Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    let variant = first["variant"].as_str().unwrap().to_string();
    assert_eq!(variant, chosen(&first));
    // the QDQ twins reproduce their own vectors, but the thresholds were chosen on the int8
    // files' outputs and the manifest does not mark them calibrated: out, on any CPU
    let qdq = first["trials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["variant"] == "int8-qdq")
        .unwrap();
    let why = qdq["models"][1]["refused"].as_str().unwrap_or_default();
    assert!(why.contains("chosen on segmenter.int8.onnx's outputs"), "{qdq}");
    assert_eq!(variant, "int8");
    assert!(loaded(&records[0]).ends_with(&format!(" {variant}")), "{}", records[0]);
    // doctor reports the cached choice and checks that variant's files
    let text = doctor();
    assert!(text.contains(&format!("variant = \"auto\": {variant} (")), "{text}");
    assert_eq!(text.matches(&format!("({variant}), sha256 ok")).count(), 3, "{text}");

    // while the key holds the cache is trusted, not measured again: an edited choice is loaded
    let other = if variant == "int8" { "int8-qdq" } else { "int8" };
    let edited = std::fs::read_to_string(&cache).unwrap().replacen(
        &format!("\"variant\": \"{variant}\""),
        &format!("\"variant\": \"{other}\""),
        1,
    );
    std::fs::write(&cache, edited).unwrap();
    std::fs::write(rig.path("incoming/b.png"), phantom("phantom-clear.png")).unwrap();
    let mut child = rig.start();
    let records = rig.wait_for_records(2, &mut child);
    let log = terminate(child);
    assert!(log.contains(&format!("auto\": {other} (cached")), "{log}");
    assert!(loaded(&records[1]).ends_with(&format!(" {other}")), "{}", records[1]);

    // bench --choose measures again, prints the trials, and caches its choice for the service
    let out = Command::new(env!("CARGO_BIN_EXE_ptxd"))
        .args([
            "bench",
            "--choose",
            "--runs",
            "1",
            "--json",
            "--config",
            rig.config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cached: Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    assert_eq!(printed["chosen"], cached["variant"]);
    assert_eq!(printed["trials"], cached["trials"]);
    assert_eq!(cached["variant"].as_str().unwrap(), chosen(&cached));
}

#[test]
fn bad_config_names_the_key() {
    let rig = Rig::new(1);
    let text = std::fs::read_to_string(&rig.config)
        .unwrap()
        .replace("queue = 1", "queu = 1");
    std::fs::write(&rig.config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ptxd"))
        .args(["run", "--config", rig.config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("queu") && err.contains("line 7") && err.contains("ptxd.toml"),
        "{err}"
    );
}

/// The host end of a pty pair whose device end ptxd opens by name.
fn host_port() -> (serialport::TTYPort, String) {
    use serialport::SerialPort;
    let (mut host, device) = serialport::TTYPort::pair().unwrap();
    host.set_timeout(Duration::from_millis(50)).unwrap();
    let name = device.name().expect("a pty has a name");
    drop(device); // ptxd opens it by name, as it would /dev/ttyS0
    (host, name)
}

/// Read frames (CRC-checked) until `done` says enough or 60 s pass.
fn read_until(host: &mut serialport::TTYPort, seen: &mut Vec<Value>, done: impl Fn(&[Value]) -> bool) {
    use std::io::Read;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(seen) {
        assert!(Instant::now() < deadline, "frames so far: {seen:?}");
        if let Ok(n) = host.read(&mut buf) {
            pending.extend_from_slice(&buf[..n]);
        }
        while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let line = String::from_utf8(line).unwrap();
            let json = decode_line(line.trim_end()).unwrap_or_else(|| panic!("bad CRC: {line}"));
            seen.push(serde_json::from_str(json).unwrap());
        }
    }
}

fn results(seen: &[Value], seq: u64) -> usize {
    seen.iter().filter(|f| f["type"] == "result" && f["seq"] == seq).count()
}

#[test]
fn results_reach_the_host_and_unacknowledged_ones_survive_a_restart() {
    let _lock = common::lock_ptys();
    let rig = Rig::new(2);
    let base = std::fs::read_to_string(&rig.config).unwrap();
    let with_port = |port: &str| {
        format!("{base}\n[serial]\nport = \"{port}\"\nack_timeout_ms = 300\nmax_backoff_ms = 1000\nheartbeat_s = 1\ndevice_id = \"rig\"\n")
    };
    let (mut host, port) = host_port();
    std::fs::write(&rig.config, with_port(&port)).unwrap();
    let mut child = rig.start();
    let mut seen = Vec::new();
    read_until(&mut host, &mut seen, |s| s.iter().any(|f| f["type"] == "hello"));
    assert_eq!(seen[0]["device"], "rig");
    assert_eq!(seen[0]["last_seq"], 0);

    std::fs::write(rig.path("incoming/first.png"), real_png()).unwrap();
    read_until(&mut host, &mut seen, |s| results(s, 1) >= 1);
    let first = seen.iter().find(|f| f["type"] == "result").unwrap().clone();
    assert_eq!(first["source"], "watch:first.png");
    assert_eq!(first["verdict"], "positive");
    assert_eq!(
        (first["v"].as_u64(), first["needs_attention"].as_bool()),
        (Some(2), Some(true))
    );
    // the frame is the journal's record
    let journaled = rig.journal();
    assert_eq!(first["input_sha256"], journaled[0]["input_sha256"]);
    std::io::Write::write_all(&mut host, b"ACK 1\n").unwrap();

    // a failure is reported too; the host never ACKs it: resent, with heartbeats between
    std::fs::write(rig.path("incoming/broken.dcm"), b"DICM? no").unwrap();
    read_until(&mut host, &mut seen, |s| {
        results(s, 2) >= 2 && s.iter().any(|f| f["type"] == "status")
    });
    let second = seen.iter().find(|f| f["type"] == "result" && f["seq"] == 2).unwrap();
    assert!(second["error"].as_str().unwrap().contains("broken.dcm"));
    assert_eq!(results(&seen, 1), 1, "ACKed: never resent");
    let log = terminate(child);
    // an open port says nothing of a host: "host seen" only once a line came from it
    let open = log.find("port open").unwrap_or_else(|| panic!("{log}"));
    let seen_at = log.find("host seen").unwrap_or_else(|| panic!("{log}"));
    assert!(open < seen_at && !log.contains("link up"), "{log}");
    assert!(
        log.contains("#2 watch:broken.dcm: not_analyzed (unsupported)"),
        "failures carry their seq: {log}"
    );
    let acks: Value = serde_json::from_slice(&std::fs::read(rig.path("state/acks.json")).unwrap()).unwrap();
    assert_eq!(acks["through"], 1);

    // reboot with the host on a new line: hello, then only the unacknowledged result
    let (mut host, port) = host_port();
    std::fs::write(&rig.config, with_port(&port)).unwrap();
    child = rig.start();
    let mut seen = Vec::new();
    read_until(&mut host, &mut seen, |s| results(s, 2) >= 1);
    assert_eq!(seen[0]["type"], "hello");
    assert_eq!(seen[0]["last_seq"], 2);
    assert_eq!(results(&seen, 1), 0);
    std::io::Write::write_all(&mut host, b"ACK 2\nSTATUS\n").unwrap();
    read_until(&mut host, &mut seen, |s| {
        s.iter().any(|f| f["type"] == "status" && f["unacked"] == 0)
    });
    terminate(child);
}

/// The colour at (x, y) of the screen snapshot, once it exists.
fn screen_pixel(rig: &Rig, x: u32, y: u32) -> Option<[u8; 3]> {
    let bytes = std::fs::read(rig.path("screen/screen.png")).ok()?;
    let img = image::load_from_memory(&bytes).ok()?.to_rgb8();
    Some(img.get_pixel(x, y).0)
}

/// Wait until the screen's banner (top-left corner) has `colour`.
fn wait_for_banner(rig: &Rig, colour: [u8; 3], what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = screen_pixel(rig, 1, 1);
        if seen == Some(colour) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("ptxd exited early: {status}: {}", stderr(child));
        }
        assert!(
            Instant::now() < deadline,
            "{what}: banner is {seen:?}, expected {colour:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const SLATE: [u8; 3] = [40, 60, 90];
const AMBER: [u8; 3] = [230, 150, 0];
const RED: [u8; 3] = [220, 30, 30];

#[test]
fn the_screen_shows_idle_then_each_result_and_without_gpio_the_alert_is_off() {
    let rig = Rig::new(2);
    let base = std::fs::read_to_string(&rig.config).unwrap();
    // [gpio] with the default chip: this machine (and CI) has no /dev/gpiochip0
    assert!(
        !Path::new("/dev/gpiochip0").exists(),
        "this test needs a machine without GPIO"
    );
    let extra = "\n[display]\nkind = \"png\"\ndir = \"screen\"\nsize = [320, 240]\n\
                 \n[gpio]\nled = 17\nbuzzer = 22\nack_button = 23\n";
    // a positive holds the screen for alert_hold_s (no ACK button here: no GPIO)
    let base = base.replace(
        "overlay_size = [320, 240]",
        "overlay_size = [320, 240]\nalert_hold_s = 8",
    );
    std::fs::write(&rig.config, format!("{base}{extra}")).unwrap();
    let mut child = rig.start();
    wait_for_banner(&rig, SLATE, "idle screen", &mut child);

    std::fs::write(rig.path("incoming/ptx.png"), real_png()).unwrap();
    rig.wait_for_records(1, &mut child);
    wait_for_banner(&rig, RED, "positive result", &mut child);
    // the radiograph is on screen under the banner: grey levels, not a black screen
    let shot = image::open(rig.path("screen/screen.png")).unwrap().to_rgb8();
    assert_eq!(shot.dimensions(), (320, 240));
    let grey = (60..180)
        .flat_map(|y| (100..220).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let [r, g, b] = shot.get_pixel(x, y).0;
            r == g && g == b && r > 20
        })
        .count();
    assert!(grey > 2000, "radiograph pixels on screen: {grey}");

    // a file that cannot be read: journaled at once, but its screen waits for the positive's
    // hold, and the positive's screen says so (amber text on the free footer line)
    std::fs::write(rig.path("incoming/broken.png"), b"\x89PNG\r\n\x1a\n broken").unwrap();
    rig.wait_for_records(2, &mut child);
    let badge_deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let shot = image::open(rig.path("screen/screen.png")).unwrap().to_rgb8();
        // the badge has the screen's last text line (224..236 at 320x240), below the foot
        let amber = (224..240)
            .flat_map(|y| (0..320).map(move |x| (x, y)))
            .filter(|&(x, y)| shot.get_pixel(x, y).0 == AMBER)
            .count();
        let still_positive = (100..220).filter(|&x| shot.get_pixel(x, 120).0 != [0, 0, 0]).count() > 20;
        if amber > 20 && still_positive {
            break;
        }
        assert!(
            Instant::now() < badge_deadline,
            "the positive must hold the screen and count the waiting result (amber {amber})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // then, once the hold is over: the error screen (red banner, no picture)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shot = image::open(rig.path("screen/screen.png")).unwrap().to_rgb8();
        let lit_grey = (60..180)
            .flat_map(|y| (100..220).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let [r, g, b] = shot.get_pixel(x, y).0;
                r == g && g == b && r > 20 && r < 250
            })
            .count();
        if shot.get_pixel(1, 1).0 == RED && lit_grey < 50 {
            break;
        }
        assert!(Instant::now() < deadline, "no error screen (grey pixels {lit_grey})");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = terminate(child);
    let gpio_lines: Vec<&str> = log.lines().filter(|l| l.contains("gpio")).collect();
    assert_eq!(gpio_lines.len(), 1, "one line about the missing GPIO: {log}");
    assert!(
        gpio_lines[0].contains("/dev/gpiochip0") && gpio_lines[0].contains("off"),
        "{log}"
    );
}

#[test]
fn a_lost_capture_device_is_reported_and_trigger_is_answered_while_files_are_served() {
    let _lock = common::lock_ptys();
    let rig = Rig::new(2);
    let base = std::fs::read_to_string(&rig.config).unwrap();
    let (mut host, port) = host_port();
    let extra = format!(
        "\n[serial]\nport = \"{port}\"\nheartbeat_s = 1\n\
         \n[capture]\ndevice = \"/dev/video-not-here\"\nretry_max_ms = 1000\n\
         \n[display]\nkind = \"png\"\ndir = \"screen\"\nsize = [320, 240]\n"
    );
    std::fs::write(&rig.config, format!("{base}{extra}")).unwrap();
    let mut child = rig.start();
    let mut seen = Vec::new();
    read_until(&mut host, &mut seen, |s| {
        s.iter().any(|f| f["type"] == "status" && f["state"] == "capture-lost")
    });
    wait_for_banner(&rig, AMBER, "idle screen with the capture lost", &mut child);
    std::io::Write::write_all(&mut host, b"TRIGGER\n").unwrap();
    read_until(&mut host, &mut seen, |s| {
        s.iter().any(|f| f["type"] == "error" && f["reason"] == "no-capture")
    });
    let answer = seen.iter().find(|f| f["reason"] == "no-capture").unwrap();
    assert!(answer["detail"].as_str().unwrap().contains("not streaming"), "{answer}");

    // files are still served, shown and reported
    std::fs::write(rig.path("incoming/ptx.png"), real_png()).unwrap();
    read_until(&mut host, &mut seen, |s| results(s, 1) >= 1);
    wait_for_banner(&rig, RED, "positive result", &mut child);

    // where a file came from is the folder it was found in, not its name: a dropped file
    // named like a frame is a watch-folder file; a frame in the capture spool is a capture
    std::fs::write(
        rig.path("incoming/capture-video0-forged.png"),
        phantom("phantom-clear.png"),
    )
    .unwrap();
    read_until(&mut host, &mut seen, |s| results(s, 2) >= 1);
    let frame = "capture-video0-20261128T120000000Z.png";
    std::fs::write(
        rig.path(&format!("incoming/captured/{frame}")),
        phantom("phantom-clear.png"),
    )
    .unwrap();
    read_until(&mut host, &mut seen, |s| results(s, 3) >= 1);
    let source = |seq: u64| {
        let r = seen.iter().find(|f| f["type"] == "result" && f["seq"] == seq).unwrap();
        r["source"].as_str().unwrap().to_string()
    };
    assert_eq!(source(2), "watch:capture-video0-forged.png");
    assert_eq!(source(3), format!("capture:{frame}"));
    assert!(
        rig.path(&format!("incoming/done/{frame}")).is_file(),
        "a frame is moved on like a file"
    );
    let log = terminate(child);
    let lost: Vec<&str> = log.lines().filter(|l| l.contains("video-not-here")).collect();
    assert_eq!(lost.len(), 1, "one line per outage, not one per retry: {log}");
}

#[test]
fn systemd_hears_ready_and_watchdog_pings() {
    use std::os::unix::net::UnixDatagram;
    let rig = Rig::new(1);
    let socket_path = rig.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ptxd"))
        .args(["run", "--config", rig.config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut messages = Vec::new();
    let mut buf = [0u8; 512];
    while messages.iter().filter(|m: &&String| m.contains("WATCHDOG=1")).count() < 3 {
        let n = socket.recv(&mut buf).expect("a notify message within 60 s");
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let ready = messages
        .iter()
        .position(|m| m.contains("READY=1"))
        .expect("READY=1 sent");
    let first_ping = messages.iter().position(|m| m.contains("WATCHDOG=1")).unwrap();
    assert!(ready < first_ping, "{messages:?}");
    terminate(child);
}

/// Fill the filesystem holding `dir` to the last byte; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
    }
    path
}

#[test]
fn a_full_disk_stalls_without_losing_anything_and_resumes_when_space_returns() {
    // SAFETY: geteuid has no preconditions
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: mounting small filesystems needs root (CI runs as root)");
        return;
    }
    let _lock = common::lock_ptys();
    let rig = Rig::new(4);
    // a small filesystem for the journal's folder, and one each for the overlays and masks
    let state = rig.path("state");
    let (overlays, masks) = (rig.path("state/overlays"), rig.path("state/masks"));
    let Some(_state_fs) = Tmpfs::mount(&state, "1m") else {
        eprintln!("SKIPPED: this machine does not allow mounting a tmpfs (a container without CAP_SYS_ADMIN)");
        return;
    };
    let _overlay_fs = Tmpfs::mount(&overlays, "1m").expect("a second tmpfs");
    let _mask_fs = Tmpfs::mount(&masks, "1m").expect("a third tmpfs");
    let base = std::fs::read_to_string(&rig.config).unwrap();
    let (mut host, port) = host_port();
    let extra = format!(
        "\n[serial]\nport = \"{port}\"\nheartbeat_s = 1\n\
         \n[display]\nkind = \"png\"\ndir = \"screen\"\nsize = [320, 240]\n"
    );
    std::fs::write(&rig.config, format!("{base}{extra}")).unwrap();
    let mut child = rig.start();
    wait_until_watching(&rig);
    let mut seen = Vec::new();
    let disk_full = |s: &[Value]| {
        s.iter()
            .filter(|f| f["type"] == "error" && f["reason"] == "disk-full")
            .count()
    };
    // each durable step in turn, in the order the first one can be forced: the journal
    // first, while it is empty (a later append could fit in its last page)
    for (round, (step, dir)) in [("journal", &state), ("overlay", &overlays), ("mask", &masks)]
        .into_iter()
        .enumerate()
    {
        let filler = fill(dir);
        let name = format!("{step}-full.png");
        std::fs::write(rig.path(&format!("incoming/{name}")), real_png()).unwrap();
        read_until(&mut host, &mut seen, |s| disk_full(s) > round);
        let error = seen.iter().rev().find(|f| f["reason"] == "disk-full").unwrap();
        assert!(error["detail"].as_str().unwrap().contains("No space left"), "{error}");
        // nothing journaled, the input where it was, the screen and the status say so
        assert_eq!(rig.journal().len(), round, "{step}: nothing journaled while full");
        assert!(
            rig.path(&format!("incoming/{name}")).is_file(),
            "{step}: the input stays"
        );
        wait_for_banner(&rig, AMBER, &format!("{step}: disk-full screen"), &mut child);
        host.write_all(b"STATUS\n").unwrap();
        read_until(&mut host, &mut seen, |s| {
            s.iter().any(|f| f["type"] == "status" && f["state"] == "disk-full")
        });
        // space returns: the daemon resumes by itself, and the result is recorded once
        std::fs::remove_file(&filler).unwrap();
        let seq = round as u64 + 1;
        read_until(&mut host, &mut seen, |s| results(s, seq) >= 1);
        let records = rig.journal();
        assert_eq!(records.len(), round + 1, "{step}: {records:?}");
        let r = &records[round];
        assert_eq!(r["source"], format!("watch:{name}"));
        assert_eq!(r["verdict"], "positive", "{r}");
        for key in ["overlay", "mask"] {
            let file = r[key].as_str().unwrap_or_else(|| panic!("{step}: no {key} in {r}"));
            assert!(Path::new(file).is_file(), "{file}");
        }
        assert!(rig.path(&format!("incoming/done/{name}")).is_file(), "{step}: moved on");
        wait_for_banner(
            &rig,
            RED,
            &format!("{step}: the result after the disk returned"),
            &mut child,
        );
    }
    let log = terminate(child);
    assert!(log.contains("stopped: 3 analyzed, 0 failed"), "{log}");
    // no half-written temporary files left to keep a disk full
    for dir in [&state, &overlays, &masks] {
        let names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(names.is_empty(), "{}: {names:?}", dir.display());
    }
}

/// How ptxd writes a file name that is not UTF-8: `\xNN` for each byte that is not.
fn escaped(name: &[u8]) -> String {
    let mut text = String::new();
    for chunk in name.utf8_chunks() {
        text.push_str(chunk.valid());
        for b in chunk.invalid() {
            text.push_str(&format!("\\x{b:02X}"));
        }
    }
    text
}

#[test]
fn a_burst_of_10000_odd_files_is_each_recorded_exactly_once() {
    use std::collections::BTreeSet;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let rig = Rig::new(4);
    let incoming = rig.path("incoming");
    // as root, ptxd runs as nobody, so that a file can be unreadable to it
    // SAFETY: geteuid has no preconditions
    let nobody = (unsafe { libc::geteuid() } == 0).then_some(65534);
    if nobody.is_some() {
        let status = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(rig.dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let mut child = rig.start_as(nobody);
    // one log line per refused file: read them as they come, or the pipe fills and blocks ptxd
    let mut stderr = child.stderr.take().unwrap();
    let drain = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut log);
        log
    });
    wait_until_watching(&rig);

    let mut expected = Vec::new();
    let started = Instant::now();
    for i in 0..10_000 {
        let name: Vec<u8> = match i % 8 {
            0 => format!("empty {i}.png").into_bytes(),
            1 => [b"raw-\xff\xfe-".as_slice(), i.to_string().as_bytes(), b".png"].concat(),
            2 => format!("\u{fc}n\u{ef}c\u{f8}d\u{e9}-{i}.dcm").into_bytes(),
            3 => format!("-{i}.png").into_bytes(),
            4 => format!("{}-{i}.jpg", "long".repeat(50)).into_bytes(),
            _ => format!("f{i:05}.png").into_bytes(),
        };
        let bytes = match i % 3 {
            0 => Vec::new(),
            _ => format!("not an image {i}").into_bytes(),
        };
        std::fs::write(incoming.join(OsStr::from_bytes(&name)), bytes).unwrap();
        expected.push(format!("watch:{}", escaped(&name)));
    }
    // same bytes, names that differ only in bytes that are not UTF-8: two sources
    for name in [b"twin-\xff.png".as_slice(), b"twin-\xfe.png"] {
        std::fs::write(incoming.join(OsStr::from_bytes(name)), b"").unwrap();
        expected.push(format!("watch:{}", escaped(name)));
    }
    let made = started.elapsed();
    // a symlink to a real radiograph outside the folder, one to nothing
    std::os::unix::fs::symlink(data(REAL_PNG), incoming.join("link-to-radiograph.png")).unwrap();
    std::os::unix::fs::symlink(rig.path("nowhere.png"), incoming.join("dangling.png")).unwrap();
    expected.extend(["watch:link-to-radiograph.png".to_string(), "watch:dangling.png".into()]);
    if nobody.is_some() {
        let p = incoming.join("unreadable.png");
        std::fs::write(&p, real_png()).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
        expected.push("watch:unreadable.png".into());
    }
    // never taken: a FIFO (reading it would block) and a folder
    let fifo = std::ffi::CString::new(incoming.join("pipe.png").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::fs::create_dir(incoming.join("folder.png")).unwrap();

    let records = rig.wait_for_records_within(expected.len(), &mut child, Duration::from_secs(300));
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(1000)); // the last move
    terminate(child);
    let log = drain.join().unwrap();
    assert!(
        log.contains(&format!("stopped: 1 analyzed, {} failed", expected.len() - 1)),
        "{log}"
    );
    eprintln!("{} files made in {made:?}, all recorded in {took:?}", expected.len());
    let sources: Vec<String> = records
        .iter()
        .map(|r| r["source"].as_str().unwrap().to_string())
        .collect();
    let unique: BTreeSet<&String> = sources.iter().collect();
    assert_eq!(unique.len(), sources.len(), "a file recorded twice");
    let wanted: BTreeSet<&String> = expected.iter().collect();
    assert_eq!(unique, wanted, "every file recorded once");
    let by_source = |s: &str| records.iter().find(|r| r["source"] == s).unwrap();
    assert_eq!(by_source("watch:link-to-radiograph.png")["verdict"], "positive");
    for (source, kind) in [
        ("watch:dangling.png", "io"),
        ("watch:empty 0.png", "decode"),
        ("watch:f00005.png", "unsupported"),
    ] {
        let r = by_source(source);
        assert_eq!(
            (r["verdict"].as_str(), r["error_kind"].as_str()),
            (Some("not_analyzed"), Some(kind)),
            "{r}"
        );
    }
    if nobody.is_some() {
        assert_eq!(by_source("watch:unreadable.png")["error_kind"], "io");
    }
    // what is left in the folder: the two that are never taken, and ptxd's own folders
    let mut left = rig.names("incoming");
    left.retain(|n| !["done", "failed"].contains(&n.as_str()));
    assert_eq!(left, ["folder.png", "pipe.png"], "{log}");
    assert_eq!(rig.names("incoming/done").len(), 1, "the radiograph");
    assert_eq!(
        rig.names("incoming/failed").len(),
        2 * (expected.len() - 1),
        "every refused file and its .error.txt"
    );
}

/// Peak resident memory of a running process (VmHWM), in MB.
fn peak_rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kb / 1024
}

#[test]
fn a_host_that_floods_and_never_reads_leaves_memory_bounded_and_analysis_going() {
    use std::io::Read;
    let _lock = common::lock_ptys();
    // 40,000 in CI; PTXD_TEST_BACKLOG=100000 for the figure in docs/reliability.md
    let backlog: u64 = std::env::var("PTXD_TEST_BACKLOG")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40_000);
    let rig = Rig::new(2);
    // years of results the host never acknowledged (26 MB): the link must read them from
    // the journal as the window opens, not hold them
    std::fs::create_dir_all(rig.path("state")).unwrap();
    let mut journal = std::io::BufWriter::new(std::fs::File::create(rig.path("state/journal.log")).unwrap());
    for seq in 1..=backlog {
        let mut record = common::record();
        record.seq = seq;
        record.source = format!("watch:{seq:08}.dcm");
        let json = serde_json::to_string(&record).unwrap();
        journal
            .write_all(ptxd::record::journal::encode_line(&json).as_bytes())
            .unwrap();
    }
    drop(journal);
    let (mut host, port) = host_port();
    let base = std::fs::read_to_string(&rig.config).unwrap();
    std::fs::write(
        &rig.config,
        format!("{base}\n[serial]\nport = \"{port}\"\nack_timeout_ms = 500\nheartbeat_s = 1\n"),
    )
    .unwrap();
    let mut child = rig.start();
    read_until(&mut host, &mut Vec::new(), |s| s.iter().any(|f| f["type"] == "hello"));

    // the host writes 6 MB and reads nothing: over-long lines, binary noise, bad words, and
    // commands whose answers it never takes (every REPLAY 1 asks for all 40,000 results)
    let mut writer = host.try_clone_native().unwrap();
    let flood = std::thread::spawn(move || {
        let mut noise = 0x2545_f491_4f6c_dd1du64;
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        for i in 0..96 {
            let chunk = match i % 4 {
                0 => vec![b'A'; 65536],
                1 => (0..65536)
                    .map(|_| {
                        noise ^= noise << 13;
                        noise ^= noise >> 7;
                        noise ^= noise << 17;
                        noise as u8
                    })
                    .collect(),
                2 => b"REPLAY 1\nNAK 7\nSTATUS\n".repeat(2978),
                _ => b"HELLO THERE\n".repeat(5461),
            };
            chunks.push(chunk);
        }
        // a link that answers every bad line, or waits out a write timeout for each answer
        // the host does not read, takes the flood for minutes
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut written = 0usize;
        for chunk in &chunks {
            let mut done = 0;
            while done < chunk.len() && Instant::now() < deadline {
                match writer.write(&chunk[done..]) {
                    Ok(n) => done += n,
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(e) => panic!("host write: {e}"),
                }
            }
            written += done;
        }
        writer.write_all(b"\n").unwrap();
        written
    });
    // meanwhile files keep being analyzed and journaled
    std::fs::write(rig.path("incoming/broken.dcm"), b"DICM? no").unwrap();
    let written = flood.join().unwrap();
    assert!(
        written > 6_000_000,
        "ptxd took only {written} bytes of the flood in 90 s"
    );
    let records = rig.wait_for_records(backlog as usize + 1, &mut child);
    assert_eq!(records.last().unwrap()["source"], "watch:broken.dcm");
    let peak = peak_rss_mb(child.id());

    // the host reads again: after the frames the pty held, it gets answers, with the whole
    // backlog counted as unacknowledged
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut pending, mut buf, mut status) = (Vec::new(), [0u8; 65536], None);
    let mut asked = Instant::now() - Duration::from_secs(10);
    while status.is_none() {
        assert!(Instant::now() < deadline, "no status frame after the flood");
        if asked.elapsed() > Duration::from_secs(1) {
            std::io::Write::write_all(&mut host, b"STATUS\n").unwrap();
            asked = Instant::now();
        }
        if let Ok(n) = host.read(&mut buf) {
            pending.extend_from_slice(&buf[..n]);
        }
        while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            // a frame cut short when the pty filled is dropped by its CRC, as a host would
            let Some(json) = std::str::from_utf8(&line).ok().and_then(|l| decode_line(l.trim_end())) else {
                continue;
            };
            let frame: Value = serde_json::from_str(json).unwrap();
            // frames the pty held from before are stale: wait for one that knows the new record
            if frame["type"] == "status" && frame["last_seq"] == backlog + 1 {
                status = Some(frame);
            }
        }
    }
    let status = status.unwrap();
    assert_eq!(status["unacked"], backlog + 1, "{status}");
    eprintln!("ptxd peak RSS with a {backlog}-result backlog and a 6 MB flood: {peak} MB");
    assert!(peak < 120, "peak RSS {peak} MB");
    terminate(child);
}
