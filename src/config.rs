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
}

/// `[pacs]`: the DICOM results of `output.dicom_dir` are stored there (`crate::sink::pacs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacsConfig {
    /// The PACS's host and DICOM port, e.g. "192.168.1.20:104".
    pub address: String,
    /// The PACS's AE title (the called AE title).
    pub ae_title: AeTitle,
    /// The AE title ptxd calls with, which the PACS must know. Default "PTXD".
    #[serde(default = "default_calling_ae_title")]
    pub calling_ae_title: AeTitle,
    /// First retry after 1 s, doubling up to this. Default 60000.
    #[serde(default = "default_pacs_retry_max_ms")]
    pub retry_max_ms: NonZeroU64,
    /// Connection, read and write timeout, seconds. Default 30.
    #[serde(default = "default_dicom_timeout_s")]
    pub timeout_s: NonZeroU64,
}

fn default_calling_ae_title() -> AeTitle {
    AeTitle("PTXD".into())
}

fn default_pacs_retry_max_ms() -> NonZeroU64 {
    NonZeroU64::new(60_000).expect("not zero")
}

/// `[dicom]`: images received over the network are written into the watch folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomConfig {
    /// Address and port to listen on, e.g. "0.0.0.0:11112" (port 0: any free one).
    pub listen: std::net::SocketAddr,
    /// ptxd's own AE title, which modalities call.
    pub ae_title: AeTitle,
    /// The calling AE titles accepted (the digitizers'); empty or absent: any.
    #[serde(default)]
    pub allowed_calling: Vec<AeTitle>,
    /// A silent peer is dropped after this many seconds. Default 30.
    #[serde(default = "default_dicom_timeout_s")]
    pub timeout_s: NonZeroU64,
}

fn default_dicom_timeout_s() -> NonZeroU64 {
    NonZeroU64::new(30).expect("not zero")
}

/// A DICOM application entity title: 1 to 16 characters of printable ASCII, no backslash,
/// not only spaces (PS3.5 AE value representation); kept without its padding.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AeTitle(String);

impl AeTitle {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AeTitle {
    type Error = String;
    fn try_from(text: String) -> Result<AeTitle, String> {
        let trimmed = text.trim();
        let printable = trimmed.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\');
        if trimmed.is_empty() || trimmed.len() > 16 || !printable {
            return Err(format!(
                "AE title {text:?}: use 1 to 16 printable ASCII characters, no backslash (e.g. \"PTXD\")"
            ));
        }
        Ok(AeTitle(trimmed.to_string()))
    }
}

impl std::fmt::Display for AeTitle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
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
    /// After an unplug or an error the port is reopened after 1 s, doubling up to this.
    /// Default 30000.
    #[serde(default = "default_reopen_max_ms")]
    pub reopen_max_ms: NonZeroU64,
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
fn default_reopen_max_ms() -> NonZeroU64 {
    NonZeroU64::new(30_000).expect("not zero")
}
fn default_device_id() -> String {
    "ptxd".into()
}

/// A V4L2 pixel format ptxd can turn into a grey frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PixelFormat {
    /// 8-bit grey.
    #[serde(rename = "GREY")]
    Grey,
    /// 16-bit grey, little-endian (stretched to 8 bits as 16-bit PNGs are).
    #[serde(rename = "Y16")]
    Y16,
    /// YUV 4:2:2 packed; its luma is the grey frame.
    #[serde(rename = "YUYV")]
    Yuyv,
    /// 24-bit RGB, turned grey as colour PNGs are.
    #[serde(rename = "RGB3")]
    Rgb3,
    /// Motion-JPEG: each frame a JPEG.
    #[serde(rename = "MJPG")]
    Mjpg,
}

impl PixelFormat {
    pub const ALL: [PixelFormat; 5] = [
        PixelFormat::Grey,
        PixelFormat::Y16,
        PixelFormat::Yuyv,
        PixelFormat::Rgb3,
        PixelFormat::Mjpg,
    ];

    /// The V4L2 four-character code.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Grey => *b"GREY",
            PixelFormat::Y16 => *b"Y16 ",
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Rgb3 => *b"RGB3",
            PixelFormat::Mjpg => *b"MJPG",
        }
    }

    pub fn from_fourcc(code: [u8; 4]) -> Option<PixelFormat> {
        PixelFormat::ALL.into_iter().find(|f| f.fourcc() == code)
    }
}

