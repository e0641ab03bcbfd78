//! GPIO character-device lines (`/dev/gpiochipN`, through `linux-embedded-hal`), shared by
//! the alert (LED, buzzer, buttons), the SPI panel (DC, reset, backlight) and `doctor`.

use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
use linux_embedded_hal::CdevPin;

use crate::config::LineId;

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
