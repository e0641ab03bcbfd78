//! The MQTT uplink against a real `mosquitto` (Debian's) on loopback, over TLS with a test
//! CA made here by `openssl`, read by a real `mosquitto_sub` (the README's own command):
//! results arrive in order, each once, across a broker restart and a SIGKILL of ptxd; the
//! retained status says what the service is doing and, by its last will, that a killed
//! ptxd is offline; commands replay and report; a broker whose certificate another CA
//! signed is refused; `ptxd doctor` checks the broker.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;

use common::{free_port, root, Running};
use serde_json::Value;

const DEVICE: &str = "ward3-xray";

/// `openssl` with `args` in `dir`; the test fails with its stderr.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new P-256 key `<name>.key` and its certificate request `<name>.csr` for `subject`.
fn request(dir: &Path, name: &str, subject: &str) {
    let (key, csr) = (format!("{name}.key"), format!("{name}.csr"));
    let mut args: Vec<&str> = "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
        .split(' ')
        .collect();
    args.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
    openssl(dir, &args);
}

/// `<name>.pem`, `<name>.csr` signed by the CA `ca`, with the extensions `ext` (which also
/// make it X.509 v3: rustls takes no other).
fn sign(dir: &Path, name: &str, ca: &str, ext: &str) {
    let ext_file = format!("{name}.ext");
    std::fs::write(dir.join(&ext_file), format!("{ext}\n")).unwrap();
    let (csr, cert, ca_pem, ca_key) = (
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{ca}.pem"),
        format!("{ca}.key"),
    );
    let mut args = vec!["x509", "-req", "-in", &csr, "-CA", &ca_pem, "-CAkey", &ca_key];
    args.extend(["-CAcreateserial", "-out", &cert, "-days", "2", "-extfile", &ext_file]);
    openssl(dir, &args);
}

/// A CA named `name` in `dir` (`<name>.pem`, `<name>.key`) and, signed by it, a server
/// certificate for 127.0.0.1 (`<name>-server.pem`, `.key`).
fn make_ca(dir: &Path, name: &str) {
    let (key, cert, subject) = (format!("{name}.key"), format!("{name}.pem"), format!("/CN={name}"));
    let mut args: Vec<&str> = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
        .split(' ')
        .collect();
    args.extend(["-keyout", &key, "-out", &cert, "-subj", &subject]);
    openssl(dir, &args);
    let server = format!("{name}-server");
    request(dir, &server, "/CN=localhost");
    sign(dir, &server, name, "subjectAltName=IP:127.0.0.1,DNS:localhost");
}

/// A client certificate `<name>.pem` (key `<name>.key`) signed by the CA `ca` in `dir`.
fn make_client(dir: &Path, ca: &str, name: &str) {
    request(dir, name, &format!("/CN={name}"));
    sign(dir, name, ca, "extendedKeyUsage=clientAuth");
}

/// A mosquitto with a TLS listener on loopback, its certificate signed by `ca`, keeping its
/// sessions and retained messages in `dir` across restarts.
struct Broker {
    dir: PathBuf,
    port: u16,
    /// A second listener that asks every client for a certificate signed by `ca`.
    mutual_port: u16,
    /// A third that takes only the user `ward3` with its password.
    password_port: u16,
}

impl Broker {
    fn new(dir: &Path, ca: &str) -> Broker {
        let (port, mutual_port, password_port) = (free_port(), free_port(), free_port());
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        let passwords = dir.join("passwords");
        let made = Command::new("mosquitto_passwd")
            .args(["-b", "-c", passwords.to_str().unwrap(), "ward3", "secret of ward 3"])
            .status()
            .expect("mosquitto_passwd (Debian package mosquitto)");
        assert!(made.success());
        let tls = format!(
            "cafile {0}/{ca}.pem\ncertfile {0}/{ca}-server.pem\nkeyfile {0}/{ca}-server.key\n",
            dir.display()
        );
        let config = format!(
            "per_listener_settings true\npersistence true\npersistence_location {0}/\n\
             # run as the test's user: the keys are in its private folder\nuser {1}\n\
             listener {port} 127.0.0.1\n{tls}allow_anonymous true\n\
             listener {mutual_port} 127.0.0.1\n{tls}require_certificate true\nallow_anonymous true\n\
             listener {password_port} 127.0.0.1\n{tls}allow_anonymous false\npassword_file {2}\n",
            dir.display(),
            user.trim(),
            passwords.display()
        );
        std::fs::write(dir.join("mosquitto.conf"), config).unwrap();
        Broker {
            dir: dir.to_path_buf(),
            port,
            mutual_port,
            password_port,
        }
    }

