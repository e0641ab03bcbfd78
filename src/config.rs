//! The daemon's configuration: one TOML file, parsed once into validated types.
//!
//! Unknown keys and bad values are errors that name the key and its line (toml's spans), so
//! a typo in the field never silently falls back to a default. Relative paths are taken
//! from the config file's folder, so a config works wherever the daemon is started from.
//! `deploy/ptxd.example.toml` documents every key.

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config {}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// Decoding limits (`[input]`), as the decoder takes them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest width x height accepted.
    pub max_pixels: u64,
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// models/manifest.toml; the model files are read from its folder.
    pub manifest: PathBuf,
    /// Inference threads (tract's matrix kernels). Default 1.
    #[serde(default = "one")]
    pub threads: NonZeroUsize,
    /// Model variant ("int8", "int8-qdq"); default: the manifest's.
    pub variant: Option<String>,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// The folder new radiographs are dropped into.
    pub dir: PathBuf,
    /// Where analyzed inputs go (default `<dir>/done`).
    pub done: Option<PathBuf>,
    /// Where inputs that could not be analyzed go, each with `<name>.error.txt` (default `<dir>/failed`).
    pub failed: Option<PathBuf>,
    /// Files handed to the pipeline but not yet analyzed, at most. Default 4. When it is full,
    /// new files wait in the folder (nothing is dropped) and are queued as room frees.
    #[serde(default = "four")]
    pub queue: NonZeroUsize,
    /// A file is taken once it was closed after writing (or renamed in) and its size and
    /// modification time stayed the same for this long. Default 250 ms.
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Overlay PNGs, one per result, named `<seq>-<input stem>.png`.
    pub overlay_dir: PathBuf,
    /// Predicted masks (8-bit 0/255 PNG at the input's resolution), for positives; optional.
    pub mask_dir: Option<PathBuf>,
    /// Overlay size in pixels, [width, height]. Default [1280, 720].
    #[serde(default = "default_overlay_size")]
    pub overlay_size: OverlaySize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    /// The serial device, e.g. "/dev/ttyS0" or "/dev/ttyUSB0".
    pub port: PathBuf,
    /// Baud rate (8N1, no flow control). Default 115200.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// First resend of an unacknowledged result after this long; doubled each time. Default 2000.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: NonZeroU64,
    /// The longest wait between resends. Default 60000.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: NonZeroU64,
    /// A status frame this often. Default 30.
    #[serde(default = "default_heartbeat_s")]
    pub heartbeat_s: NonZeroU64,
    /// Where the host's ACKs are kept. Default: `acks.json` beside the journal.
    pub acks: Option<PathBuf>,
    /// The name ptxd gives itself in `hello`. Default "ptxd".
    #[serde(default = "default_device_id")]
    pub device_id: String,
}

fn default_baud() -> u32 {
    115_200
}
fn default_ack_timeout_ms() -> NonZeroU64 {
    NonZeroU64::new(2000).expect("not zero")
}
fn default_max_backoff_ms() -> NonZeroU64 {
    NonZeroU64::new(60_000).expect("not zero")
}
fn default_heartbeat_s() -> NonZeroU64 {
    NonZeroU64::new(30).expect("not zero")
}
fn default_device_id() -> String {
    "ptxd".into()
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

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parse TOML text; relative paths are joined onto `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, String> {
        let mut config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut config.models.manifest);
        abs(&mut config.watch.dir);
        let dir = config.watch.dir.clone();
        let done = config.watch.done.get_or_insert_with(|| dir.join("done"));
        abs(done);
        let failed = config.watch.failed.get_or_insert_with(|| dir.join("failed"));
        abs(failed);
        abs(&mut config.journal.path);
        abs(&mut config.output.overlay_dir);
        if let Some(m) = config.output.mask_dir.as_mut() {
            abs(m);
        }
        let journal_dir = config.journal.path.parent().unwrap_or(base).to_path_buf();
        if let Some(serial) = config.serial.as_mut() {
            abs(&mut serial.port);
            let acks = serial.acks.get_or_insert_with(|| journal_dir.join("acks.json"));
            abs(acks);
        }
        Ok(config)
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_pixels: self.input.max_pixels.get(),
        }
    }

    pub fn done_dir(&self) -> &Path {
        self.watch.done.as_deref().expect("set by Config::parse")
    }

    pub fn failed_dir(&self) -> &Path {
        self.watch.failed.as_deref().expect("set by Config::parse")
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
    fn minimal_config_gets_defaults_and_absolute_paths() {
        let c = Config::parse(MINIMAL, Path::new("/etc/ptxd")).unwrap();
        assert_eq!(c.models.threads.get(), 1);
        assert_eq!(c.models.manifest, Path::new("/etc/ptxd/models/manifest.toml"));
        assert_eq!(c.done_dir(), Path::new("/etc/ptxd/in/done"));
        assert_eq!(c.failed_dir(), Path::new("/etc/ptxd/in/failed"));
        assert_eq!(c.watch.queue.get(), 4);
        assert_eq!(c.output.overlay_size, default_overlay_size());
        assert!(c.serial.is_none());
    }

    #[test]
    fn serial_section_defaults() {
        let text = format!("{MINIMAL}\n[serial]\nport = \"/dev/ttyS0\"\n");
        let c = Config::parse(&text, Path::new("/etc/ptxd")).unwrap();
        let s = c.serial.unwrap();
        assert_eq!(
            (s.baud, s.ack_timeout_ms.get(), s.heartbeat_s.get()),
            (115_200, 2000, 30)
        );
        assert_eq!(s.acks.as_deref(), Some(Path::new("/etc/ptxd/state/acks.json")));
    }

    #[test]
    fn the_example_config_parses_and_sets_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/ptxd.example.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.watch.dir, Path::new("/var/lib/ptxd/incoming"));
        assert_eq!(c.output.mask_dir.as_deref(), Some(Path::new("/var/lib/ptxd/masks")));
        assert_eq!(c.limits().max_pixels, Limits::default().max_pixels);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = MINIMAL.replace("[journal]", "[journal]\npth = \"x\"");
        let err = Config::parse(&text, Path::new("/")).unwrap_err();
        assert!(err.contains("pth") && err.contains("line 7"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let text = MINIMAL.replace("dir = \"in\"", "dir = \"in\"\nqueue = 0");
        let err = Config::parse(&text, Path::new("/")).unwrap_err();
        assert!(err.contains("queue") || err.contains("line 6"), "{err}");
        assert!(err.contains("nonzero"), "{err}");
        let text = MINIMAL.replace(
            "overlay_dir = \"state/overlays\"",
            "overlay_dir = \"o\"\noverlay_size = [100, 100]",
        );
        let err = Config::parse(&text, Path::new("/")).unwrap_err();
        assert!(err.contains("160x120"), "{err}");
    }
}
