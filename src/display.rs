//! The attached screen: a Linux framebuffer (HDMI), an SPI panel, or PNG snapshots.
//!
//! Every screen is drawn by [`crate::render`] into an in-memory [`Framebuffer`] of the
//! display's size, then handed whole to [`Display::show`]. Drawing off-screen costs one copy
//! but means a panel never shows a half-drawn result, and the three targets share all of
//! the drawing code: they differ only in how pixels leave the process.
//!
//! - [`LinuxFb`]: `/dev/fbN` mapped into memory; 16-, 24- and 32-bpp layouts from the
//!   variable screen info's bitfields, the line stride from the fixed info. Its console can
//!   be switched to graphics mode (`KDSETMODE`), and is switched back when ptxd exits.
//! - [`SpiPanel`]: an ST7789 or ILI9341 through `mipidsi`, on a spidev bus with its DC,
//!   reset and backlight on GPIO character-device lines (`linux-embedded-hal`).
//! - [`PngSnapshot`]: `<dir>/screen.png`, replaced atomically each time the screen changes.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use embedded_graphics::pixelcolor::{Rgb565, Rgb888};
use embedded_graphics::prelude::*;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_hal::spi::SpiDevice;
use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
use linux_embedded_hal::spidev::{SpiModeFlags, SpidevOptions};
use linux_embedded_hal::{CdevPin, Delay, SpidevDevice};
use memmap2::{MmapMut, MmapOptions};
use mipidsi::interface::SpiInterface;
use mipidsi::models::{ILI9341Rgb565, ST7789};
use mipidsi::options::{ColorInversion, Orientation, Rotation};
use thiserror::Error;

use crate::config::{DisplayConfig, FbConfig, LineId, PanelModel, PngConfig, SpiConfig};
use crate::journal;
use crate::render::Framebuffer;

#[derive(Debug, Error)]
pub enum DisplayError {
    #[error("display {}: {reason}", device.display())]
    Open { device: PathBuf, reason: String },
    #[error("display {}: cannot draw: {reason}", device.display())]
    Draw { device: PathBuf, reason: String },
}

/// A screen that shows whole frames.
pub trait Display {
    /// The size frames must be drawn at.
    fn size(&self) -> Size;
    /// Show `frame` (drawn at [`Display::size`]).
    fn show(&mut self, frame: &Framebuffer) -> Result<(), DisplayError>;
    /// Where it is, for messages.
    fn name(&self) -> String;
}

/// Open the display the config names.
pub fn open(config: &DisplayConfig) -> Result<Box<dyn Display + Send>, DisplayError> {
    Ok(match config {
        DisplayConfig::Fb(c) => Box::new(LinuxFb::open(c)?),
        DisplayConfig::Spi(c) => Box::new(SpiPanel::open(c)?),
        DisplayConfig::Png(c) => Box::new(PngSnapshot::new(c)),
    })
}

/// PNG snapshots: `<dir>/screen.png`.
pub struct PngSnapshot {
    path: PathBuf,
    size: Size,
}

impl PngSnapshot {
    pub fn new(config: &PngConfig) -> PngSnapshot {
        PngSnapshot {
            path: config.dir.join("screen.png"),
            size: Size::new(config.size.width, config.size.height),
        }
    }
}

impl Display for PngSnapshot {
    fn size(&self) -> Size {
        self.size
    }

    fn show(&mut self, frame: &Framebuffer) -> Result<(), DisplayError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .and_then(|()| journal::write_durably(&self.path, &frame.to_png()))
            .map_err(|e| DisplayError::Draw {
                device: self.path.clone(),
                reason: e.to_string(),
            })
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

/// One colour channel's place in a framebuffer pixel (`struct fb_bitfield`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Bitfield {
    pub offset: u32,
    pub length: u32,
    pub msb_right: u32,
}

/// How pixels are laid out in a framebuffer's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FbLayout {
    pub width: u32,
    pub height: u32,
    pub bits_per_pixel: u32,
    /// Bytes from one line to the next (may exceed width x bytes per pixel).
    pub stride: usize,
    pub red: Bitfield,
    pub green: Bitfield,
    pub blue: Bitfield,
}

