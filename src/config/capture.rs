//! `[capture]`: the digitizer's V4L2 video output, the pixel formats ptxd can take from it
//! and when a frame counts as a new radiograph.

use std::num::{NonZeroU32, NonZeroU64};
use std::path::PathBuf;

use serde::Deserialize;
use thiserror::Error;

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

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the codes are ASCII, some padded with a space ("Y16 ")
        f.write_str(std::str::from_utf8(&self.fourcc()).unwrap_or("?").trim_end())
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

/// A `[capture]` value that serde's types cannot refuse.
#[derive(Debug, Error)]
pub enum CaptureRule {
    #[error("capture.formats: name at least one pixel format")]
    NoFormats,
    #[error("capture.new_diff ({new}) must be above capture.still_diff ({still}): a new image must differ from the last more than noise does")]
    NewDiffNotAboveStill { new: f32, still: f32 },
}

impl CaptureConfig {
    pub(super) fn check(&self) -> Result<(), CaptureRule> {
        if self.formats.is_empty() {
            return Err(CaptureRule::NoFormats);
        }
        if self.new_diff <= self.still_diff {
            return Err(CaptureRule::NewDiffNotAboveStill {
                new: self.new_diff.0,
                still: self.still_diff.0,
            });
        }
        Ok(())
    }
}
