//! Frames from the digitizer's V4L2 video output, turned into radiograph files.
//!
//! A digitizer shows one still image for a while, so analyzing every frame would be wrong:
//! [`StableFrames`] fires once when a *new, stable* image appears (several consecutive frames
//! nearly identical, and clearly different from the last one analyzed; blank frames never).
//! A manual trigger (a button or the host's `TRIGGER`) takes the next frame as it is.
//!
//! A chosen frame is written as an 8-bit grey PNG into the capture spool folder
//! (`watch.captured`, `capture-<device>-<time>.png`, written to a hidden name and renamed
//! in). The daemon watches that folder as it watches the drop folder, and knows from the
//! folder that a file is a frame (source `capture:<name>`). From there it follows the files'
//! path: on disk before analysis, journaled, moved to `done/`, and recognised after a crash.
//! The capture thread never analyzes anything itself.
//!
//! The device is opened, its format negotiated ([`choose_format`]) and streamed with mmap
//! buffers. When it fails or stops delivering (unplugged), the thread logs once, reopens with
//! doubling waits, and resumes when the device is back; the rest of the daemon keeps serving.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use thiserror::Error;
use v4l::buffer::Type;
use v4l::io::traits::CaptureStream;
use v4l::prelude::*;
use v4l::video::Capture;
use v4l::FourCC;

use crate::base::files;
use crate::base::worker::{Backoff, Worker};
use crate::config::{CaptureConfig, Limits, PixelFormat};
use crate::pixels::decode;
use crate::pixels::grey::GreyImage;

/// Side of the thumbnail frames are compared on: coarse enough to ignore sensor noise and
/// a clock in a corner, fine enough to see a different patient.
const THUMB: usize = 32;

/// A frame is waited for this long before the device counts as stalled (and is reopened).
const STALL: Duration = Duration::from_secs(5);

/// The first pixel format in `preference` that the device offers.
pub fn choose_format(offered: &[[u8; 4]], preference: &[PixelFormat]) -> Option<PixelFormat> {
    preference.iter().copied().find(|f| offered.contains(&f.fourcc()))
}

/// One frame's bytes as the device delivers them.
#[derive(Debug, Clone, Copy)]
pub struct RawFrame<'a> {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    /// Bytes per line (at least `width` x bytes per pixel; drivers may pad).
    pub stride: usize,
    pub bytes: &'a [u8],
}

/// Why a frame could not be turned grey; the capture thread logs it and takes the next.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("MJPG frame: {0}")]
    Jpeg(#[source] decode::Refusal),
    #[error("frame {width}x{height} with {stride} bytes per line is not valid")]
    Geometry { width: usize, height: usize, stride: usize },
    #[error("short frame: {got} bytes, {width}x{height} {format:?} needs {needed}")]
    Short {
        got: usize,
        width: usize,
        height: usize,
        format: PixelFormat,
        needed: usize,
    },
    #[error("frame size does not match its pixels")]
    Pixels,
}

/// Turn a frame into 8-bit grey, the way the file decoder treats the same pixels.
pub fn to_grey(frame: &RawFrame<'_>, limits: Limits) -> Result<GreyImage, FrameError> {
    let RawFrame {
        format,
        width,
        height,
        stride,
        bytes,
    } = *frame;
    if format == PixelFormat::Mjpg {
        return decode::decode_bytes(bytes, limits)
            .map(|r| r.image)
            .map_err(FrameError::Jpeg);
    }
    let bpp = match format {
        PixelFormat::Grey => 1,
        PixelFormat::Y16 | PixelFormat::Yuyv => 2,
        PixelFormat::Rgb3 => 3,
        PixelFormat::Mjpg => unreachable!("handled above"),
    };
    let line = width * bpp;
    if width == 0 || height == 0 || stride < line {
        return Err(FrameError::Geometry { width, height, stride });
    }
    let needed = stride * (height - 1) + line;
    if bytes.len() < needed {
        return Err(FrameError::Short {
            got: bytes.len(),
            width,
            height,
            format,
            needed,
        });
    }
    let rows = (0..height).map(|y| &bytes[y * stride..y * stride + line]);
    let pixels: Vec<u8> = match format {
        PixelFormat::Grey => rows.flatten().copied().collect(),
        // the luma of Y0 U Y1 V
        PixelFormat::Yuyv => rows.flat_map(|r| r.iter().step_by(2).copied()).collect(),
        PixelFormat::Rgb3 => rows
            .flat_map(|r| r.chunks_exact(3).map(|p| decode::pil_luma(p[0], p[1], p[2])))
            .collect(),
        PixelFormat::Y16 => {
            let values = rows.flat_map(|r| r.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]]) as f32));
            decode::stretch(values.collect::<Vec<_>>().into_iter())
        }
        PixelFormat::Mjpg => unreachable!("handled above"),
    };
    GreyImage::new(width, height, pixels).ok_or(FrameError::Pixels)
}