impl FbLayout {
    /// Check that the layout is one ptxd can write, and fits in `len` bytes.
    pub fn check(&self, len: usize) -> Result<(), String> {
        if ![16, 24, 32].contains(&self.bits_per_pixel) {
            return Err(format!(
                "{} bits per pixel is not supported (16, 24 or 32 are)",
                self.bits_per_pixel
            ));
        }
        for c in [self.red, self.green, self.blue] {
            if c.length == 0 || c.length > 8 || c.offset + c.length > self.bits_per_pixel {
                return Err(format!(
                    "colour bitfield {c:?} does not fit a {}-bit pixel",
                    self.bits_per_pixel
                ));
            }
        }
        let line = self.width as usize * self.bits_per_pixel as usize / 8;
        if self.width == 0 || self.height == 0 || self.stride < line {
            return Err(format!(
                "{}x{} with stride {} is not a usable screen",
                self.width, self.height, self.stride
            ));
        }
        let needed = self.stride * (self.height as usize - 1) + line;
        if len < needed {
            return Err(format!("memory is {len} bytes, the screen needs {needed}"));
        }
        Ok(())
    }

    /// The pixel value of `c`, in this layout.
    fn pixel(&self, c: Rgb888) -> u32 {
        let put = |v: u8, f: Bitfield| (u32::from(v) >> (8 - f.length)) << f.offset;
        put(c.r(), self.red) | put(c.g(), self.green) | put(c.b(), self.blue)
    }
}

/// Copy `frame` into framebuffer memory laid out as `layout` (little-endian pixels, as on
/// ARM and x86). The frame is clipped to the screen; the rest of the screen is untouched.
pub fn pack(frame: &Framebuffer, layout: &FbLayout, memory: &mut [u8]) {
    let bytes = layout.bits_per_pixel as usize / 8;
    let w = frame.size().width.min(layout.width);
    let h = frame.size().height.min(layout.height);
    for y in 0..h {
        let row = &mut memory[y as usize * layout.stride..];
        for x in 0..w {
            let v = layout.pixel(frame.pixel(x, y)).to_le_bytes();
            let at = x as usize * bytes;
            row[at..at + bytes].copy_from_slice(&v[..bytes]);
        }
    }
}

// `struct fb_var_screeninfo` and `struct fb_fix_screeninfo` from <linux/fb.h>. The kernel
// fills every field; ptxd reads a few.
#[allow(dead_code)]
#[repr(C)]
#[derive(Default)]
struct VarScreenInfo {
    xres: u32,
    yres: u32,
    xres_virtual: u32,
    yres_virtual: u32,
    xoffset: u32,
    yoffset: u32,
    bits_per_pixel: u32,
    grayscale: u32,
    red: Bitfield,
    green: Bitfield,
    blue: Bitfield,
    transp: Bitfield,
    nonstd: u32,
    activate: u32,
    height: u32,
    width: u32,
    accel_flags: u32,
    timing: [u32; 11],
    rotate: u32,
    colorspace: u32,
    reserved: [u32; 4],
}

#[allow(dead_code)]
#[repr(C)]
struct FixScreenInfo {
    id: [u8; 16],
    smem_start: libc::c_ulong,
    smem_len: u32,
    kind: u32,
    type_aux: u32,
    visual: u32,
    xpanstep: u16,
    ypanstep: u16,
    ywrapstep: u16,
    line_length: u32,
    mmio_start: libc::c_ulong,
    mmio_len: u32,
    accel: u32,
    capabilities: u16,
    reserved: [u16; 2],
}

const FBIOGET_VSCREENINFO: libc::c_ulong = 0x4600;
const FBIOGET_FSCREENINFO: libc::c_ulong = 0x4602;
const KDSETMODE: libc::c_ulong = 0x4B3A;
const KD_TEXT: libc::c_ulong = 0;
const KD_GRAPHICS: libc::c_ulong = 1;

/// What the kernel says of an open framebuffer device.
#[derive(Debug, Clone)]
pub struct FbInfo {
    pub layout: FbLayout,
    /// Where the visible page starts in the device memory (a panned fb shows from yoffset).
    pub offset: usize,
    /// The device memory's length (`smem_len`): what to map. A character device's file
    /// size is 0, so it cannot come from the file.
    pub memory_len: usize,
    /// `fb_fix_screeninfo.id`, e.g. "virtio_gpudrmfb".
    pub id: String,
}

