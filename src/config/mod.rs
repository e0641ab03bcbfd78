//! The daemon's configuration: one TOML file, parsed once into validated types.
//!
//! Unknown keys and bad values are errors that name the key and its line (toml's spans), so
//! a typo in the field never silently falls back to a default. Relative paths are taken
//! from the config file's folder, so a config works wherever the daemon is started from.
//! `deploy/ptxd.example.toml` documents every key.

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

mod capture;
mod devices;
mod links;

pub use capture::{CaptureConfig, CaptureRule, GreyLevels, PixelFormat};
pub use devices::{DisplayConfig, FbConfig, GpioConfig, LineId, PanelModel, PanelRule, PngConfig, SpiConfig};
pub use links::{AeTitle, Broker, DeviceId, DicomConfig, MqttConfig, MqttRule, PacsConfig, SerialConfig};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config {}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {}: {source}", path.display())]
    Invalid { path: PathBuf, source: Box<ParseError> },
}

/// Why a config's text was refused: each names the key, and the value or file, at fault.
#[derive(Debug, Error)]
pub enum ParseError {
    /// Bad TOML, an unknown key or a bad value: toml names the key and its line.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error("board: give the profile's path as a string, e.g. board = \"/usr/share/ptxd/board/rpi4.toml\"")]
    BoardNotAPath,
    #[error("board = {}: cannot read it: {source}", path.display())]
    BoardUnreadable { path: PathBuf, source: std::io::Error },
    #[error("board profile {}: {source}", path.display())]
    BoardInvalid { path: PathBuf, source: toml::de::Error },
    #[error("{source} (after including the board profile {})", path.display())]
    WithBoard { path: PathBuf, source: toml::de::Error },
    #[error("pacs: results are sent from output.dicom_dir; set it (e.g. dicom_dir = \"/var/lib/ptxd/dicom\")")]
    PacsWithoutDicomDir,
    #[error(transparent)]
    Capture(#[from] CaptureRule),
    #[error(transparent)]
    Display(#[from] PanelRule),
    #[error(transparent)]
    Mqtt(#[from] MqttRule),
}

/// Decoding limits (`[input]`), as the decoder takes them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest width x height accepted.
    pub max_pixels: u64,
}

impl Limits {
    /// The most bytes a file or a received object may hold to be an image within the pixel
    /// limit: ~8 bytes a pixel (uncompressed 16-bit RGBA) plus 1 MB of headers. Larger is
    /// refused before it is read (files), received (the DICOM listener) or inflated (a
    /// deflated DICOM data set).
    pub fn max_file_bytes(&self) -> u64 {
        self.max_pixels.saturating_mul(8).saturating_add(1 << 20)
    }
}

impl Default for Limits {
    fn default() -> Self {
        // 64 megapixels: four times the largest flat-panel detectors (about 4300 x 3500).
        Limits { max_pixels: 64 << 20 }
    }
}

/// The whole configuration, validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub models: ModelsConfig,
    #[serde(default)]
    pub input: InputConfig,
    pub watch: WatchConfig,
    pub journal: JournalConfig,
    pub output: OutputConfig,
    /// The host link; absent means no serial reporting.
    pub serial: Option<SerialConfig>,
    /// The digitizer's V4L2 video output; absent means files only.
    pub capture: Option<CaptureConfig>,
    /// The attached screen; absent means none (overlay files are still written).
    pub display: Option<DisplayConfig>,
    /// Alert LED, buzzer and buttons; absent means none.
    pub gpio: Option<GpioConfig>,
    /// What the board profile says of itself (`[profile]` in `board/*.toml`).
    pub profile: Option<ProfileInfo>,
    /// The DICOM listener (C-ECHO, C-STORE); absent means none.
    pub dicom: Option<DicomConfig>,
    /// The clinic's PACS, which receives the DICOM results; absent means none.
    pub pacs: Option<PacsConfig>,
    /// The MQTT broker that receives every result and the status; absent means none.
    pub mqtt: Option<MqttConfig>,
    /// How long inputs and results are kept; absent means the defaults.
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// A board profile's description of the board, for the log and `ptxd doctor`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileInfo {
    pub name: String,
    pub cpu: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// models/manifest.toml; the model files are read from its folder.
    pub manifest: PathBuf,
    /// Inference threads (tract's matrix kernels). Default 1.
    #[serde(default = "one")]
    pub threads: NonZeroUsize,
    /// Model variant: a name ("int8", "int8-qdq") pins it; "auto" runs the fastest one that
    /// reproduces the reference outputs on this CPU; unset, the manifest's default.
    #[serde(default, deserialize_with = "variant_setting")]
    pub variant: VariantSetting,
}

/// Which variant of the models to load (`[models] variant`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum VariantSetting {
    /// Not set: the manifest's `default_variant`.
    #[default]
    ManifestDefault,
    /// `"auto"`: the fastest variant within the manifest's tolerance on this CPU, measured at
    /// the first start (or by `ptxd bench --choose`) and cached beside the journal.
    Fastest,
    /// A variant by name.
    Pinned(String),
}

