//! Shared test fixtures and paths.

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use ptxd::analysis::findings::{Finding, Side, Verdict};
use ptxd::model::infer::ModelVersions;
use ptxd::record::journal::Record;

pub fn models() -> ModelVersions {
    ModelVersions {
        classifier: "ptx-cls-segscore-unetpp-effnetlite0-int8-20261128 int8".into(),
        segmenter: "ptx-seg-unetpp-effnetlite0-int8-20261128 int8".into(),
        lungs: "ptx-lungs-unetpp-effnetlite0-int8-20261128 int8".into(),
    }
}

/// A positive result with one finding: the record of docs/serial-protocol.md's example.
pub fn record() -> Record {
    Record {
        v: 2,
        seq: 42,
        time: "2026-11-26T19:03:04Z".into(),
        source: "watch:0007.dcm".into(),
        input_sha256: Some("2de932701529c33bc0e26537a3cde9186b84f2a440dc15a6b8c576cc7709078e".into()),
        verdict: Verdict::Positive,
        needs_attention: true,
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
        error_kind: None,
        error: None,
    }
}

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the shared data beside the checkout (`$PTX_DATA`, else `../shared/data`).
pub fn data(rel: &str) -> PathBuf {
    std::env::var_os("PTX_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data"))
        .join(rel)
}

/// A real 1024x1024 pneumothorax case from real-dev (label 1 in labels.csv).
pub const REAL_PNG: &str = "real-dev/images/1.2.276.0.7230010.3.1.4.8323329.1080.1517875166.235178.png";

/// A copy of `models/` in `dir` whose segmenter file no longer matches the manifest's
/// sha256 (one byte flipped); returns the copy's manifest.
pub fn models_with_tampered_segmenter(dir: &Path) -> PathBuf {
    for f in std::fs::read_dir(root().join("models")).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
    }
    let model = dir.join("segmenter.int8.onnx");
    let mut bytes = std::fs::read(&model).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0xff;
    std::fs::write(&model, bytes).unwrap();
    dir.join("manifest.toml")
}

/// The attributes every test DICOM image shares: a digital X-ray of `w` x `h` grey pixels,
/// 16 bits allocated with `bits_stored` of them used, unsigned, `photometric`
/// ("MONOCHROME1"/"MONOCHROME2"), SOP instance `instance`. Pixel data and anything else
/// are the caller's.
pub fn dicom_grey_image(instance: &str, w: u16, h: u16, bits_stored: u16, photometric: &str) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag, vr, value: PrimitiveValue| obj.put(DataElement::new(tag, vr, value));
    put(
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION.into(),
    );
    put(tags::SOP_INSTANCE_UID, VR::UI, instance.into());
    put(tags::MODALITY, VR::CS, "DX".into());
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
    put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric.into());
    put(tags::ROWS, VR::US, PrimitiveValue::from(h));
    put(tags::COLUMNS, VR::US, PrimitiveValue::from(w));
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16));
    put(tags::BITS_STORED, VR::US, PrimitiveValue::from(bits_stored));
    put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(bits_stored - 1));
    put(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16));
    obj
}

/// The project's Python (test.sh exports PTXD_PYTHON; otherwise the venv that
/// models/training/setup-venv.sh makes).
pub fn python() -> PathBuf {
    std::env::var_os("PTXD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv-ci/bin/python"))
}

/// Run tests/dicom/make_syntaxes.py into `dir`: one real radiograph in every DICOM
/// transfer syntax, by encoders that are not ptxd's (dcmtk, OpenJPEG, pydicom).
pub fn make_dicom_syntaxes(dir: &Path) {
    let python = python();
    let status = std::process::Command::new(&python)
        .arg(root().join("tests/dicom/make_syntaxes.py"))
        .arg(data("dicom/ID_0a920cc01.dcm"))
        .arg(dir)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): run models/training/setup-venv.sh, or set PTXD_PYTHON",
                python.display()
            )
        });
    assert!(
        status.success(),
        "make_syntaxes.py failed ({status}): it needs dcmtk and libopenjp2-tools (test.sh installs them)"
    );
}