/// The screen geometry of an open framebuffer device.
pub fn fb_info(file: &File) -> std::io::Result<FbInfo> {
    let mut var = VarScreenInfo::default();
    // SAFETY: the kernel fills a struct of exactly this layout; the fd is open.
    if unsafe { libc::ioctl(file.as_raw_fd(), FBIOGET_VSCREENINFO as _, &mut var) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above; all-zero is a valid value of this plain-data struct.
    let mut fix: FixScreenInfo = unsafe { std::mem::zeroed() };
    if unsafe { libc::ioctl(file.as_raw_fd(), FBIOGET_FSCREENINFO as _, &mut fix) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let id = String::from_utf8_lossy(&fix.id).trim_end_matches('\0').to_string();
    let layout = FbLayout {
        width: var.xres,
        height: var.yres,
        bits_per_pixel: var.bits_per_pixel,
        stride: fix.line_length as usize,
        red: var.red,
        green: var.green,
        blue: var.blue,
    };
    Ok(FbInfo {
        layout,
        offset: fix.line_length as usize * var.yoffset as usize,
        memory_len: fix.smem_len as usize,
        id,
    })
}

/// A Linux framebuffer, mapped.
pub struct LinuxFb {
    device: PathBuf,
    layout: FbLayout,
    offset: usize,
    memory: MmapMut,
    /// The console switched to graphics mode, switched back on drop.
    tty: Option<File>,
}

impl LinuxFb {
    pub fn open(config: &FbConfig) -> Result<LinuxFb, DisplayError> {
        let err = |reason: String| DisplayError::Open {
            device: config.device.clone(),
            reason,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&config.device)
            .map_err(|e| err(format!("cannot open: {e} (is the user in the video group?)")))?;
        let FbInfo {
            layout,
            offset,
            memory_len,
            id,
        } = fb_info(&file).map_err(|e| err(format!("not a framebuffer: {e}")))?;
        // SAFETY: the mapping is shared device memory; nothing else in this process maps it,
        // and another writer (a console) at worst draws over our pixels.
        let memory = unsafe { MmapOptions::new().len(memory_len).map_mut(&file) }
            .map_err(|e| err(format!("cannot map {memory_len} bytes: {e}")))?;
        layout
            .check(memory.len().saturating_sub(offset))
            .map_err(|e| err(format!("{id}: {e}")))?;
        let tty = config.tty.as_ref().and_then(|path| {
            let tty = OpenOptions::new().read(true).write(true).open(path);
            // SAFETY: KDSETMODE takes an integer argument.
            match tty.and_then(|t| {
                if unsafe { libc::ioctl(t.as_raw_fd(), KDSETMODE as _, KD_GRAPHICS) } < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(t)
                }
            }) {
                Ok(t) => Some(t),
                Err(e) => {
                    log::warn!(
                        "display: cannot put {} in graphics mode ({e}); its cursor may draw over the screen",
                        path.display()
                    );
                    None
                }
            }
        });
        log::info!(
            "display {}: {} {}x{} {} bpp, stride {}",
            config.device.display(),
            id,
            layout.width,
            layout.height,
            layout.bits_per_pixel,
            layout.stride
        );
        Ok(LinuxFb {
            device: config.device.clone(),
            layout,
            offset,
            memory,
            tty,
        })
    }
}

impl Display for LinuxFb {
    fn size(&self) -> Size {
        Size::new(self.layout.width, self.layout.height)
    }

    fn show(&mut self, frame: &Framebuffer) -> Result<(), DisplayError> {
        pack(frame, &self.layout, &mut self.memory[self.offset..]);
        Ok(())
    }

    fn name(&self) -> String {
        self.device.display().to_string()
    }
}

impl Drop for LinuxFb {
    fn drop(&mut self) {
        if let Some(tty) = &self.tty {
            // SAFETY: as in open.
            unsafe { libc::ioctl(tty.as_raw_fd(), KDSETMODE as _, KD_TEXT) };
        }
    }
}

type Interface<S, P> = SpiInterface<'static, S, P>;

enum Panel<S: SpiDevice, P: OutputPin> {
    St7789(mipidsi::Display<Interface<S, P>, ST7789, P>),
    Ili9341(mipidsi::Display<Interface<S, P>, ILI9341Rgb565, P>),
}

/// An ST7789 or ILI9341 panel over any `embedded-hal` SPI device and pins: spidev and GPIO
/// character-device lines on a board ([`SpiPanel::open`]), a recorder in the tests.
pub struct SpiPanel<S: SpiDevice, P: OutputPin> {
    device: PathBuf,
    size: Size,
    panel: Panel<S, P>,
    /// Held on (high) while the panel is in use.
    _backlight: Option<P>,
}

/// Request one output line from a gpiochip, by offset or name.
pub fn output_line(chip: &mut Chip, line: &LineId, initial: u8, consumer: &str) -> Result<CdevPin, String> {
    let offset = line_offset(chip, line)?;
    let handle = chip
        .get_line(offset)
        .and_then(|l| l.request(LineRequestFlags::OUTPUT, initial, consumer))
        .map_err(|e| format!("{line}: {e}"))?;
    CdevPin::new(handle).map_err(|e| format!("{line}: {e}"))
}

/// The offset of a line given by number or by name.
pub fn line_offset(chip: &mut Chip, line: &LineId) -> Result<u32, String> {
    match line {
        LineId::Offset(n) if *n < chip.num_lines() => Ok(*n),
        LineId::Offset(n) => Err(format!("line {n}: the chip has {} lines", chip.num_lines())),
        LineId::Name(name) => chip
            .lines()
            .find(|l| l.info().is_ok_and(|i| i.name() == Some(name.as_str())))
            .map(|l| l.offset())
            .ok_or_else(|| format!("no line named \"{name}\" on {}", chip.path().display())),
    }
}

impl SpiPanel<SpidevDevice, CdevPin> {
    /// Open the configured spidev bus and GPIO lines, and initialise the panel.
    pub fn open(config: &SpiConfig) -> Result<Self, DisplayError> {
        let err = |reason: String| DisplayError::Open {
            device: config.spi.clone(),
            reason,
        };
        let mut spi = SpidevDevice::open(&config.spi).map_err(|e| err(format!("cannot open: {e}")))?;
        spi.0
            .configure(
                &SpidevOptions::new()
                    .bits_per_word(8)
                    .max_speed_hz(config.spi_hz)
                    .mode(SpiModeFlags::SPI_MODE_0)
                    .build(),
            )
            .map_err(|e| err(format!("cannot configure: {e}")))?;
        let mut chip = Chip::new(&config.gpiochip).map_err(|e| err(format!("{}: {e}", config.gpiochip.display())))?;
        let dc = output_line(&mut chip, &config.dc, 0, "ptxd-dc").map_err(|e| err(format!("DC {e}")))?;
        let Some(reset) = &config.reset else {
            return Err(err(
                "set display.reset: the panel is initialised by a reset pulse".into()
            ));
        };
        let reset = output_line(&mut chip, reset, 1, "ptxd-reset").map_err(|e| err(format!("reset {e}")))?;
        let backlight = match &config.backlight {
            Some(l) => Some(output_line(&mut chip, l, 1, "ptxd-backlight").map_err(|e| err(format!("backlight {e}")))?),
            None => None,
        };
        SpiPanel::new(spi, dc, reset, backlight, config, &mut Delay)
    }
}

impl<S: SpiDevice, P: OutputPin> SpiPanel<S, P> {
    /// Initialise a panel on `spi` with its data/command, reset and (optional) backlight
    /// pins; the size, rotation and colour inversion come from `config`.
    pub fn new(
        spi: S,
        dc: P,
        reset: P,
        backlight: Option<P>,
        config: &SpiConfig,
        delay: &mut impl DelayNs,
    ) -> Result<Self, DisplayError> {
        let err = |reason: String| DisplayError::Open {
            device: config.spi.clone(),
            reason,
        };
        // the panel lives as long as the daemon: its transfer buffer can too
        let buffer: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
        let di = SpiInterface::new(spi, dc, buffer);
        let [w, h] = config.size;
        let rotation = match config.rotation {
            90 => Rotation::Deg90,
            180 => Rotation::Deg180,
            270 => Rotation::Deg270,
            _ => Rotation::Deg0,
        };
        // mipidsi takes the panel's native (portrait) size; the config gives it as mounted
        let (nw, nh) = if matches!(rotation, Rotation::Deg90 | Rotation::Deg270) {
            (h, w)
        } else {
            (w, h)
        };
        let invert = match config.invert_colors.unwrap_or(config.panel == PanelModel::St7789) {
            true => ColorInversion::Inverted,
            false => ColorInversion::Normal,
        };
        let orientation = Orientation::new().rotate(rotation);
        let panel = match config.panel {
            PanelModel::St7789 => mipidsi::Builder::new(ST7789, di)
                .display_size(nw, nh)
                .orientation(orientation)
                .invert_colors(invert)
                .reset_pin(reset)
                .init(delay)
                .map(Panel::St7789),
            PanelModel::Ili9341 => mipidsi::Builder::new(ILI9341Rgb565, di)
                .display_size(nw, nh)
                .orientation(orientation)
                .invert_colors(invert)
                .reset_pin(reset)
                .init(delay)
                .map(Panel::Ili9341),
        }
        .map_err(|e| {
            let e = format!("{e:?}");
            if e.contains("InvalidDisplaySize") {
                err(format!(
                    "display.size {w}x{h} at rotation {} does not fit a {:?} (at most 240x320 unrotated): \
                     for a landscape panel set rotation = 90 or 270",
                    config.rotation, config.panel
                ))
            } else {
                err(format!("panel init failed: {e}"))
            }
        })?;
        log::info!("display {}: {:?} {w}x{h}", config.spi.display(), config.panel);
        Ok(SpiPanel {
            device: config.spi.clone(),
            size: Size::new(u32::from(w), u32::from(h)),
            panel,
            _backlight: backlight,
        })
    }
}

/// The frame's pixels in RGB565, row by row.
pub fn to_rgb565(frame: &Framebuffer) -> impl Iterator<Item = Rgb565> + '_ {
    let Size { width, height } = frame.size();
    (0..height).flat_map(move |y| (0..width).map(move |x| Rgb565::from(frame.pixel(x, y))))
}

