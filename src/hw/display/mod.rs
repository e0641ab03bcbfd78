//! The attached screen: a Linux framebuffer (HDMI), an SPI panel, or PNG snapshots.
//!
//! Every screen is drawn by [`crate::record::render`] into an in-memory [`Framebuffer`] of the
//! display's size, then handed whole to [`Display::show`]. Drawing off-screen costs one copy
//! but means a panel never shows a half-drawn result, and the three targets share all of
//! the drawing code: they differ only in how pixels leave the process.
//!
//! - [`LinuxFb`] (`fb.rs`): `/dev/fbN` mapped into memory; 16-, 24- and 32-bpp layouts from the
//!   variable screen info's bitfields, the line stride from the fixed info. Its console can
//!   be switched to graphics mode (`KDSETMODE`), and is switched back when ptxd exits.
//! - [`SpiPanel`] (`spi.rs`): an ST7789 or ILI9341 through `mipidsi`, on a spidev bus with its DC,
//!   reset and backlight on GPIO character-device lines (`linux-embedded-hal`).
//! - [`PngSnapshot`] (`png.rs`): `<dir>/screen.png`, replaced atomically each time the screen changes.

mod fb;
mod png;
mod spi;

pub use fb::{fb_info, pack, Bitfield, FbInfo, FbLayout, LinuxFb};
pub use png::PngSnapshot;
pub use spi::{to_rgb565, SpiPanel};

use std::path::PathBuf;

use embedded_graphics::prelude::Size;
use thiserror::Error;

use crate::config::DisplayConfig;
use crate::record::render::Framebuffer;

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

/// A 3x2 test frame: red, green, blue / white, black, grey.
#[cfg(test)]
fn test_frame() -> Framebuffer {
    use embedded_graphics::pixelcolor::Rgb888;
    use embedded_graphics::prelude::*;
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
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