impl VariantSetting {
    /// The variant named in the config, if one is.
    pub fn pinned(&self) -> Option<&str> {
        match self {
            VariantSetting::Pinned(name) => Some(name),
            _ => None,
        }
    }
}

fn variant_setting<'de, D: serde::Deserializer<'de>>(d: D) -> Result<VariantSetting, D::Error> {
    let name = String::deserialize(d)?;
    Ok(match name.as_str() {
        "auto" => VariantSetting::Fastest,
        _ => VariantSetting::Pinned(name),
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// The largest width x height accepted (decompression-bomb guard).
    #[serde(default = "default_max_pixels")]
    pub max_pixels: NonZeroU64,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            max_pixels: default_max_pixels(),
        }
    }
}

/// `[watch]`, its folders resolved: each one given or its default under `dir`.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "RawWatchConfig")]
pub struct WatchConfig {
    pub dir: PathBuf,
    pub done: PathBuf,
    pub failed: PathBuf,
    pub captured: PathBuf,
    pub queue: NonZeroUsize,
    pub settle_ms: u64,
}

impl From<RawWatchConfig> for WatchConfig {
    fn from(raw: RawWatchConfig) -> WatchConfig {
        let under = |name: &str| raw.dir.join(name);
        WatchConfig {
            done: raw.done.unwrap_or_else(|| under("done")),
            failed: raw.failed.unwrap_or_else(|| under("failed")),
            captured: raw.captured.unwrap_or_else(|| under("captured")),
            dir: raw.dir,
            queue: raw.queue,
            settle_ms: raw.settle_ms,
        }
    }
}

/// `[watch]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatchConfig {
    /// The folder new radiographs are dropped into.
    dir: PathBuf,
    /// Where analyzed inputs go (default `<dir>/done`).
    done: Option<PathBuf>,
    /// Where inputs that could not be analyzed go, each with `<name>.error.txt` (default `<dir>/failed`).
    failed: Option<PathBuf>,
    /// Where the capture device's chosen frames are spooled for analysis (default
    /// `<dir>/captured`). Their results say `capture:<name>`: the folder says where a frame
    /// came from, not its name.
    captured: Option<PathBuf>,
    /// Files handed to the pipeline but not yet analyzed, at most. Default 4. When it is full,
    /// new files wait in the folder (nothing is dropped) and are queued as room frees.
    #[serde(default = "four")]
    queue: NonZeroUsize,
    /// A file is taken once it was closed after writing (or renamed in) and its size and
    /// modification time stayed the same for this long. Default 250 ms.
    #[serde(default = "default_settle_ms")]
    settle_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    pub path: PathBuf,
    /// The live file is sealed into a segment (`<path>.<first seq>`) once it holds this
    /// many KiB; retention removes whole segments. Default 1024 (about 1,500 results).
    #[serde(default = "default_segment_kib")]
    pub segment_kib: NonZeroU32,
}