impl<S: SpiDevice, P: OutputPin> Display for SpiPanel<S, P> {
    fn size(&self) -> Size {
        self.size
    }

    fn show(&mut self, frame: &Framebuffer) -> Result<(), DisplayError> {
        let Size { width, height } = frame.size().component_min(self.size);
        if width == 0 || height == 0 {
            return Ok(());
        }
        let (ex, ey) = (width as u16 - 1, height as u16 - 1);
        let pixels = to_rgb565(frame);
        let result = match &mut self.panel {
            Panel::St7789(d) => d.set_pixels(0, 0, ex, ey, pixels).map_err(|e| format!("{e:?}")),
            Panel::Ili9341(d) => d.set_pixels(0, 0, ex, ey, pixels).map_err(|e| format!("{e:?}")),
        };
        result.map_err(|reason| DisplayError::Draw {
            device: self.device.clone(),
            reason,
        })
    }

    fn name(&self) -> String {
        self.device.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};

    fn bf(offset: u32, length: u32) -> Bitfield {
        Bitfield {
            offset,
            length,
            msb_right: 0,
        }
    }

    /// A 3x2 frame: red, green, blue / white, black, grey.
    fn frame() -> Framebuffer {
        let mut f = Framebuffer::new(3, 2);
        let colours = [
            Rgb888::RED,
            Rgb888::GREEN,
            Rgb888::BLUE,
            Rgb888::WHITE,
            Rgb888::BLACK,
            Rgb888::new(128, 128, 128),
        ];
        for (i, c) in colours.into_iter().enumerate() {
            let p = Point::new(i as i32 % 3, i as i32 / 3);
            Rectangle::new(p, Size::new(1, 1))
                .into_styled(PrimitiveStyle::with_fill(c))
                .draw(&mut f)
                .unwrap();
        }
        f
    }

