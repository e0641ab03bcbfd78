//! The devices on the board: the screen (`[display]`: framebuffer, SPI panel or PNG
//! snapshots) and the alert lines and buttons (`[gpio]`).

use std::num::NonZeroU64;
use std::path::PathBuf;

use serde::Deserialize;
use thiserror::Error;

use super::{yes, OverlaySize};

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
fn default_pulse_ms() -> NonZeroU64 {
    NonZeroU64::new(500).expect("not zero")
}
fn default_debounce_ms() -> NonZeroU64 {
    NonZeroU64::new(30).expect("not zero")
}

/// A `[display]` SPI panel's geometry that cannot work.
#[derive(Debug, Error)]
pub enum PanelRule {
    #[error("display.rotation = {0}: use 0, 90, 180 or 270")]
    Rotation(u16),
    #[error("display.size = {0:?}: too small for the result screen (at least [96, 64])")]
    TooSmall([u16; 2]),
    #[error("display.size = {size:?} at rotation {rotation} does not fit a 240x320 panel: for landscape set rotation = 90 or 270")]
    DoesNotFit { size: [u16; 2], rotation: u16 },
}

impl PanelModel {
    /// Both panels are 240x320 (width, height) unrotated: portrait.
    pub const NATIVE_SIZE: (u16, u16) = (240, 320);
}

impl SpiConfig {
    /// `size` in the panel's own orientation: rotation 90 or 270 mounts it landscape.
    pub fn native_size(&self) -> (u16, u16) {
        let [w, h] = self.size;
        match self.rotation % 180 == 90 {
            true => (h, w),
            false => (w, h),
        }
    }

    pub(super) fn check(&self) -> Result<(), PanelRule> {
        if ![0, 90, 180, 270].contains(&self.rotation) {
            return Err(PanelRule::Rotation(self.rotation));
        }
        if self.size[0] < 96 || self.size[1] < 64 {
            return Err(PanelRule::TooSmall(self.size));
        }
        let (native_w, native_h) = self.native_size();
        let (max_w, max_h) = PanelModel::NATIVE_SIZE;
        if native_w > max_w || native_h > max_h {
            return Err(PanelRule::DoesNotFit {
                size: self.size,
                rotation: self.rotation,
            });
        }
        Ok(())
    }
}