/// A 32x32 box-averaged copy of a frame, for comparing frames cheaply.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail(Vec<f32>);

impl Thumbnail {
    pub fn of(image: &GreyImage) -> Thumbnail {
        let mut sums = vec![0f32; THUMB * THUMB];
        let mut counts = vec![0u32; THUMB * THUMB];
        for y in 0..image.height {
            let ty = y * THUMB / image.height;
            for x in 0..image.width {
                let i = ty * THUMB + x * THUMB / image.width;
                sums[i] += f32::from(image.pixels[y * image.width + x]);
                counts[i] += 1;
            }
        }
        Thumbnail(
            sums.iter()
                .zip(&counts)
                .map(|(s, &c)| if c == 0 { 0.0 } else { s / c as f32 })
                .collect(),
        )
    }

    /// Mean absolute difference, in grey levels.
    pub fn diff(&self, other: &Thumbnail) -> f32 {
        self.0.iter().zip(&other.0).map(|(a, b)| (a - b).abs()).sum::<f32>() / self.0.len() as f32
    }

    /// Standard deviation of the thumbnail, in grey levels: near 0 for a blank screen.
    pub fn contrast(&self) -> f32 {
        let n = self.0.len() as f32;
        let mean = self.0.iter().sum::<f32>() / n;
        (self.0.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt()
    }
}

/// Why a frame was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// A new image held still for the configured number of frames.
    Stable,
    /// Someone asked for the current frame.
    Manual,
}

/// Decides which frames are new, stable images (see the module doc).
#[derive(Debug)]
pub struct StableFrames {
    frames: u32,
    still: f32,
    new: f32,
    blank: f32,
    previous: Option<Thumbnail>,
    /// Consecutive frames nearly identical to their predecessor, counting the first.
    run: u32,
    last_taken: Option<Thumbnail>,
    manual: bool,
}

impl StableFrames {
    pub fn new(config: &CaptureConfig) -> StableFrames {
        StableFrames {
            frames: config.stable_frames.get(),
            still: config.still_diff.0,
            new: config.new_diff.0,
            blank: config.blank_contrast.0,
            previous: None,
            run: 0,
            last_taken: None,
            manual: false,
        }
    }

    /// Take the next frame whatever it shows.
    pub fn trigger(&mut self) {
        self.manual = true;
    }

    /// Look at the next frame; Some when it should be analyzed.
    pub fn push(&mut self, thumb: Thumbnail) -> Option<Take> {
        if std::mem::take(&mut self.manual) {
            self.previous = Some(thumb.clone());
            self.last_taken = Some(thumb);
            self.run = 0;
            return Some(Take::Manual);
        }
        let still = self.previous.as_ref().is_some_and(|p| p.diff(&thumb) <= self.still);
        self.run = if still { self.run + 1 } else { 1 };
        let take = self.run == self.frames
            && thumb.contrast() >= self.blank
            && self.last_taken.as_ref().is_none_or(|last| last.diff(&thumb) > self.new);
        if take {
            self.last_taken = Some(thumb.clone());
        }
        self.previous = Some(thumb);
        take.then_some(Take::Stable)
    }
}

/// Where the capture thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureState {
    Opening,
    Streaming,
    /// Failed or unplugged; being reopened with backoff.
    Lost,
}

/// The capture thread. Dropping it stops the thread.
pub struct CaptureService {
    trigger: mpsc::Sender<()>,
    state: Arc<AtomicU8>,
    _worker: Worker,
}

impl CaptureService {
    /// Start capturing from `config.device`, writing chosen frames into `spool_dir`.
    pub fn start(config: CaptureConfig, spool_dir: PathBuf, limits: Limits) -> io::Result<CaptureService> {
        let (trigger, triggers) = mpsc::channel();
        let state = Arc::new(AtomicU8::new(CaptureState::Opening as u8));
        let thread_state = state.clone();
        let worker = Worker::spawn("capture", move |stop| {
            serve(&config, &spool_dir, limits, &triggers, &thread_state, stop)
        })?;
        Ok(CaptureService {
            trigger,
            state,
            _worker: worker,
        })
    }