    #[test]
    fn rgb565_with_a_padded_stride() {
        // 4 pixels wide screen, 10 bytes a line (2 bytes of padding)
        let layout = FbLayout {
            width: 4,
            height: 2,
            bits_per_pixel: 16,
            stride: 10,
            red: bf(11, 5),
            green: bf(5, 6),
            blue: bf(0, 5),
        };
        let mut mem = vec![0xAAu8; 20];
        layout.check(mem.len()).unwrap();
        pack(&frame(), &layout, &mut mem);
        let px = |x: usize, y: usize| u16::from_le_bytes([mem[y * 10 + 2 * x], mem[y * 10 + 2 * x + 1]]);
        assert_eq!([px(0, 0), px(1, 0), px(2, 0)], [0xF800, 0x07E0, 0x001F]);
        assert_eq!([px(0, 1), px(1, 1), px(2, 1)], [0xFFFF, 0x0000, 0x8410]);
        // outside the frame and in the padding: untouched
        assert_eq!(px(3, 0), 0xAAAA);
        assert_eq!(&mem[8..10], &[0xAA, 0xAA]);
    }

    #[test]
    fn xrgb8888_and_bgr_layouts() {
        let xrgb = FbLayout {
            width: 3,
            height: 2,
            bits_per_pixel: 32,
            stride: 12,
            red: bf(16, 8),
            green: bf(8, 8),
            blue: bf(0, 8),
        };
        let mut mem = vec![0u8; 24];
        pack(&frame(), &xrgb, &mut mem);
        assert_eq!(&mem[0..4], &[0, 0, 255, 0], "red as B G R X in memory");
        assert_eq!(&mem[8..12], &[255, 0, 0, 0], "blue");
        let bgr = FbLayout {
            red: bf(0, 8),
            blue: bf(16, 8),
            ..xrgb
        };
        pack(&frame(), &bgr, &mut mem);
        assert_eq!(&mem[0..4], &[255, 0, 0, 0]);
        let rgb24 = FbLayout {
            bits_per_pixel: 24,
            stride: 9,
            ..xrgb
        };
        let mut mem = vec![0u8; 18];
        pack(&frame(), &rgb24, &mut mem);
        assert_eq!(&mem[9..15], &[255, 255, 255, 0, 0, 0]);
    }

