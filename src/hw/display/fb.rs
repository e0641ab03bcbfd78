//! A Linux framebuffer (`/dev/fbN`, HDMI) as a display: mapped into memory, pixels packed
//! to its 16-, 24- or 32-bpp layout.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use memmap2::{MmapMut, MmapOptions};

use super::{Display, DisplayError};
use crate::config::FbConfig;
use crate::record::render::Framebuffer;

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

/// A framebuffer layout ptxd cannot draw into.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{0} bits per pixel is not supported (16, 24 or 32 are)")]
    Depth(u32),
    #[error("colour bitfield {field:?} does not fit a {bits}-bit pixel")]
    Bitfield { field: Bitfield, bits: u32 },
    #[error("{width}x{height} with stride {stride} is not a usable screen")]
    Geometry { width: u32, height: u32, stride: usize },
    #[error("memory is {len} bytes, the screen needs {needed}")]
    Memory { len: usize, needed: usize },
}

impl FbLayout {
    /// Check that the layout is one ptxd can write, and fits in `len` bytes.
    pub fn check(&self, len: usize) -> Result<(), LayoutError> {
        let bits = self.bits_per_pixel;
        if ![16, 24, 32].contains(&bits) {
            return Err(LayoutError::Depth(bits));
        }
        for field in [self.red, self.green, self.blue] {
            if field.length == 0 || field.length > 8 || field.offset + field.length > bits {
                return Err(LayoutError::Bitfield { field, bits });
            }
        }
        let line = self.width as usize * bits as usize / 8;
        if self.width == 0 || self.height == 0 || self.stride < line {
            return Err(LayoutError::Geometry {
                width: self.width,
                height: self.height,
                stride: self.stride,
            });
        }
        let needed = self.stride * (self.height as usize - 1) + line;
        if len < needed {
            return Err(LayoutError::Memory { len, needed });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::display::test_frame as frame;

    fn bf(offset: u32, length: u32) -> Bitfield {
        Bitfield {
            offset,
            length,
            msb_right: 0,
        }
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
        assert!(ok.check(1000).unwrap_err().to_string().contains("needs"));
        let eight = FbLayout {
            bits_per_pixel: 8,
            ..ok
        };
        assert!(eight.check(1 << 20).unwrap_err().to_string().contains("8 bits"));
        let narrow = FbLayout { stride: 100, ..ok };
        assert!(narrow.check(1 << 20).is_err());
    }
}
