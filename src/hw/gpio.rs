//! GPIO character-device lines (`/dev/gpiochipN`, through `linux-embedded-hal`), shared by
//! the alert (LED, buzzer, buttons), the SPI panel (DC, reset, backlight) and `doctor`.

use std::path::{Path, PathBuf};

use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
use linux_embedded_hal::CdevPin;
use thiserror::Error;

use crate::config::LineId;

/// A line the config names that this board cannot give. `ptxd doctor` lists the chips' lines
/// by offset and name, to set `[gpio]` against.
#[derive(Debug, Error)]
pub enum GpioError {
    #[error("{} does not exist (no GPIO on this machine?)", .0.display())]
    NoChip(PathBuf),
    #[error("{}: {source}", chip.display())]
    Open {
        chip: PathBuf,
        source: linux_embedded_hal::gpio_cdev::Error,
    },
    #[error("line {offset}: the chip has {lines} lines")]
    NoSuchOffset { offset: u32, lines: u32 },
    #[error("no line named \"{name}\" on {}", chip.display())]
    NoSuchName { name: String, chip: PathBuf },
    /// The kernel refused the line: held by another consumer, or no permission on the chip.
    #[error("{line}: {source}")]
    Request {
        line: String,
        source: linux_embedded_hal::gpio_cdev::Error,
    },
}

/// Open a gpiochip, saying plainly when the board has none at that path.
pub fn open_chip(path: &Path) -> Result<Chip, GpioError> {
    if !path.exists() {
        return Err(GpioError::NoChip(path.to_path_buf()));
    }
    Chip::new(path).map_err(|source| GpioError::Open {
        chip: path.to_path_buf(),
        source,
    })
}

/// Request one input line (a button) from a gpiochip, by offset or name.
pub fn input_line(chip: &mut Chip, line: &LineId, consumer: &str) -> Result<CdevPin, GpioError> {
    let offset = line_offset(chip, line)?;
    chip.get_line(offset)
        .and_then(|l| l.request(LineRequestFlags::INPUT, 0, consumer))
        .and_then(CdevPin::new)
        .map_err(|source| GpioError::Request {
            line: line.to_string(),
            source,
        })
}

/// Request one output line from a gpiochip, by offset or name.
pub fn output_line(chip: &mut Chip, line: &LineId, initial: u8, consumer: &str) -> Result<CdevPin, GpioError> {
    let offset = line_offset(chip, line)?;
    chip.get_line(offset)
        .and_then(|l| l.request(LineRequestFlags::OUTPUT, initial, consumer))
        .and_then(CdevPin::new)
        .map_err(|source| GpioError::Request {
            line: line.to_string(),
            source,
        })
}

/// The offset of a line given by number or by name.
pub fn line_offset(chip: &mut Chip, line: &LineId) -> Result<u32, GpioError> {
    match line {
        LineId::Offset(n) if *n < chip.num_lines() => Ok(*n),
        LineId::Offset(n) => Err(GpioError::NoSuchOffset {
            offset: *n,
            lines: chip.num_lines(),
        }),
        LineId::Name(name) => chip
            .lines()
            .find(|l| l.info().is_ok_and(|i| i.name() == Some(name.as_str())))
            .map(|l| l.offset())
            .ok_or_else(|| GpioError::NoSuchName {
                name: name.clone(),
                chip: chip.path().to_path_buf(),
            }),
    }
}