/// A loopback port nothing listens on (free when asked; the test binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped, so a failing test leaves nothing running (a ptxd
/// left behind would hold cargo's pipe open and the run would never end).
pub struct Running(pub Option<std::process::Child>);

impl Running {
    /// SIGTERM (the shell's builtin kill: no procps needed), then wait for a clean exit;
    /// its stderr when it was piped.
    pub fn stop(mut self) -> String {
        let child = self.0.take().expect("running");
        let _ = std::process::Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", child.id())])
            .status();
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "clean exit on SIGTERM: {}\n{log}", out.status);
        log
    }

    pub fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("running")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `ptxd run --config config`, its log (stderr) piped for [`Running::stop`].
pub fn run_ptxd(config: &Path) -> Running {
    Running(Some(
        std::process::Command::new(env!("CARGO_BIN_EXE_ptxd"))
            .args(["run", "--config", config.to_str().unwrap()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

/// The complete records of the journal at `path` and its sealed segments, as JSON (a line
/// being appended while it is read has no newline yet and is left out).
pub fn journal_records(path: &Path) -> Vec<serde_json::Value> {
    let segments = ptxd::record::journal::segments(path).unwrap();
    segments
        .iter()
        .map(|s| s.path.as_path())
        .chain([path])
        .flat_map(|file| {
            std::fs::read_to_string(file)
                .unwrap_or_default()
                .split_inclusive('\n')
                .filter_map(|l| l.strip_suffix('\n'))
                .map(|l| serde_json::from_str(ptxd::record::journal::decode_line(l).expect("CRC ok")).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A daemon config under `dir` (watch folder `incoming`, journal and outputs in `state`, the
/// shipped models, one thread) with `watch` lines added to `[watch]`, `output` lines to
/// `[output]` and `more` appended, written to `dir/ptxd.toml`, whose path it returns. The
/// watch folder is made.
pub fn daemon_config(dir: &Path, watch: &str, output: &str, more: &str) -> PathBuf {
    daemon_config_with(
        dir,
        &Sections {
            watch,
            output,
            more,
            ..Sections::default()
        },
    )
}

/// Lines added to [`daemon_config_with`]'s sections.
#[derive(Default)]
pub struct Sections<'a> {
    /// To `[watch]`; `settle_ms` is 200 unless these set it.
    pub watch: &'a str,
    pub journal: &'a str,
    pub output: &'a str,
    /// Appended: whole sections.
    pub more: &'a str,
}

/// [`daemon_config`] with lines for every section.
pub fn daemon_config_with(dir: &Path, sections: &Sections) -> PathBuf {
    let Sections {
        watch,
        journal,
        output,
        more,
    } = sections;
    let settle = if watch.contains("settle_ms") {
        ""
    } else {
        "settle_ms = 200"
    };
    let config = dir.join("ptxd.toml");
    let text = format!(
        r#"
[models]
manifest = "{}"
threads = 1
[watch]
dir = "incoming"
{watch}
{settle}
[journal]
path = "state/journal.log"
{journal}
[output]
overlay_dir = "state/overlays"
{output}
{more}"#,
        root().join("models/manifest.toml").display()
    );
    std::fs::write(&config, text).unwrap();
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    config
}

/// [`daemon_config`] with DICOM results in `state/dicom`.
pub fn dicom_daemon_config(dir: &Path, more: &str) -> PathBuf {
    daemon_config(dir, "", "dicom_dir = \"state/dicom\"", more)
}

/// Serialises the tests that open pty pairs (the kernel's pty allocation is shared, and every
/// test module runs in this one process).
static PTYS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Hold this while a test's pty pairs are open; a test that panicked holding it does not
/// poison it for the others.
pub fn lock_ptys() -> std::sync::MutexGuard<'static, ()> {
    PTYS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small tmpfs mounted for one test, unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// None where mounting is not allowed (a container without CAP_SYS_ADMIN).
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        status.success().then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