impl JournalConfig {
    /// The size at which the live file is sealed, in bytes.
    pub fn segment_bytes(&self) -> u64 {
        u64::from(self.segment_kib.get()) * 1024
    }
}

fn default_segment_kib() -> NonZeroU32 {
    NonZeroU32::new(1024).expect("not zero")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Overlay PNGs, one per result, named `<seq>-<input stem>.png`.
    pub overlay_dir: PathBuf,
    /// Predicted masks (8-bit 0/255 PNG at the input's resolution), for positives; optional.
    pub mask_dir: Option<PathBuf>,
    /// Results of DICOM inputs as DICOM (`crate::record::dicom_result`): a Structured Report
    /// `<seq>-<input stem>.sr.dcm` and the overlay as a Secondary Capture `....sc.dcm`, in
    /// the source's study; optional.
    pub dicom_dir: Option<PathBuf>,
    /// Overlay size in pixels, [width, height]. Default [1280, 720].
    #[serde(default = "default_overlay_size")]
    pub overlay_size: OverlaySize,
    /// Seconds a positive or indeterminate result holds the screen unless the ACK button is
    /// pressed (`crate::sink::screen`). Default 60.
    #[serde(default = "default_alert_hold_s")]
    pub alert_hold_s: u32,
}

fn default_alert_hold_s() -> u32 {
    60
}

/// Overlay dimensions, between 160x120 and 3840x2160.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "[u32; 2]")]
pub struct OverlaySize {
    pub width: u32,
    pub height: u32,
}

impl TryFrom<[u32; 2]> for OverlaySize {
    type Error = String;
    fn try_from([width, height]: [u32; 2]) -> Result<Self, String> {
        if !(160..=3840).contains(&width) || !(120..=2160).contains(&height) {
            return Err(format!(
                "overlay size {width}x{height} is outside 160x120 ..= 3840x2160"
            ));
        }
        Ok(OverlaySize { width, height })
    }
}

/// `#[serde(default = "yes")]`: a switch that is on unless the config turns it off.
fn yes() -> bool {
    true
}

fn one() -> NonZeroUsize {
    NonZeroUsize::MIN
}
fn four() -> NonZeroUsize {
    NonZeroUsize::new(4).expect("4 is not zero")
}
fn default_max_pixels() -> NonZeroU64 {
    NonZeroU64::new(Limits::default().max_pixels).expect("the default limit is not zero")
}
fn default_settle_ms() -> u64 {
    250
}
fn default_overlay_size() -> OverlaySize {
    OverlaySize {
        width: 1280,
        height: 720,
    }
}

/// `[retention]`: how long analyzed inputs and results are kept, and the free space kept on
/// their disks (`crate::record::retention`). Absent: the defaults, which keep a 32 GB card
/// from filling at 200 films a day (the README says what they keep).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Analyzed inputs (`done/`, `failed/`), overlays, masks and DICOM results older than
    /// this many days are removed, unless the PACS has yet to confirm them. Default 30.
    #[serde(default = "default_keep_days")]
    pub keep_days: NonZeroU32,
    /// The free space kept on each disk those are on, by removing the oldest of them first:
    /// bytes (an integer) or a share of the disk ("10%"). Default "10%".
    #[serde(default = "default_min_free")]
    pub min_free: MinFree,
    /// Minutes between sweeps (the first at start). Default 60.
    #[serde(default = "default_sweep_minutes")]
    pub sweep_minutes: NonZeroU32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            keep_days: default_keep_days(),
            min_free: default_min_free(),
            sweep_minutes: default_sweep_minutes(),
        }
    }
}

fn default_keep_days() -> NonZeroU32 {
    NonZeroU32::new(30).expect("not zero")
}
fn default_min_free() -> MinFree {
    MinFree::Percent(10.0)
}
fn default_sweep_minutes() -> NonZeroU32 {
    NonZeroU32::new(60).expect("not zero")
}

/// Free space to keep: bytes, or a share of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub enum MinFree {
    Bytes(u64),
    /// 0 to 90 percent of the disk's size.
    Percent(f64),
}

