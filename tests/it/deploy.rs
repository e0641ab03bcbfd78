//! The files in `deploy/`: the install script puts everything where the unit and the
//! example config expect it, and the unit is hardened as the README says.

use std::process::Command;

use crate::common;

use common::root;

#[test]
fn install_puts_binary_models_unit_rules_and_config_in_place() {
    let dest = tempfile::tempdir().unwrap();
    let out = Command::new(root().join("deploy/install.sh"))
        .arg(env!("CARGO_BIN_EXE_ptxd"))
        .env("DESTDIR", dest.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for file in [
        "usr/bin/ptxd",
        "lib/systemd/system/ptxd.service",
        "etc/udev/rules.d/99-ptxd.rules",
        "etc/ptxd/ptxd.toml",
        "usr/share/doc/ptxd/README.md",
        "usr/share/ptxd/board/rpi4.toml",
        "usr/share/ptxd/board/rpi5.toml",
        "usr/share/ptxd/board/jetson-orin-nano.toml",
    ] {
        assert!(dest.path().join(file).is_file(), "{file} not installed");
    }
    // on this x86 machine the installed config is the folder-only one (no devices), and
    // names the installed manifest
    let config = ptxd::config::Config::load(&dest.path().join("etc/ptxd/ptxd.toml")).unwrap();
    assert_eq!(
        config.models.manifest,
        std::path::Path::new("/usr/share/ptxd/models/manifest.toml")
    );
    if cfg!(target_arch = "x86_64") {
        assert!(
            config.serial.is_none() && config.capture.is_none() && config.display.is_none() && config.gpio.is_none(),
            "the folder-only config names no device"
        );
    }
    assert!(dest.path().join("usr/share/doc/ptxd/ptxd.example.toml").is_file());
    // `devices` writes the example with every key instead; a wrong word is refused
    let devices = tempfile::tempdir().unwrap();
    let out = Command::new(root().join("deploy/install.sh"))
        .args([env!("CARGO_BIN_EXE_ptxd"), "devices"])
        .env("DESTDIR", devices.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = ptxd::config::Config::load(&devices.path().join("etc/ptxd/ptxd.toml")).unwrap();
    assert!(config.serial.is_some(), "the example config has the serial link");
    let out = Command::new(root().join("deploy/install.sh"))
        .args([env!("CARGO_BIN_EXE_ptxd"), "board"])
        .env("DESTDIR", devices.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // installed, ptxd finds its models from any folder without --manifest (beside the
    // binary: <prefix>/bin/ptxd -> <prefix>/share/ptxd/models)
    let elsewhere = tempfile::tempdir().unwrap();
    let found = Command::new(dest.path().join("usr/bin/ptxd"))
        .args(["doctor", "--quick"])
        .current_dir(elsewhere.path())
        .env_remove("PTXD_MANIFEST")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&found.stdout);
    assert!(
        found.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&found.stderr)
    );
    assert_eq!(text.matches("sha256 ok").count(), 3, "{text}");
    // every model file the manifest lists came along, with its checksum (doctor loads and runs them)
    let manifest = dest.path().join("usr/share/ptxd/models/manifest.toml");
    let doctor = Command::new(dest.path().join("usr/bin/ptxd"))
        .args(["doctor", "--manifest", manifest.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(doctor.status.success(), "{text}");
    assert_eq!(text.matches("sha256 ok").count(), 3, "{text}");
    // the design's DenseNet121 pipeline came along too
    let variant = dest.path().join("usr/share/ptxd/models/densenet121.toml");
    let doctor = Command::new(dest.path().join("usr/bin/ptxd"))
        .args(["doctor", "--quick", "--manifest", variant.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("ptx-cls-densenet121"), "{text}");
    assert_eq!(text.matches("sha256 ok").count(), 3, "{text}");
    // the reference vectors came along: the installed models can be checked and a variant
    // chosen on this CPU (variant = "auto")
    let choose = Command::new(dest.path().join("usr/bin/ptxd"))
        .args([
            "bench",
            "--choose",
            "--runs",
            "1",
            "--json",
            "--manifest",
            manifest.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&choose.stdout);
    assert!(
        choose.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&choose.stderr)
    );
    let choice: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(choice["chosen"].is_string(), "{choice}");
    // the unit runs what was installed, with the installed config
    let unit = std::fs::read_to_string(dest.path().join("lib/systemd/system/ptxd.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/ptxd run --config /etc/ptxd/ptxd.toml"));
}

#[test]
fn the_unit_is_notify_type_with_a_watchdog_and_hardened() {
    let unit_path = root().join("deploy/ptxd.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "User=ptxd",
        "ProtectSystem=strict",
        "PrivateNetwork=yes",
        "DevicePolicy=closed",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "{line} missing");
    }
    let allowed: Vec<&str> = unit.lines().filter_map(|l| l.strip_prefix("DeviceAllow=")).collect();
    for class in ["char-video4linux", "char-fb", "char-spi", "char-gpiochip", "char-ttyS"] {
        assert!(allowed.iter().any(|a| a.starts_with(class)), "{class} not allowed");
    }
    // systemd's own reading of it: no unknown keys, and its exposure score
    let (score, report) = exposure(&[unit_path.to_str().unwrap()]);
    assert!(score <= 1.5, "exposure {score}:\n{report}");
}

/// `systemd-analyze security --offline` with `args`: its overall exposure score and report.
/// Fails on a key systemd does not know.
fn exposure(args: &[&str]) -> (f32, String) {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .args(args)
        .output()
        .expect("systemd-analyze (Debian package systemd; test.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Unknown") && !stderr.contains("Failed"), "{stderr}");
    let score: f32 = stdout
        .lines()
        .find_map(|l| l.split("Overall exposure level for ptxd.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{stdout}\n{stderr}"));
    (score, stdout)
}

/// The drop-in for the DICOM listener, the PACS and MQTT gives the unit the network, and
/// only that: installed as the README says, systemd reads the pair with the network open
/// and the rest of the hardening in place.
#[test]
fn the_network_drop_in_opens_the_network_and_nothing_else() {
    let dest = tempfile::tempdir().unwrap();
    let units = dest.path().join("etc/systemd/system");
    std::fs::create_dir_all(units.join("ptxd.service.d")).unwrap();
    std::fs::copy(root().join("deploy/ptxd.service"), units.join("ptxd.service")).unwrap();
    std::fs::copy(
        root().join("deploy/network.conf"),
        units.join("ptxd.service.d/network.conf"),
    )
    .unwrap();
    let (closed, _) = exposure(&[root().join("deploy/ptxd.service").to_str().unwrap()]);
    let (open, report) = exposure(&[&format!("--root={}", dest.path().display()), "ptxd.service"]);
    let line = |key: &str| report.lines().find(|l| l.contains(key)).unwrap_or_default().to_string();
    assert!(
        line("PrivateNetwork=").contains("access to the host's network"),
        "{report}"
    );
    assert!(
        line("AF_(INET|INET6)").starts_with('✗'),
        "Internet sockets allowed: {report}"
    );
    for kept in [
        "ProtectSystem=",
        "NoNewPrivileges=",
        "User=",
        "~AF_PACKET",
        "~AF_NETLINK",
        "~@privileged",
    ] {
        assert!(line(kept).starts_with('✓'), "{kept} no longer holds: {report}");
    }
    // the network's share of the score, not more: 0.5 for PrivateNetwork, 0.2 for IPAddressDeny
    assert!(open - closed <= 1.0, "exposure {closed} -> {open}:\n{report}");
}