/// A four-character code as text ("Y16 " as "Y16"); a byte that is not ASCII shows as '?'
/// (drivers set the top bit for big-endian variants).
pub fn fourcc_name(code: [u8; 4]) -> String {
    let text: String = code
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    text.trim_end().to_string()
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&fourcc_name(self.fourcc()))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// The V4L2 capture device, e.g. "/dev/video0".
    pub device: PathBuf,
    /// Pixel formats in order of preference; the first the device offers is used.
    /// Default: grey first, then what loses least: GREY, Y16, YUYV, RGB3, MJPG.
    #[serde(default = "default_formats")]
    pub formats: Vec<PixelFormat>,
    /// Frame size to ask for, [width, height]; default: the device's current size.
    pub size: Option<[u32; 2]>,
    /// A new image is stable after this many consecutive nearly identical frames. Default 5.
    #[serde(default = "default_stable_frames")]
    pub stable_frames: NonZeroU32,
    /// Two frames are "nearly identical" when their 32x32 thumbnails differ by at most this
    /// mean absolute difference, in grey levels (0-255). Default 2.0.
    #[serde(default = "default_still_diff")]
    pub still_diff: GreyLevels,
    /// A stable frame is analyzed only when it differs from the last analyzed one by more
    /// than this (same measure). Must be above still_diff. Default 8.0.
    #[serde(default = "default_new_diff")]
    pub new_diff: GreyLevels,
    /// A frame whose thumbnail's standard deviation is below this is blank (the digitizer
    /// shows nothing) and is never analyzed. Default 4.0.
    #[serde(default = "default_blank_contrast")]
    pub blank_contrast: GreyLevels,
    /// Reopening a lost device waits 1 s, doubling up to this. Default 30000.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: NonZeroU64,
}

/// A difference or spread in grey levels, 0 to 255.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Deserialize)]
#[serde(try_from = "f64")]
pub struct GreyLevels(pub f32);

impl TryFrom<f64> for GreyLevels {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if !(0.0..=255.0).contains(&v) {
            return Err(format!("{v} is not a grey-level difference (0 to 255)"));
        }
        Ok(GreyLevels(v as f32))
    }
}

fn default_formats() -> Vec<PixelFormat> {
    PixelFormat::ALL.to_vec()
}
fn default_stable_frames() -> NonZeroU32 {
    NonZeroU32::new(5).expect("not zero")
}
fn default_still_diff() -> GreyLevels {
    GreyLevels(2.0)
}
fn default_new_diff() -> GreyLevels {
    GreyLevels(8.0)
}
fn default_blank_contrast() -> GreyLevels {
    GreyLevels(4.0)
}
fn default_retry_max_ms() -> NonZeroU64 {
    NonZeroU64::new(30_000).expect("not zero")
}