    /// Analyze the next frame, stable or not.
    pub fn trigger(&self) {
        let _ = self.trigger.send(());
    }

    pub fn state(&self) -> CaptureState {
        match self.state.load(Ordering::Relaxed) {
            s if s == CaptureState::Streaming as u8 => CaptureState::Streaming,
            s if s == CaptureState::Lost as u8 => CaptureState::Lost,
            _ => CaptureState::Opening,
        }
    }
}

/// What a device offers and what was negotiated, for logs and `ptxd doctor`.
#[derive(Debug, Clone)]
pub struct Negotiated {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    pub stride: usize,
}

/// The four-character codes a device offers for capture.
pub fn offered_formats(device: &Device) -> io::Result<Vec<[u8; 4]>> {
    Ok(device.enum_formats()?.into_iter().map(|d| d.fourcc.repr).collect())
}

/// Open a device and set the most preferred format it offers (and the configured size).
pub fn open(config: &CaptureConfig) -> io::Result<(Device, Negotiated)> {
    let device = Device::with_path(&config.device)?;
    let offered = offered_formats(&device)?;
    let format = choose_format(&offered, &config.formats).ok_or_else(|| {
        let names: Vec<String> = offered.iter().map(|&c| fourcc_name(c)).collect();
        io::Error::other(format!(
            "offers none of the configured formats (it offers {})",
            names.join(", ")
        ))
    })?;
    let mut wanted = device.format()?;
    wanted.fourcc = FourCC::new(&format.fourcc());
    if let Some([w, h]) = config.size {
        (wanted.width, wanted.height) = (w, h);
    }
    let got = device.set_format(&wanted)?;
    if got.fourcc.repr != format.fourcc() {
        return Err(io::Error::other(format!(
            "asked for {format} and the driver chose {}",
            fourcc_name(got.fourcc.repr)
        )));
    }
    let bpp = match format {
        PixelFormat::Grey | PixelFormat::Mjpg => 1,
        PixelFormat::Y16 | PixelFormat::Yuyv => 2,
        PixelFormat::Rgb3 => 3,
    };
    let stride = if got.stride == 0 { got.width * bpp } else { got.stride };
    Ok((
        device,
        Negotiated {
            format,
            width: got.width as usize,
            height: got.height as usize,
            stride: stride as usize,
        },
    ))
}

fn serve(
    config: &CaptureConfig,
    spool_dir: &Path,
    limits: Limits,
    triggers: &mpsc::Receiver<()>,
    state: &AtomicU8,
    stop: &AtomicBool,
) {
    let name = config.device.display().to_string();
    let short = config
        .device
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "video".into());
    let mut backoff = Backoff::new(Duration::from_millis(config.retry_max_ms.get()));
    let mut detector = StableFrames::new(config);
    while !stop.load(Ordering::Relaxed) {
        let outcome = open(config).and_then(|(device, neg)| {
            if backoff.worked() {
                log::info!("capture {name}: device is back");
            }
            log::info!("capture {name}: {}x{} {}", neg.width, neg.height, neg.format);
            state.store(CaptureState::Streaming as u8, Ordering::Relaxed);
            stream(&device, &neg, limits, &mut detector, triggers, stop, |image, take| {
                save_frame(&image, spool_dir, &short, take)
            })
        });
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Err(e) = outcome {
            state.store(CaptureState::Lost as u8, Ordering::Relaxed);
            if backoff.failed() {
                log::warn!("capture {name}: {e}; retrying with backoff, other sources keep working");
            }
        }
        backoff.sleep(stop);
        // a trigger while the device was away asked for a frame that no longer exists
        while triggers.try_recv().is_ok() {}
    }
}

