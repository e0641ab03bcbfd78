//! An ST7789 or ILI9341 SPI panel as a display, through `mipidsi`: over any `embedded-hal`
//! SPI device and pins, so the same code drives spidev and GPIO lines on a board and a
//! recorder in the tests.

use std::path::PathBuf;

use embedded_graphics::pixelcolor::Rgb565;
use embedded_graphics::prelude::*;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_hal::spi::SpiDevice;
use linux_embedded_hal::spidev::{SpiModeFlags, SpidevOptions};
use linux_embedded_hal::{CdevPin, Delay, SpidevDevice};
use mipidsi::interface::SpiInterface;
use mipidsi::models::{ILI9341Rgb565, ST7789};
use mipidsi::options::{ColorInversion, Orientation, Rotation};

use super::{Display, DisplayError};
use crate::config::{PanelModel, SpiConfig};
use crate::hw::gpio::{open_chip, output_line};
use crate::record::render::Framebuffer;

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
        let mut chip = open_chip(&config.gpiochip).map_err(|e| err(e.to_string()))?;
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
        let (nw, nh) = config.native_size();
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
    use crate::config::LineId;
    use crate::hw::display::test_frame as frame;
    use embedded_graphics::pixelcolor::Rgb888;
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};

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
}