impl TryFrom<toml::Value> for MinFree {
    type Error = String;
    fn try_from(value: toml::Value) -> Result<MinFree, String> {
        let percent = |text: &str| text.strip_suffix('%').and_then(|n| n.trim().parse::<f64>().ok());
        match &value {
            toml::Value::Integer(n) if *n >= 0 => Ok(MinFree::Bytes(*n as u64)),
            toml::Value::String(text) => match percent(text) {
                Some(p) if (0.0..=90.0).contains(&p) => Ok(MinFree::Percent(p)),
                _ => Err(format!(
                    "min_free = {text:?}: give bytes (2000000000) or a share up to 90% (\"10%\")"
                )),
            },
            other => Err(format!(
                "min_free = {other}: give bytes (2000000000) or a share (\"10%\")"
            )),
        }
    }
}

/// Put `top`'s keys over `base`'s, table by table. A table whose `kind` differs (a
/// `[display]` switched from "fb" to "spi") replaces the profile's whole: its other keys
/// belong to the other kind.
fn overlay(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above))
                if below
                    .get("kind")
                    .is_none_or(|k| above.get("kind").is_none_or(|a| a == k)) =>
            {
                overlay(below, above)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        // "ptxd.toml" has the parent "": paths in it are relative to the working directory
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
        Config::parse(&text, &base).map_err(|source| ConfigError::Invalid {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Parse TOML text; relative paths are joined onto `base`. A top-level
    /// `board = "path"` includes a board profile: its keys are defaults, the text's win.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ParseError> {
        let mut table: toml::Table = text.parse()?;
        let mut config: Config = match table.remove("board") {
            // no profile: deserialize the text itself, so errors keep their line numbers
            None => toml::from_str(text)?,
            Some(board) => {
                let path = board.as_str().map(|p| base.join(p)).ok_or(ParseError::BoardNotAPath)?;
                let profile = std::fs::read_to_string(&path).map_err(|source| ParseError::BoardUnreadable {
                    path: path.clone(),
                    source,
                })?;
                let mut merged: toml::Table = profile.parse().map_err(|source| ParseError::BoardInvalid {
                    path: path.clone(),
                    source,
                })?;
                overlay(&mut merged, table);
                Config::deserialize(toml::Value::Table(merged))
                    .map_err(|source| ParseError::WithBoard { path, source })?
            }
        };
        config.check()?;
        config.resolve_paths(base);
        Ok(config)
    }

    /// The rules that span keys, or that serde's types cannot say.
    fn check(&self) -> Result<(), ParseError> {
        if let Some(capture) = &self.capture {
            capture.check()?;
        }
        if self.pacs.is_some() && self.output.dicom_dir.is_none() {
            return Err(ParseError::PacsWithoutDicomDir);
        }
        if let Some(DisplayConfig::Spi(spi)) = &self.display {
            spi.check()?;
        }
        if let Some(mqtt) = &self.mqtt {
            mqtt.check()?;
        }
        Ok(())
    }

    /// Every relative path joined onto `base` (the config file's folder).
    fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut self.models.manifest);
        let watch = &mut self.watch;
        for folder in [&mut watch.dir, &mut watch.done, &mut watch.failed, &mut watch.captured] {
            abs(folder);
        }
        abs(&mut self.journal.path);
        abs(&mut self.output.overlay_dir);
        let optional = [
            self.output.mask_dir.as_mut(),
            self.output.dicom_dir.as_mut(),
            self.serial.as_mut().and_then(|s| s.acks.as_mut()),
        ];
        optional.into_iter().flatten().for_each(abs);
        if let Some(mqtt) = self.mqtt.as_mut() {
            let files = [
                mqtt.ca_file.as_mut(),
                mqtt.client_cert.as_mut(),
                mqtt.client_key.as_mut(),
                mqtt.password_file.as_mut(),
            ];
            files.into_iter().flatten().for_each(abs);
        }
        if let Some(serial) = self.serial.as_mut() {
            abs(&mut serial.port);
        }
        if let Some(capture) = self.capture.as_mut() {
            abs(&mut capture.device);
        }
        match self.display.as_mut() {
            Some(DisplayConfig::Fb(fb)) => abs(&mut fb.device),
            Some(DisplayConfig::Png(png)) => abs(&mut png.dir),
            Some(DisplayConfig::Spi(_)) | None => {}
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_pixels: self.input.max_pixels.get(),
        }
    }

    pub fn done_dir(&self) -> &Path {
        &self.watch.done
    }

    pub fn failed_dir(&self) -> &Path {
        &self.watch.failed
    }

    pub fn captured_dir(&self) -> &Path {
        &self.watch.captured
    }

    /// The PACS outbox's cursor, beside the journal.
    pub fn pacs_cursor(&self) -> PathBuf {
        self.beside_journal("pacs.json")
    }

    /// The MQTT uplink's cursor, beside the journal.
    pub fn mqtt_cursor(&self) -> PathBuf {
        self.beside_journal("mqtt.json")
    }

    /// Where `variant = "auto"` keeps its choice: `variant.json` beside the journal.
    pub fn variant_cache(&self) -> PathBuf {
        self.beside_journal("variant.json")
    }

    /// Where the serial link keeps the host's ACKs: `serial.acks`, else `acks.json` beside
    /// the journal.
    pub fn acks_file(&self) -> PathBuf {
        match self.serial.as_ref().and_then(|s| s.acks.clone()) {
            Some(path) => path,
            None => self.beside_journal("acks.json"),
        }
    }

    /// The state files ptxd keeps with its journal (`journal.path` is absolute once parsed).
    fn beside_journal(&self, name: &str) -> PathBuf {
        self.journal.path.parent().unwrap_or(Path::new(".")).join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[models]
manifest = "models/manifest.toml"
[watch]
dir = "in"
[journal]
path = "state/journal.log"
[output]
overlay_dir = "state/overlays"
"#;

    #[test]
    fn mqtt_is_tls_unless_the_broker_is_on_loopback() {
        let with = |section: &str| Config::parse(&format!("{MINIMAL}[mqtt]\n{section}"), Path::new("/etc/ptxd"));
        let m = with("broker = \"broker.clinic.lan:8883\"\ndevice_id = \"ward3\"\nca_file = \"ca.pem\"")
            .unwrap()
            .mqtt
            .unwrap();
        assert!(m.tls && m.commands);
        assert_eq!((m.broker.host(), m.broker.port()), ("broker.clinic.lan", 8883));
        assert_eq!(m.ca_file.as_deref(), Some(Path::new("/etc/ptxd/ca.pem")));
        assert_eq!(m.topic("status"), "ptxd/ward3/status");
        let e = with("broker = \"10.0.0.5:1883\"\ntls = false").unwrap_err().to_string();
        assert!(e.contains("plain text") && e.contains("loopback"), "{e}");
        for local in ["127.0.0.1:1883", "[::1]:1883", "localhost:1883"] {
            let m = with(&format!("broker = \"{local}\"\ntls = false"))
                .unwrap()
                .mqtt
                .unwrap();
            assert!(m.broker.is_loopback(), "{local}");
        }
        for (line, says) in [
            ("broker = \"no-port\"", "give a host and a port"),
            ("broker = \"b:1\"\ndevice_id = \"ward/3\"", "device_id"),
            ("broker = \"b:1\"\ndevice_id = \"#\"", "device_id"),
            ("broker = \"b:1\"\nclient_cert = \"c.pem\"", "client_key"),
            ("broker = \"b:1\"\nusername = \"ptxd\"", "password_file"),
        ] {
            let e = with(line).unwrap_err().to_string();
            assert!(e.contains(says), "{line}: {e}");
        }
        // unset, the device is named after the host (topics must not break on its name)
        let m = with("broker = \"b:1\"").unwrap().mqtt.unwrap();
        assert!(!m.device_id.as_str().is_empty() && !m.device_id.as_str().contains('/'));
    }

    #[test]
    fn the_variant_is_the_manifests_a_pinned_one_or_auto() {
        let with = |line: &str| {
            let text = MINIMAL.replace("[watch]", &format!("{line}\n[watch]"));
            Config::parse(&text, Path::new("/etc/ptxd")).unwrap()
        };
        assert_eq!(with("").models.variant, VariantSetting::ManifestDefault);
        let pinned = with("variant = \"int8-qdq\"");
        assert_eq!(pinned.models.variant.pinned(), Some("int8-qdq"));
        let auto = with("variant = \"auto\"");
        assert_eq!(auto.models.variant, VariantSetting::Fastest);
        assert_eq!(auto.variant_cache(), Path::new("/etc/ptxd/state/variant.json"));
    }

    #[test]
    fn the_dicom_listener_takes_valid_ae_titles_only() {
        let with = |section: &str| Config::parse(&format!("{MINIMAL}[dicom]\n{section}"), Path::new("/etc/ptxd"));
        let ok = with("listen = \"0.0.0.0:11112\"\nae_title = \"PTXD \"\nallowed_calling = [\"CR1\"]").unwrap();
        let dicom = ok.dicom.unwrap();
        assert_eq!(dicom.ae_title.as_str(), "PTXD"); // padding is not part of the title
        assert_eq!(dicom.allowed_calling, [AeTitle::try_from("CR1".to_string()).unwrap()]);
        assert_eq!(dicom.timeout_s.get(), 30);
        for bad in ["\"\"", "\"SEVENTEEN_LETTERS\"", "\"A\\\\B\""] {
            let err = with(&format!("listen = \"0.0.0.0:11112\"\nae_title = {bad}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("1 to 16 printable ASCII characters"), "{bad}: {err}");
        }
        assert!(with("listen = \"not an address\"\nae_title = \"PTXD\"").is_err());
    }

    #[test]
    fn minimal_config_gets_defaults_and_absolute_paths() {
        let c = Config::parse(MINIMAL, Path::new("/etc/ptxd")).unwrap();
        assert_eq!(c.models.threads.get(), 1);
        assert_eq!(c.models.manifest, Path::new("/etc/ptxd/models/manifest.toml"));
        assert_eq!(c.done_dir(), Path::new("/etc/ptxd/in/done"));
        assert_eq!(c.failed_dir(), Path::new("/etc/ptxd/in/failed"));
        assert_eq!(c.captured_dir(), Path::new("/etc/ptxd/in/captured"));
        assert_eq!(c.watch.queue.get(), 4);
        assert_eq!(c.output.overlay_size, default_overlay_size());
        assert!(c.serial.is_none());
    }

    #[test]
    fn serial_section_defaults() {
        let text = format!("{MINIMAL}\n[serial]\nport = \"/dev/ttyS0\"\n");
        let c = Config::parse(&text, Path::new("/etc/ptxd")).unwrap();
        assert_eq!(c.acks_file(), Path::new("/etc/ptxd/state/acks.json"));
        let s = c.serial.unwrap();
        assert_eq!(
            (s.baud, s.ack_timeout_ms.get(), s.heartbeat_s.get()),
            (115_200, 2000, 30)
        );
        let given = format!("{MINIMAL}\n[serial]\nport = \"/dev/ttyS0\"\nacks = \"ack/state.json\"\n");
        let c = Config::parse(&given, Path::new("/etc/ptxd")).unwrap();
        assert_eq!(
            c.acks_file(),
            Path::new("/etc/ptxd/ack/state.json"),
            "relative to the config"
        );
    }

    #[test]
    fn retention_has_defaults_and_min_free_is_bytes_or_a_share() {
        let with = |section: &str| Config::parse(&format!("{MINIMAL}[retention]\n{section}"), Path::new("/etc/ptxd"));
        let defaults = Config::parse(MINIMAL, Path::new("/etc/ptxd")).unwrap().retention;
        assert_eq!((defaults.keep_days.get(), defaults.sweep_minutes.get()), (30, 60));
        assert_eq!(
            with("min_free = 2000000000").unwrap().retention.min_free,
            MinFree::Bytes(2_000_000_000)
        );
        assert_eq!(
            with("min_free = \"15 %\"").unwrap().retention.min_free,
            MinFree::Percent(15.0)
        );
        for bad in [
            "min_free = \"95%\"",
            "min_free = \"lots\"",
            "min_free = -1",
            "keep_days = 0",
        ] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.contains("min_free") || err.contains("keep_days"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_example_config_parses_and_sets_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/ptxd.example.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.watch.dir, Path::new("/var/lib/ptxd/incoming"));
        assert_eq!(c.output.mask_dir.as_deref(), Some(Path::new("/var/lib/ptxd/masks")));
        assert_eq!(c.limits().max_pixels, Limits::default().max_pixels);
        assert_eq!(c.retention.keep_days.get(), 30);
        assert_eq!(c.retention.min_free, MinFree::Percent(10.0));
        let capture = c.capture.unwrap();
        assert_eq!(capture.formats, PixelFormat::ALL);
        assert_eq!(
            (capture.still_diff, capture.new_diff),
            (GreyLevels(2.0), GreyLevels(8.0))
        );
        assert!(matches!(c.display, Some(DisplayConfig::Fb(FbConfig { ref tty, .. })) if tty.is_some()));
        let mqtt = c.mqtt.unwrap();
        assert_eq!(mqtt.device_id.as_str(), "ward3-xray");
        assert!(mqtt.tls && mqtt.client_key.is_some() && mqtt.password_file.is_some());
        let gpio = c.gpio.unwrap();
        assert_eq!(
            (gpio.led, gpio.ack_button),
            (Some(LineId::Offset(17)), Some(LineId::Offset(23)))
        );
    }

    #[test]
    fn every_board_profile_is_a_valid_include_and_the_config_wins() {
        let boards = Path::new(env!("CARGO_MANIFEST_DIR")).join("board");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&boards).unwrap() {
            let path = entry.unwrap().path();
            let text = format!("board = \"{}\"\n{MINIMAL}", path.display());
            let c = Config::parse(&text, Path::new("/etc/ptxd")).unwrap_or_else(|e| panic!("{e}"));
            let profile = c.profile.expect("every profile describes its board");
            assert!(
                c.capture.is_some() && c.display.is_some() && c.serial.is_some(),
                "{}",
                profile.name
            );
            // every profile pins the files the thresholds were chosen on (docs/performance.md)
            let expected = VariantSetting::Pinned("int8".into());
            assert_eq!(c.models.variant, expected, "{}", profile.name);
            names.push(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
        names.sort();
        assert_eq!(names, ["jetson-orin-nano", "qemu-virt", "rpi4", "rpi5"]);

        // keys in the config win; a display of another kind replaces the profile's
        let text = format!("board = \"{}\"\n{MINIMAL}", boards.join("rpi4.toml").display()).replace(
            "manifest = \"models/manifest.toml\"",
            "manifest = \"models/manifest.toml\"\nthreads = 1",
        );
        let c = Config::parse(&text, Path::new("/etc/ptxd")).unwrap();
        assert_eq!(c.models.threads.get(), 1);
        assert_eq!(
            c.models.variant,
            VariantSetting::Pinned("int8".into()),
            "kept from the profile"
        );
        let spi = format!(
            "{text}\n[display]\nkind = \"spi\"\npanel = \"ili9341\"\nspi = \"/dev/spidev0.0\"\nsize = [320, 240]\nrotation = 90\ndc = 25\nreset = 27\n"
        );
        let c = Config::parse(&spi, Path::new("/etc/ptxd")).unwrap();
        assert!(matches!(c.display, Some(DisplayConfig::Spi(_))));
        // a missing profile and a bad key in one are named
        let err = Config::parse(&format!("board = \"nope.toml\"\n{MINIMAL}"), Path::new("/etc/ptxd"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/ptxd/nope.toml"), "{err}");
        let bad = format!("{text}\n[gpio]\nled_line = 3\n");
        let err = Config::parse(&bad, Path::new("/etc/ptxd")).unwrap_err().to_string();
        assert!(err.contains("led_line") && err.contains("rpi4.toml"), "{err}");
    }

    #[test]
    fn fourccs_print_as_text() {
        assert_eq!(PixelFormat::Y16.to_string(), "Y16");
        assert_eq!(PixelFormat::Yuyv.to_string(), "YUYV");
    }

    #[test]
    fn device_sections_parse_and_check_their_values() {
        let base = Path::new("/etc/ptxd");
        let spi = format!(
            "{MINIMAL}\n[display]\nkind = \"spi\"\npanel = \"st7789\"\nspi = \"/dev/spidev0.0\"\n\
             size = [320, 240]\nrotation = 90\ndc = \"GPIO25\"\nreset = 27\n"
        );
        let c = Config::parse(&spi, base).unwrap();
        let Some(DisplayConfig::Spi(s)) = c.display else {
            panic!("an SPI display")
        };
        assert_eq!(
            (s.panel, s.dc, s.reset),
            (
                PanelModel::St7789,
                LineId::Name("GPIO25".into()),
                Some(LineId::Offset(27))
            )
        );
        let err = Config::parse(&spi.replace("rotation = 90", "rotation = 0"), base)
            .unwrap_err()
            .to_string();
        assert!(err.contains("240x320") && err.contains("rotation = 90"), "{err}");
        let err = Config::parse(&spi.replace("rotation = 90", "rotation = 45"), base)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rotation") && err.contains("270"), "{err}");
        let err = Config::parse(&spi.replace("panel = \"st7789\"", "panel = \"ssd1306\""), base)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ssd1306"), "{err}");
        let err = Config::parse(&format!("{MINIMAL}\n[display]\nkind = \"vga\"\n"), base)
            .unwrap_err()
            .to_string();
        assert!(err.contains("vga"), "{err}");
        let err = Config::parse(
            &format!("{MINIMAL}\n[display]\nkind = \"fb\"\ndevcie = \"/dev/fb1\"\n"),
            base,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("devcie"), "{err}");

        let capture = format!("{MINIMAL}\n[capture]\ndevice = \"/dev/video0\"\nformats = [\"YUYV\"]\n");
        let c = Config::parse(&capture, base).unwrap();
        assert_eq!(c.capture.unwrap().formats, [PixelFormat::Yuyv]);
        let err = Config::parse(&capture.replace("YUYV", "NV12"), base)
            .unwrap_err()
            .to_string();
        assert!(err.contains("NV12"), "{err}");
        let err = Config::parse(&format!("{capture}new_diff = 1.0\n"), base)
            .unwrap_err()
            .to_string();
        assert!(err.contains("new_diff") && err.contains("still_diff"), "{err}");
        let err = Config::parse(&format!("{capture}still_diff = 300.0\n"), base)
            .unwrap_err()
            .to_string();
        assert!(err.contains("0 to 255") && err.contains("line"), "{err}");
        let err = Config::parse(
            &format!("{capture}formats = []\n").replace("formats = [\"YUYV\"]\n", ""),
            base,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("capture.formats"), "{err}");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = MINIMAL.replace("[journal]", "[journal]\npth = \"x\"");
        let err = Config::parse(&text, Path::new("/")).unwrap_err().to_string();
        assert!(err.contains("pth") && err.contains("line 7"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let text = MINIMAL.replace("dir = \"in\"", "dir = \"in\"\nqueue = 0");
        let err = Config::parse(&text, Path::new("/")).unwrap_err().to_string();
        assert!(err.contains("queue") || err.contains("line 6"), "{err}");
        assert!(err.contains("nonzero"), "{err}");
        let text = MINIMAL.replace(
            "overlay_dir = \"state/overlays\"",
            "overlay_dir = \"o\"\noverlay_size = [100, 100]",
        );
        let err = Config::parse(&text, Path::new("/")).unwrap_err().to_string();
        assert!(err.contains("160x120"), "{err}");
    }
}