    fn start(&self) -> Running {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (Debian package mosquitto; ./test.sh installs it)");
        let running = Running(Some(child));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        running
    }

    /// `mosquitto_sub`/`mosquitto_pub` arguments to reach this broker, trusting `ca`.
    fn client_args(&self, ca: &str) -> Vec<String> {
        let cafile = self.dir.join(format!("{ca}.pem"));
        [
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "--cafile",
            cafile.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// A subscriber to every topic of the device, with a session the broker keeps (QoS 1,
    /// not clean), writing `topic payload` lines to `out`.
    fn subscribe(&self, out: &Path) -> Running {
        let file = std::fs::File::create(out).unwrap();
        Running(Some(
            Command::new("mosquitto_sub")
                .args(self.client_args("ca"))
                .args(["-c", "-i", "test-subscriber", "-q", "1", "-v"])
                .args(["-t", &format!("ptxd/{DEVICE}/#")])
                .stdout(file)
                .stderr(Stdio::null())
                .spawn()
                .expect("mosquitto_sub (Debian package mosquitto-clients)"),
        ))
    }

    /// The retained status, as a late subscriber reads it.
    fn retained_status(&self) -> Value {
        let out = Command::new("mosquitto_sub")
            .args(self.client_args("ca"))
            .args(["-t", &format!("ptxd/{DEVICE}/status"), "-C", "1", "-W", "5"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("no retained status: {}", String::from_utf8_lossy(&out.stdout)))
    }

    fn publish(&self, topic: &str, message: &str) {
        let status = Command::new("mosquitto_pub")
            .args(self.client_args("ca"))
            .args(["-q", "1", "-t", topic, "-m", message])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// The messages the subscriber wrote so far: (topic leaf, payload as JSON).
fn received(out: &Path) -> Vec<(String, Value)> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (topic, payload) = line.split_once(' ')?;
            let leaf = topic.rsplit('/').next()?.to_string();
            Some((leaf, serde_json::from_str(payload).ok()?))
        })
        .collect()
}

/// The seqs of the result messages received, in their order.
fn result_seqs(out: &Path) -> Vec<u64> {
    received(out)
        .into_iter()
        .filter(|(leaf, _)| leaf == "result")
        .map(|(_, v)| v["seq"].as_u64().unwrap())
        .collect()
}

/// Wait until `check` holds of what the subscriber received, within `secs`.
fn wait_until(out: &Path, secs: u64, what: &str, check: impl Fn(&[(String, Value)]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check(&received(out)) {
        assert!(
            Instant::now() < deadline,
            "{what}; received:\n{}",
            std::fs::read_to_string(out).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn phantom(name: &str) -> Vec<u8> {
    std::fs::read(root().join("models/reference").join(name)).unwrap()
}

/// A daemon config in `dir` whose `[mqtt]` names the broker on `port` with `tls` lines.
fn mqtt_config(dir: &Path, port: u16, tls: &str) -> PathBuf {
    common::daemon_config(
        dir,
        "",
        "",
        &format!(
            "[mqtt]\nbroker = \"127.0.0.1:{port}\"\ndevice_id = \"{DEVICE}\"\n{tls}\nretry_max_ms = 1000\nkeep_alive_s = 5\n"
        ),
    )
}

fn doctor(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ptxd"))
        .args(["doctor", "--quick", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn results_reach_mosquitto_over_tls_in_order_once_each_across_a_broker_restart_and_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("broker");
    std::fs::create_dir_all(&certs).unwrap();
    make_ca(&certs, "ca");
    make_ca(&certs, "other-ca");
    let broker = Broker::new(&certs, "ca");
    let ptxd_dir = dir.path().join("ptxd");
    std::fs::create_dir_all(&ptxd_dir).unwrap();
    let config = mqtt_config(
        &ptxd_dir,
        broker.port,
        &format!("ca_file = \"{}\"", certs.join("ca.pem").display()),
    );
    let incoming = ptxd_dir.join("incoming");
    let out = dir.path().join("received.txt");

    let server = broker.start();
    let subscriber = broker.subscribe(&out);
    // a broker whose certificate another CA signed is refused, by the doctor and the daemon
    // alike: the daemon journals, and publishes nothing
    let wrong = dir.path().join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    let wrong_config = mqtt_config(
        &wrong,
        broker.port,
        &format!("ca_file = \"{}\"", certs.join("other-ca.pem").display()),
    );
    let said = doctor(&wrong_config);
    assert!(
        said.contains("FAIL") && said.contains("mqtt: broker 127.0.0.1:"),
        "{said}"
    );
    assert!(
        said.contains("UnknownIssuer"),
        "the reason names the certificate: {said}"
    );
    let refused = common::run_ptxd(&wrong_config);
    std::fs::write(wrong.join("incoming/w.png"), phantom("phantom-clear.png")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while common::journal_records(&wrong.join("state/journal.log")).is_empty() {
        assert!(Instant::now() < deadline, "the refused run did not journal");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let log = refused.stop();
    assert!(
        log.contains("MQTT: broker 127.0.0.1:") && log.contains("UnknownIssuer"),
        "{log}"
    );
    assert!(
        received(&out).is_empty(),
        "nothing went through a broker it could not trust"
    );
    assert!(!wrong.join("state/mqtt.json").exists());

    // a broker that asks for a client certificate: refused without one, accepted with it
    make_client(&certs, "ca", "ward3-client");
    let said = doctor(&mqtt_config(
        &wrong,
        broker.mutual_port,
        &format!("ca_file = \"{}\"", certs.join("ca.pem").display()),
    ));
    assert!(said.contains("FAIL") && said.contains("mqtt: broker"), "{said}");
    let said = doctor(&mqtt_config(
        &wrong,
        broker.mutual_port,
        &format!(
            "ca_file = \"{0}/ca.pem\"\nclient_cert = \"{0}/ward3-client.pem\"\nclient_key = \"{0}/ward3-client.key\"",
            certs.display()
        ),
    ));
    assert!(said.contains("(TLS): connected, subscribed"), "{said}");
    // a broker that asks for a user name and password: the password file's first line
    let ca_file = format!("ca_file = \"{}\"", certs.join("ca.pem").display());
    for (password, accepted) in [("secret of ward 3\n", true), ("not it\n", false)] {
        std::fs::write(wrong.join("password"), password).unwrap();
        let said = doctor(&mqtt_config(
            &wrong,
            broker.password_port,
            &format!("{ca_file}\nusername = \"ward3\"\npassword_file = \"password\""),
        ));
        assert_eq!(said.contains("(TLS): connected, subscribed"), accepted, "{said}");
    }
    let said = doctor(&mqtt_config(&wrong, broker.password_port, &ca_file));
    assert!(
        said.contains("FAIL") && said.contains("mqtt: broker"),
        "no credentials: {said}"
    );

    let said = doctor(&config);
    assert!(
        said.contains(&format!(
            "mqtt broker 127.0.0.1:{} (TLS): connected, subscribed to ptxd/{DEVICE}/status",
            broker.port
        )),
        "{said}"
    );

    let ptxd = common::run_ptxd(&config);
    std::fs::write(incoming.join("a.png"), phantom("phantom-ptx.png")).unwrap();
    std::fs::write(incoming.join("b.png"), phantom("phantom-clear.png")).unwrap();
    wait_until(&out, 120, "results #1 and #2", |got| {
        got.iter().filter(|(leaf, _)| leaf == "result").count() >= 2
    });
    // the result is the journal's record, byte for byte as JSON
    let journal = common::journal_records(&ptxd_dir.join("state/journal.log"));
    let results: Vec<Value> = received(&out)
        .into_iter()
        .filter(|(leaf, _)| leaf == "result")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(results, journal, "each record as the result contract's JSON");
    wait_until(&out, 30, "a ready status", |got| {
        got.iter()
            .any(|(leaf, v)| leaf == "status" && v["state"] == "ready" && v["last_seq"] == 2)
    });

    // the broker goes away; a third radiograph meanwhile; ptxd is killed and started again
    server.stop();
    std::fs::write(incoming.join("c.png"), phantom("phantom-clear.png")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while common::journal_records(&ptxd_dir.join("state/journal.log")).len() < 3 {
        assert!(Instant::now() < deadline, "#3 not journaled");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut ptxd = ptxd;
    ptxd.child().kill().unwrap();
    ptxd.child().wait().unwrap();
    let cursor: Value = serde_json::from_slice(&std::fs::read(ptxd_dir.join("state/mqtt.json")).unwrap()).unwrap();
    assert_eq!(
        cursor["published_through"], 2,
        "nothing acknowledged while the broker was down"
    );
    let server = broker.start();
    let ptxd = common::run_ptxd(&config);
    std::fs::write(incoming.join("d.png"), phantom("phantom-ptx.png")).unwrap();
    wait_until(&out, 120, "results #3 and #4 after the restarts", |got| {
        got.iter().filter(|(leaf, _)| leaf == "result").count() >= 4
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(result_seqs(&out), [1, 2, 3, 4], "in order, each once");

    // commands: STATUS answers, REPLAY publishes from #3 again (the seq tells a subscriber)
    broker.publish(&format!("ptxd/{DEVICE}/command"), "REPLAY 3");
    wait_until(&out, 30, "the replay of #3 and #4", |got| {
        got.iter().filter(|(leaf, _)| leaf == "result").count() >= 6
    });
    assert_eq!(result_seqs(&out), [1, 2, 3, 4, 3, 4]);
    let status = broker.retained_status();
    assert_eq!(status["state"], "ready", "{status}");
    assert_eq!(status["online"], true);
    assert_eq!(status["last_seq"], 4);
    assert_eq!(status["published_through"], 4);
    assert_eq!(status["queue"], 0);
    assert!(status["disk_free_bytes"].as_u64().unwrap() > 0, "{status}");
    assert!(status["models"]["classifier"].is_string(), "{status}");

    // SIGKILL: the broker publishes the last will, and the retained status says offline
    let mut ptxd = ptxd;
    ptxd.child().kill().unwrap();
    ptxd.child().wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut ptxd.child().stderr.take().unwrap(), &mut log).unwrap();
    assert!(log.contains("MQTT command REPLAY 3"), "each command is logged: {log}");
    wait_until(&out, 30, "the last will", |got| {
        got.last()
            .is_some_and(|(leaf, v)| leaf == "status" && v["state"] == "offline")
    });
    assert_eq!(broker.retained_status()["online"], false);
    // a clean stop says offline too, itself
    let ptxd = common::run_ptxd(&config);
    wait_until(&out, 60, "online again", |got| {
        got.last()
            .is_some_and(|(leaf, v)| leaf == "status" && v["online"] == true)
    });
    ptxd.stop();
    assert_eq!(broker.retained_status()["state"], "offline");
    assert_eq!(
        result_seqs(&out),
        [1, 2, 3, 4, 3, 4],
        "nothing published twice by the restarts"
    );
    drop(subscriber);
    server.stop();
}