    #[test]
    fn unusable_layouts_are_refused_with_a_reason() {
        let ok = FbLayout {
            width: 640,
            height: 480,
            bits_per_pixel: 16,
            stride: 1280,
            red: bf(11, 5),
            green: bf(5, 6),
            blue: bf(0, 5),
        };
        assert!(ok.check(1280 * 480).is_ok());
        assert!(ok.check(1000).unwrap_err().contains("needs"));
        let eight = FbLayout {
            bits_per_pixel: 8,
            ..ok
        };
        assert!(eight.check(1 << 20).unwrap_err().contains("8 bits"));
        let narrow = FbLayout { stride: 100, ..ok };
        assert!(narrow.check(1 << 20).is_err());
    }

    #[test]
    fn the_panel_gets_rgb565_rows() {
        let px: Vec<Rgb565> = to_rgb565(&frame()).collect();
        assert_eq!(px.len(), 6);
        assert_eq!(px[0], Rgb565::RED);
        assert_eq!(px[3], Rgb565::WHITE);
    }

    /// What crossed the panel's wires: DC and reset levels, and SPI bytes.
    #[derive(Debug, Clone, PartialEq)]
    enum Wire {
        Dc(bool),
        Reset(bool),
        Bytes(Vec<u8>),
    }

    #[derive(Clone, Default)]
    struct Recorder(std::rc::Rc<std::cell::RefCell<Vec<Wire>>>);

    struct Pin(Recorder, fn(bool) -> Option<Wire>);

    impl embedded_hal::digital::ErrorType for Pin {
        type Error = std::convert::Infallible;
    }
    impl OutputPin for Pin {
        fn set_low(&mut self) -> Result<(), Self::Error> {
            self.0 .0.borrow_mut().extend((self.1)(false));
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Self::Error> {
            self.0 .0.borrow_mut().extend((self.1)(true));
            Ok(())
        }
    }
    impl embedded_hal::spi::ErrorType for Recorder {
        type Error = std::convert::Infallible;
    }
    impl SpiDevice for Recorder {
        fn transaction(&mut self, ops: &mut [embedded_hal::spi::Operation<'_, u8>]) -> Result<(), Self::Error> {
            for op in ops {
                if let embedded_hal::spi::Operation::Write(bytes) = op {
                    self.0.borrow_mut().push(Wire::Bytes(bytes.to_vec()));
                }
            }
            Ok(())
        }
    }
    struct NoDelay;
    impl DelayNs for NoDelay {
        fn delay_ns(&mut self, _: u32) {}
    }

    /// (command, its data bytes) in the order sent, read off the wires.
    fn commands(wires: &[Wire]) -> Vec<(u8, Vec<u8>)> {
        let mut dc = false;
        let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
        for w in wires {
            match w {
                Wire::Dc(level) => dc = *level,
                Wire::Bytes(b) if !dc => out.extend(b.iter().map(|&c| (c, Vec::new()))),
                Wire::Bytes(b) => out.last_mut().expect("data after a command").1.extend(b),
                Wire::Reset(_) => {}
            }
        }
        out
    }