/// Which screen, chosen by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DisplayConfig {
    /// A Linux framebuffer (HDMI on a Pi or Jetson).
    Fb(FbConfig),
    /// An ST7789 or ILI9341 panel on spidev, with DC/RST/backlight on GPIO lines.
    Spi(SpiConfig),
    /// PNG snapshots in a folder (headless rigs, tests, remote support).
    Png(PngConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FbConfig {
    /// Default "/dev/fb0".
    #[serde(default = "default_fb")]
    pub device: PathBuf,
    /// The console on that screen, put in graphics mode while ptxd draws (so its cursor and
    /// login prompt do not draw over the result) and back to text on exit. Default none.
    pub tty: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PanelModel {
    St7789,
    Ili9341,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpiConfig {
    pub panel: PanelModel,
    /// e.g. "/dev/spidev0.0".
    pub spi: PathBuf,
    /// SPI clock. Default 32000000.
    #[serde(default = "default_spi_hz")]
    pub spi_hz: u32,
    /// The panel's size as mounted, [width, height] after rotation, e.g. [320, 240].
    pub size: [u16; 2],
    /// 0, 90, 180 or 270 degrees. Default 0.
    #[serde(default)]
    pub rotation: u16,
    /// Most ST7789 modules need inverted colours; most ILI9341 do not. Default: by panel.
    pub invert_colors: Option<bool>,
    /// The gpiochip with the DC, reset and backlight lines. Default "/dev/gpiochip0".
    #[serde(default = "default_gpiochip")]
    pub gpiochip: PathBuf,
    pub dc: LineId,
    pub reset: Option<LineId>,
    pub backlight: Option<LineId>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PngConfig {
    /// The screen is written to `<dir>/screen.png` whenever it changes.
    pub dir: PathBuf,
    /// [width, height]. Default [800, 480].
    #[serde(default = "default_png_size")]
    pub size: OverlaySize,
}

/// A GPIO line: its offset on the chip (17) or its name ("GPIO17").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum LineId {
    Offset(u32),
    Name(String),
}

impl std::fmt::Display for LineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineId::Offset(n) => write!(f, "line {n}"),
            LineId::Name(n) => write!(f, "line \"{n}\""),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioConfig {
    /// Default "/dev/gpiochip0".
    #[serde(default = "default_gpiochip")]
    pub chip: PathBuf,
    /// Lit (pulsing) while a positive result is unacknowledged.
    pub led: Option<LineId>,
    /// Sounds (pulsing) while a positive result is unacknowledged.
    pub buzzer: Option<LineId>,
    /// Pressed: the radiographer has seen the result (stops the alert, clears the screen).
    pub ack_button: Option<LineId>,
    /// Pressed: analyze the current capture frame now.
    pub trigger_button: Option<LineId>,
    /// Buttons pull the line low when pressed (wired to ground, with a pull-up). Default true.
    #[serde(default = "yes")]
    pub buttons_active_low: bool,
    /// Alert on/off period half, ms. Default 500.
    #[serde(default = "default_pulse_ms")]
    pub pulse_ms: NonZeroU64,
    /// A press counts once the line held steady this long, ms. Default 30.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: NonZeroU64,
}

fn default_fb() -> PathBuf {
    PathBuf::from("/dev/fb0")
}
fn default_gpiochip() -> PathBuf {
    PathBuf::from("/dev/gpiochip0")
}
fn default_spi_hz() -> u32 {
    32_000_000
}
fn default_png_size() -> OverlaySize {
    OverlaySize {
        width: 800,
        height: 480,
    }
}
fn yes() -> bool {
    true
}
fn default_pulse_ms() -> NonZeroU64 {
    NonZeroU64::new(500).expect("not zero")
}
fn default_debounce_ms() -> NonZeroU64 {
    NonZeroU64::new(30).expect("not zero")
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
        Config::parse(&text, &base).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parse TOML text; relative paths are joined onto `base`. A top-level
    /// `board = "path"` includes a board profile: its keys are defaults, the text's win.
    pub fn parse(text: &str, base: &Path) -> Result<Config, String> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let mut config: Config = match table.remove("board") {
            // no profile: deserialize the text itself, so errors keep their line numbers
            None => toml::from_str(text).map_err(|e| e.to_string())?,
            Some(board) => {
                let path = board.as_str().map(|p| base.join(p)).ok_or(
                    "board: give the profile's path as a string, e.g. board = \"/usr/share/ptxd/board/rpi4.toml\"",
                )?;
                let profile = std::fs::read_to_string(&path)
                    .map_err(|e| format!("board = {}: cannot read it: {e}", path.display()))?;
                let mut merged: toml::Table = profile
                    .parse()
                    .map_err(|e: toml::de::Error| format!("board profile {}: {e}", path.display()))?;
                overlay(&mut merged, table);
                Config::deserialize(toml::Value::Table(merged))
                    .map_err(|e| format!("{e} (after including the board profile {})", path.display()))?
            }
        };
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut config.models.manifest);
        let watch = &mut config.watch;
        for folder in [&mut watch.dir, &mut watch.done, &mut watch.failed, &mut watch.captured] {
            abs(folder);
        }
        abs(&mut config.journal.path);
        abs(&mut config.output.overlay_dir);
        if let Some(m) = config.output.mask_dir.as_mut() {
            abs(m);
        }
        if let Some(d) = config.output.dicom_dir.as_mut() {
            abs(d);
        }
        if let Some(serial) = config.serial.as_mut() {
            abs(&mut serial.port);
            if let Some(acks) = serial.acks.as_mut() {
                abs(acks);
            }
        }
        if let Some(capture) = config.capture.as_mut() {
            abs(&mut capture.device);
            if capture.formats.is_empty() {
                return Err("capture.formats: name at least one pixel format".into());
            }
            if capture.new_diff <= capture.still_diff {
                return Err(format!(
                    "capture.new_diff ({}) must be above capture.still_diff ({}): a new image must differ from the last more than noise does",
                    capture.new_diff.0, capture.still_diff.0
                ));
            }
        }
        if config.pacs.is_some() && config.output.dicom_dir.is_none() {
            return Err(
                "pacs: results are sent from output.dicom_dir; set it (e.g. dicom_dir = \"/var/lib/ptxd/dicom\")"
                    .into(),
            );
        }
        match config.display.as_mut() {
            Some(DisplayConfig::Fb(fb)) => abs(&mut fb.device),
            Some(DisplayConfig::Png(png)) => abs(&mut png.dir),
            Some(DisplayConfig::Spi(spi)) => {
                if ![0, 90, 180, 270].contains(&spi.rotation) {
                    return Err(format!("display.rotation = {}: use 0, 90, 180 or 270", spi.rotation));
                }
                if spi.size[0] < 96 || spi.size[1] < 64 {
                    return Err(format!(
                        "display.size = {:?}: too small for the result screen (at least [96, 64])",
                        spi.size
                    ));
                }
                // both panels are 240x320 portrait; rotation 90/270 mounts them landscape
                let [w, h] = spi.size;
                let (native_w, native_h) = if spi.rotation % 180 == 90 { (h, w) } else { (w, h) };
                if native_w > 240 || native_h > 320 {
                    return Err(format!(
                        "display.size = {:?} at rotation {} does not fit a 240x320 panel: for landscape set rotation = 90 or 270",
                        spi.size, spi.rotation
                    ));
                }
            }
            None => {}
        }
        Ok(config)
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
        assert_eq!(dicom.allowed_calling, [AeTitle("CR1".into())]);
        assert_eq!(dicom.timeout_s.get(), 30);
        for bad in ["\"\"", "\"SEVENTEEN_LETTERS\"", "\"A\\\\B\""] {
            let err = with(&format!("listen = \"0.0.0.0:11112\"\nae_title = {bad}")).unwrap_err();
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
    fn the_example_config_parses_and_sets_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/ptxd.example.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.watch.dir, Path::new("/var/lib/ptxd/incoming"));
        assert_eq!(c.output.mask_dir.as_deref(), Some(Path::new("/var/lib/ptxd/masks")));
        assert_eq!(c.limits().max_pixels, Limits::default().max_pixels);
        let capture = c.capture.unwrap();
        assert_eq!(capture.formats, PixelFormat::ALL);
        assert_eq!(
            (capture.still_diff, capture.new_diff),
            (GreyLevels(2.0), GreyLevels(8.0))
        );
        assert!(matches!(c.display, Some(DisplayConfig::Fb(FbConfig { ref tty, .. })) if tty.is_some()));
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
        let err = Config::parse(&format!("board = \"nope.toml\"\n{MINIMAL}"), Path::new("/etc/ptxd")).unwrap_err();
        assert!(err.contains("/etc/ptxd/nope.toml"), "{err}");
        let bad = format!("{text}\n[gpio]\nled_line = 3\n");
        let err = Config::parse(&bad, Path::new("/etc/ptxd")).unwrap_err();
        assert!(err.contains("led_line") && err.contains("rpi4.toml"), "{err}");
    }

    #[test]
    fn fourccs_print_as_text() {
        assert_eq!(PixelFormat::Y16.to_string(), "Y16");
        assert_eq!(fourcc_name(*b"YUYV"), "YUYV");
        // the big-endian flag (0x80 on the last byte) is not text
        assert_eq!(fourcc_name([b'Y', b'1', b'6', b' ' | 0x80]), "Y16?");
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
        let err = Config::parse(&spi.replace("rotation = 90", "rotation = 0"), base).unwrap_err();
        assert!(err.contains("240x320") && err.contains("rotation = 90"), "{err}");
        let err = Config::parse(&spi.replace("rotation = 90", "rotation = 45"), base).unwrap_err();
        assert!(err.contains("rotation") && err.contains("270"), "{err}");
        let err = Config::parse(&spi.replace("panel = \"st7789\"", "panel = \"ssd1306\""), base).unwrap_err();
        assert!(err.contains("ssd1306"), "{err}");
        let err = Config::parse(&format!("{MINIMAL}\n[display]\nkind = \"vga\"\n"), base).unwrap_err();
        assert!(err.contains("vga"), "{err}");
        let err = Config::parse(
            &format!("{MINIMAL}\n[display]\nkind = \"fb\"\ndevcie = \"/dev/fb1\"\n"),
            base,
        )
        .unwrap_err();
        assert!(err.contains("devcie"), "{err}");

        let capture = format!("{MINIMAL}\n[capture]\ndevice = \"/dev/video0\"\nformats = [\"YUYV\"]\n");
        let c = Config::parse(&capture, base).unwrap();
        assert_eq!(c.capture.unwrap().formats, [PixelFormat::Yuyv]);
        let err = Config::parse(&capture.replace("YUYV", "NV12"), base).unwrap_err();
        assert!(err.contains("NV12"), "{err}");
        let err = Config::parse(&format!("{capture}new_diff = 1.0\n"), base).unwrap_err();
        assert!(err.contains("new_diff") && err.contains("still_diff"), "{err}");
        let err = Config::parse(&format!("{capture}still_diff = 300.0\n"), base).unwrap_err();
        assert!(err.contains("0 to 255") && err.contains("line"), "{err}");
        let err = Config::parse(
            &format!("{capture}formats = []\n").replace("formats = [\"YUYV\"]\n", ""),
            base,
        )
        .unwrap_err();
        assert!(err.contains("capture.formats"), "{err}");
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