/// Stream frames until stop (Ok) or until the device fails or stalls (Err).
fn stream(
    device: &Device,
    neg: &Negotiated,
    limits: Limits,
    detector: &mut StableFrames,
    triggers: &mpsc::Receiver<()>,
    stop: &AtomicBool,
    mut take: impl FnMut(GreyImage, Take),
) -> io::Result<()> {
    let mut stream = MmapStream::with_buffers(device, Type::VideoCapture, 4)?;
    stream.set_timeout(Duration::from_millis(250));
    let mut last_frame = Instant::now();
    let mut bad_frames = 0u32;
    while !stop.load(Ordering::Relaxed) {
        while triggers.try_recv().is_ok() {
            detector.trigger();
        }
        let (bytes, meta) = match stream.next() {
            Ok(frame) => frame,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                if last_frame.elapsed() > STALL {
                    return Err(io::Error::other(format!("no frame for {} s", STALL.as_secs())));
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        last_frame = Instant::now();
        let used = (meta.bytesused as usize).min(bytes.len());
        let raw = RawFrame {
            format: neg.format,
            width: neg.width,
            height: neg.height,
            stride: neg.stride,
            bytes: if used > 0 { &bytes[..used] } else { bytes },
        };
        match to_grey(&raw, limits) {
            Ok(image) => {
                bad_frames = 0;
                if let Some(why) = detector.push(Thumbnail::of(&image)) {
                    take(image, why);
                }
            }
            Err(e) => {
                // one damaged frame is noise; a stream of them is worth one line
                bad_frames += 1;
                if bad_frames == 10 {
                    log::warn!("capture frame {}: {e} (10 in a row)", meta.sequence);
                }
            }
        }
    }
    Ok(())
}

/// Write a chosen frame into the spool folder, whole or not at all.
fn save_frame(image: &GreyImage, spool_dir: &Path, device: &str, take: Take) {
    let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-', '.'], "");
    let path = spool_dir.join(format!("capture-{device}-{stamp}.png"));
    match files::write_durably(&path, &image.to_png()) {
        Ok(()) => log::info!("capture: {:?} frame saved as {}", take, path.display()),
        Err(e) => log::error!("capture: cannot save the frame to {}: {e}", path.display()),
    }
}

/// A four-character code as text ("Y16 " as "Y16"); a byte that is not ASCII shows as '?'
/// (drivers set the top bit for big-endian variants).
pub fn fourcc_name(code: [u8; 4]) -> String {
    let text: String = code
        .iter()
        .map(|&b| match b.is_ascii_graphic() || b == b' ' {
            true => b as char,
            false => '?',
        })
        .collect();
    text.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn fourccs_print_as_text() {
        assert_eq!(super::fourcc_name(*b"YUYV"), "YUYV");
        assert_eq!(super::fourcc_name(*b"Y16 "), "Y16");
        // the big-endian flag (0x80 on the last byte) is not text
        assert_eq!(super::fourcc_name([b'Y', b'1', b'6', b' ' | 0x80]), "Y16?");
    }

    use super::*;
    use crate::config::{GreyLevels, Limits};
    use std::num::{NonZeroU32, NonZeroU64};

    fn config(frames: u32) -> CaptureConfig {
        CaptureConfig {
            device: "/dev/video0".into(),
            formats: PixelFormat::ALL.to_vec(),
            size: None,
            stable_frames: NonZeroU32::new(frames).unwrap(),
            still_diff: GreyLevels(2.0),
            new_diff: GreyLevels(8.0),
            blank_contrast: GreyLevels(4.0),
            retry_max_ms: NonZeroU64::new(1000).unwrap(),
        }
    }

    /// A 64x64 frame: a gradient shifted by `shift`, plus `noise` on every pixel.
    fn frame(shift: u8, noise: u8) -> GreyImage {
        let pixels = (0..64 * 64)
            .map(|i| {
                ((i % 64) as u8 * 3)
                    .wrapping_add(shift)
                    .saturating_add(noise * (i % 2) as u8)
            })
            .collect();
        GreyImage::new(64, 64, pixels).unwrap()
    }

    #[test]
    fn formats_are_chosen_by_preference() {
        let offered = [*b"YUYV", *b"MJPG", *b"RGB3"];
        assert_eq!(choose_format(&offered, &PixelFormat::ALL), Some(PixelFormat::Yuyv));
        assert_eq!(
            choose_format(&offered, &[PixelFormat::Mjpg, PixelFormat::Yuyv]),
            Some(PixelFormat::Mjpg)
        );
        assert_eq!(choose_format(&[*b"NV12"], &PixelFormat::ALL), None);
    }

    #[test]
    fn pixel_formats_convert_to_the_same_grey() {
        // a 4x2 frame, rows padded to 8 pixels' worth of bytes
        let grey = [10u8, 20, 30, 40, 50, 60, 70, 80];
        let limits = Limits::default();
        let pad = |px: &[u8], bpp: usize| -> Vec<u8> {
            px.chunks(4 * bpp)
                .flat_map(|row| row.iter().copied().chain(std::iter::repeat_n(0xEE, 4 * bpp)))
                .collect()
        };
        let expect = GreyImage::new(4, 2, grey.to_vec()).unwrap();
        let raw = |format, bpp: usize, bytes: &Vec<u8>| {
            to_grey(
                &RawFrame {
                    format,
                    width: 4,
                    height: 2,
                    stride: 8 * bpp,
                    bytes,
                },
                limits,
            )
            .unwrap()
        };
        assert_eq!(raw(PixelFormat::Grey, 1, &pad(&grey, 1)), expect);
        let yuyv: Vec<u8> = grey.iter().flat_map(|&y| [y, 128]).collect();
        assert_eq!(raw(PixelFormat::Yuyv, 2, &pad(&yuyv, 2)), expect);
        let rgb: Vec<u8> = grey.iter().flat_map(|&y| [y, y, y]).collect();
        assert_eq!(raw(PixelFormat::Rgb3, 3, &pad(&rgb, 3)), expect);
        // 16-bit: stretched min..max onto 0..255, as 16-bit PNGs are
        let y16: Vec<u8> = grey.iter().flat_map(|&y| (u16::from(y) * 64).to_le_bytes()).collect();
        let stretched = raw(PixelFormat::Y16, 2, &pad(&y16, 2));
        assert_eq!((stretched.pixels[0], stretched.pixels[7]), (0, 255));
        assert!(stretched.pixels.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn short_or_garbled_frames_are_errors_not_panics() {
        let limits = Limits::default();
        let short = RawFrame {
            format: PixelFormat::Yuyv,
            width: 640,
            height: 480,
            stride: 1280,
            bytes: &[0; 1000],
        };
        assert!(to_grey(&short, limits).unwrap_err().to_string().contains("short frame"));
        let narrow = RawFrame { stride: 100, ..short };
        assert!(to_grey(&narrow, limits).is_err());
        let jpeg = RawFrame {
            format: PixelFormat::Mjpg,
            bytes: b"\xff\xd8\xff garbage",
            ..short
        };
        assert!(to_grey(&jpeg, limits)
            .unwrap_err()
            .to_string()
            .starts_with("MJPG frame"));
    }

    #[test]
    fn a_new_image_is_taken_once_when_it_holds_still() {
        let mut d = StableFrames::new(&config(3));
        let shown = |d: &mut StableFrames, image: &GreyImage| d.push(Thumbnail::of(image));
        // frames still changing: nothing
        assert_eq!(shown(&mut d, &frame(0, 0)), None);
        assert_eq!(shown(&mut d, &frame(40, 0)), None);
        // the same image three times (with sensor noise): taken on the third, once
        assert_eq!(shown(&mut d, &frame(80, 1)), None);
        assert_eq!(shown(&mut d, &frame(80, 0)), None);
        assert_eq!(shown(&mut d, &frame(80, 1)), Some(Take::Stable));
        for _ in 0..10 {
            assert_eq!(shown(&mut d, &frame(80, 0)), None);
        }
        // a flicker back to the same image is not new
        shown(&mut d, &frame(0, 0));
        for _ in 0..5 {
            assert_eq!(shown(&mut d, &frame(80, 0)), None);
        }
        // a different image is
        let taken: Vec<_> = (0..5).filter_map(|_| shown(&mut d, &frame(120, 0))).collect();
        assert_eq!(taken, [Take::Stable]);
    }

    #[test]
    fn blank_frames_are_never_taken_but_a_manual_trigger_is() {
        let mut d = StableFrames::new(&config(2));
        let blank = GreyImage::new(64, 64, vec![7; 64 * 64]).unwrap();
        for _ in 0..10 {
            assert_eq!(d.push(Thumbnail::of(&blank)), None);
        }
        d.trigger();
        assert_eq!(d.push(Thumbnail::of(&blank)), Some(Take::Manual));
        assert_eq!(d.push(Thumbnail::of(&blank)), None);
    }

    #[test]
    fn thumbnails_measure_difference_and_contrast() {
        let a = Thumbnail::of(&frame(0, 0));
        assert_eq!(a.diff(&a), 0.0);
        assert!((a.diff(&Thumbnail::of(&frame(10, 0))) - 10.0).abs() < 0.5);
        assert!(a.contrast() > 40.0);
        // odd sizes: every thumbnail cell still gets pixels
        let odd = GreyImage::new(33, 47, vec![200; 33 * 47]).unwrap();
        assert_eq!(Thumbnail::of(&odd).contrast(), 0.0);
    }

    #[test]
    fn saved_frames_are_grey_pngs_the_decoder_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let image = frame(30, 0);
        save_frame(&image, dir.path(), "video0", Take::Manual);
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("capture-video0-") && name.ends_with(".png"), "{name}");
        let back = decode::decode_file(&files[0], Limits::default()).unwrap();
        assert_eq!(back.image, image);
    }
}