    fn panel(model: PanelModel, rotation: u16) -> (SpiPanel<Recorder, Pin>, Recorder) {
        try_panel(model, rotation).unwrap()
    }

    fn try_panel(model: PanelModel, rotation: u16) -> Result<(SpiPanel<Recorder, Pin>, Recorder), DisplayError> {
        let rec = Recorder::default();
        let config = SpiConfig {
            panel: model,
            spi: "/dev/spidev0.0".into(),
            spi_hz: 32_000_000,
            size: [320, 240],
            rotation,
            invert_colors: None,
            gpiochip: "/dev/gpiochip0".into(),
            dc: LineId::Offset(25),
            reset: Some(LineId::Offset(27)),
            backlight: None,
        };
        let dc = Pin(rec.clone(), |l| Some(Wire::Dc(l)));
        let reset = Pin(rec.clone(), |l| Some(Wire::Reset(l)));
        let p = SpiPanel::new(rec.clone(), dc, reset, None, &config, &mut NoDelay)?;
        Ok((p, rec))
    }

    #[test]
    fn an_st7789_is_reset_initialised_and_gets_the_whole_frame_in_rgb565() {
        let (mut p, rec) = panel(PanelModel::St7789, 90);
        assert_eq!(p.size(), Size::new(320, 240));
        let wires = rec.0.borrow().clone();
        let resets: Vec<&Wire> = wires.iter().filter(|w| matches!(w, Wire::Reset(_))).collect();
        assert_eq!(resets, [&Wire::Reset(false), &Wire::Reset(true)], "one reset pulse");
        let init: Vec<u8> = commands(&wires).iter().map(|c| c.0).collect();
        for (code, what) in [(0x11, "sleep out"), (0x21, "inversion on"), (0x29, "display on")] {
            assert!(init.contains(&code), "{what} (0x{code:02X}) not sent: {init:02X?}");
        }
        let madctl = commands(&wires).into_iter().find(|c| c.0 == 0x36).unwrap();
        assert_ne!(madctl.1[0] & 0x20, 0, "rotated 90: rows and columns exchanged");

        rec.0.borrow_mut().clear();
        let mut frame = Framebuffer::new(320, 240);
        Rectangle::new(Point::zero(), Size::new(1, 1))
            .into_styled(PrimitiveStyle::with_fill(Rgb888::RED))
            .draw(&mut frame)
            .unwrap();
        p.show(&frame).unwrap();
        let sent = commands(&rec.0.borrow());
        let find = |code| sent.iter().find(|c| c.0 == code).map(|c| c.1.clone()).unwrap();
        assert_eq!(find(0x2A), [0, 0, 0x01, 0x3F], "columns 0..=319");
        assert_eq!(find(0x2B), [0, 0, 0, 0xEF], "rows 0..=239");
        let pixels = find(0x2C);
        assert_eq!(pixels.len(), 320 * 240 * 2);
        assert_eq!(
            &pixels[..4],
            &[0xF8, 0x00, 0x00, 0x00],
            "red, then black, big-endian RGB565"
        );
    }

    #[test]
    fn an_ili9341_keeps_its_colours_uninverted_and_a_size_that_does_not_fit_is_named() {
        let err = try_panel(PanelModel::Ili9341, 0).err().unwrap().to_string();
        assert!(err.contains("320x240") && err.contains("rotation = 90"), "{err}");
        let (_, rec) = panel(PanelModel::Ili9341, 270);
        let init: Vec<u8> = commands(&rec.0.borrow()).iter().map(|c| c.0).collect();
        assert!(init.contains(&0x20) && !init.contains(&0x21), "{init:02X?}");
    }

    #[test]
    fn png_snapshots_replace_the_screen_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut png = PngSnapshot::new(&PngConfig {
            dir: dir.path().join("screen"),
            size: crate::config::OverlaySize {
                width: 320,
                height: 240,
            },
        });
        assert_eq!(png.size(), Size::new(320, 240));
        png.show(&frame()).unwrap();
        png.show(&frame()).unwrap();
        let back = image::open(dir.path().join("screen/screen.png")).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (3, 2));
        assert_eq!(back.get_pixel(2, 0).0, [0, 0, 255]);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("screen")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary files left behind");
    }
}
