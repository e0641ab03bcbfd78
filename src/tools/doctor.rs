//! `ptxd doctor`: what a technician runs first in the field.
//!
//! It lists what the machine offers (capture devices with their formats and sizes,
//! framebuffers with their geometry, serial ports, gpiochips with their lines, spidev
//! buses), checks the models (checksums, load, one run each; checksums only with
//! `--quick`), and, given the daemon's config, checks that every device it names is there
//! and usable. Each line is marked `ok`, `--` (information) or `FAIL`; the command exits 1
//! when anything failed, so it can gate an install script.

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use linux_embedded_hal::gpio_cdev::Chip;
use v4l::framesize::FrameSizeEnum;
use v4l::video::Capture;
use v4l::Device;

use crate::config::{Config, DisplayConfig, PixelFormat, VariantSetting};
use crate::hw::display::{self, fb_info};
use crate::hw::gpio::line_offset;
use crate::input::capture;
use crate::input::capture::fourcc_name;
use crate::model::infer::{self, Model};
use crate::model::manifest::{Manifest, Role};
use crate::model::variant::{self, Choice};
use crate::record::journal;
use crate::record::retention::{Retention, DAY};
use crate::sink::{delivered_through, pacs::Unconfirmed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Ok,
    Info,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    pub lines: Vec<(Mark, String)>,
}

impl Section {
    fn new(title: &str) -> Section {
        Section {
            title: title.into(),
            lines: Vec::new(),
        }
    }
    fn push(&mut self, mark: Mark, text: impl Into<String>) {
        self.lines.push((mark, text.into()));
    }
}

/// Everything doctor found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub sections: Vec<Section>,
}

impl Report {
    pub fn failures(&self) -> usize {
        self.sections
            .iter()
            .flat_map(|s| &s.lines)
            .filter(|(m, _)| *m == Mark::Fail)
            .count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for section in &self.sections {
            writeln!(f, "{}", section.title)?;
            for (mark, text) in &section.lines {
                let mark = match mark {
                    Mark::Ok => "ok  ",
                    Mark::Info => "--  ",
                    Mark::Fail => "FAIL",
                };
                writeln!(f, "  {mark} {text}")?;
            }
        }
        match self.failures() {
            0 => writeln!(f, "no problems found"),
            n => writeln!(f, "{n} problem(s): see the FAIL lines"),
        }
    }
}

/// Device nodes in `dev` whose names start with `prefix`, sorted.
fn nodes(dev: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dev)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// How far `doctor` goes with the models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelCheck {
    /// Checksums, load, and one run each: what a technician wants on the board.
    LoadAndRun,
    /// Checksums only (`--quick`). Loading and running take minutes on an emulated CPU, and
    /// the service loads the models anyway when it starts.
    Checksums,
}

/// Examine the machine (device nodes under `dev`, normally "/dev"), the models, and the
/// config when given.
pub fn examine(dev: &Path, manifest: &Path, config: Option<&Config>, check: ModelCheck) -> Report {
    let manifest = config.map_or(manifest, |c| c.models.manifest.as_path());
    let (variant, note) = config.map(configured_variant).unwrap_or_default();
    let mut models = models(manifest, variant.as_deref(), check);
    if let Some(line) = note {
        models.push(Mark::Info, line);
    }
    Report {
        sections: vec![
            models,
            video(dev),
            framebuffers(dev),
            serial_ports(dev),
            gpio(dev),
            spi(dev),
            configured(config),
            disk(config),
        ],
    }
}

/// The variant the service would load: the pinned one, or for "auto" its cached choice
/// (None, the manifest's default, until the service or `bench --choose` has measured), and
/// for "auto" a line saying which.
fn configured_variant(config: &Config) -> (Option<String>, Option<String>) {
    match &config.models.variant {
        VariantSetting::Fastest => {
            let cache = config.variant_cache();
            let chosen = variant::Key::here(&config.models.manifest, config.models.threads.get())
                .ok()
                .and_then(|key| Choice::cached(&cache, &key));
            let line = match &chosen {
                Some(c) => format!(
                    "variant = \"auto\": {} ({}), chosen on this CPU",
                    c.variant,
                    variant::describe(&c.trials)
                ),
                None => format!(
                    "variant = \"auto\": not yet measured for these models on this CPU ({} has no choice for them); \
                     the service measures at its first start, or run `ptxd bench --choose --config`; checking the manifest's default",
                    cache.display()
                ),
            };
            (chosen.map(|c| c.variant), Some(line))
        }
        other => (other.pinned().map(str::to_string), None),
    }
}

fn models(manifest: &Path, variant: Option<&str>, check: ModelCheck) -> Section {
    let mut s = Section::new(&format!("Models ({})", manifest.display()));
    let manifest = match Manifest::load(manifest) {
        Ok(m) => m,
        Err(e) => {
            s.push(Mark::Fail, e.to_string());
            return s;
        }
    };
    s.push(
        Mark::Info,
        format!("tract picks its kernels for CPU features {}", infer::cpu_features()),
    );
    for role in Role::ALL {
        if check == ModelCheck::Checksums {
            match checksum(&manifest, role, variant) {
                Ok(text) => s.push(Mark::Ok, text),
                Err(text) => s.push(Mark::Fail, text),
            }
            continue;
        }
        let started = Instant::now();
        let checked = Model::load(&manifest, role, variant).and_then(|model| {
            model.run(vec![0.0f32; manifest.files(role).input.shape.iter().product()])?;
            Ok(model)
        });
        match checked {
            Ok(model) => s.push(
                Mark::Ok,
                format!(
                    "{role}: {} ({}), sha256 ok, loaded and ran in {:.1} s",
                    model.version(),
                    model.variant(),
                    started.elapsed().as_secs_f64()
                ),
            ),
            Err(e) => s.push(Mark::Fail, format!("{role}: {e}")),
        }
    }
    s
}

/// One role's file against the manifest's sha256, without loading it.
fn checksum(manifest: &Manifest, role: Role, variant: Option<&str>) -> Result<String, String> {
    let file = infer::verify(manifest, role, variant).map_err(|e| format!("{role}: {e}"))?;
    Ok(format!(
        "{role}: {} ({}), sha256 ok (--quick: not loaded or run)",
        file.files.version, file.name
    ))
}

fn video(dev: &Path) -> Section {
    let mut s = Section::new("Capture devices (V4L2)");
    let found = nodes(dev, "video");
    if found.is_empty() {
        s.push(Mark::Info, format!("none in {}", dev.display()));
    }
    for path in found {
        match describe_video(&path) {
            Ok(text) => s.push(Mark::Info, text),
            Err(e) => s.push(Mark::Info, format!("{}: {e}", path.display())),
        }
    }
    s
}

fn describe_video(path: &Path) -> std::io::Result<String> {
    let device = Device::with_path(path)?;
    let caps = device.query_caps()?;
    let offered = capture::offered_formats(&device)?;
    if offered.is_empty() {
        return Ok(format!(
            "{}: {} ({}), no capture formats (an output or metadata node)",
            path.display(),
            caps.card,
            caps.driver
        ));
    }
    // a driver may offer dozens: list the ones ptxd can read, with their largest size
    let readable: Vec<String> = offered
        .iter()
        .filter(|code| PixelFormat::from_fourcc(**code).is_some())
        .map(|code| {
            let name = fourcc_name(*code);
            let largest = device.enum_framesizes(v4l::FourCC::new(code)).ok().and_then(|sizes| {
                sizes
                    .iter()
                    .map(|fs| match &fs.size {
                        FrameSizeEnum::Discrete(d) => (d.width, d.height),
                        FrameSizeEnum::Stepwise(s) => (s.max_width, s.max_height),
                    })
                    .max_by_key(|&(w, h)| u64::from(w) * u64::from(h))
            });
            match largest {
                Some((w, h)) => format!("{name} up to {w}x{h}"),
                None => name,
            }
        })
        .collect();
    let formats = format!(
        "offers {} format(s), {} that ptxd reads ({})",
        offered.len(),
        readable.len(),
        readable.join(", ")
    );
    let chosen = capture::choose_format(&offered, &PixelFormat::ALL)
        .map(|f| format!("ptxd would use {f}"))
        .unwrap_or_else(|| "no format ptxd reads".into());
    let current = device.format()?;
    Ok(format!(
        "{}: {} ({}), now {}x{} {}; {formats}; {chosen}",
        path.display(),
        caps.card,
        caps.driver,
        current.width,
        current.height,
        fourcc_name(current.fourcc.repr),
    ))
}

fn framebuffers(dev: &Path) -> Section {
    let mut s = Section::new("Framebuffers");
    let found = nodes(dev, "fb");
    if found.is_empty() {
        s.push(Mark::Info, format!("none in {}", dev.display()));
    }
    for path in found {
        let described = OpenOptions::new()
            .read(true)
            .open(&path)
            .and_then(|f| fb_info(&f))
            .map(|info| {
                let l = info.layout;
                let usable = match l.check(info.memory_len.saturating_sub(info.offset)) {
                    Ok(()) => "usable".to_string(),
                    Err(e) => format!("NOT usable: {e}"),
                };
                format!(
                    "{}: {} {}x{} {} bpp, stride {} bytes, {usable}",
                    path.display(),
                    info.id,
                    l.width,
                    l.height,
                    l.bits_per_pixel,
                    l.stride
                )
            });
        match described {
            Ok(text) => s.push(Mark::Info, text),
            Err(e) => s.push(Mark::Info, format!("{}: {e}", path.display())),
        }
    }
    s
}

fn serial_ports(dev: &Path) -> Section {
    let mut s = Section::new("Serial ports");
    let mut found = Vec::new();
    for prefix in ["ttyS", "ttyAMA", "ttyUSB", "ttyACM", "ttyTHS", "serial"] {
        found.extend(nodes(dev, prefix));
    }
    if found.is_empty() {
        s.push(Mark::Info, format!("none in {}", dev.display()));
    }
    for path in found {
        // opening a port can disturb the host on the other end: only say whether we could
        let access = match open_quietly(&path).map(|_| ()) {
            Ok(()) => "can open".to_string(),
            Err(e) => format!("cannot open: {e}"),
        };
        let target = std::fs::read_link(&path)
            .map(|t| format!(" -> {}", t.display()))
            .unwrap_or_default();
        s.push(Mark::Info, format!("{}{target}: {access}", path.display()));
    }
    s
}

fn gpio(dev: &Path) -> Section {
    let mut s = Section::new("GPIO chips");
    let found = nodes(dev, "gpiochip");
    if found.is_empty() {
        s.push(
            Mark::Info,
            format!(
                "none in {}: the LED/buzzer alert and the buttons will be off",
                dev.display()
            ),
        );
    }
    for path in found {
        match Chip::new(&path) {
            Ok(chip) => s.push(
                Mark::Info,
                format!(
                    "{}: {} \"{}\", {} lines",
                    path.display(),
                    chip.name(),
                    chip.label(),
                    chip.num_lines()
                ),
            ),
            Err(e) => s.push(Mark::Info, format!("{}: {e}", path.display())),
        }
    }
    s
}

fn spi(dev: &Path) -> Section {
    let mut s = Section::new("SPI buses (spidev)");
    let found = nodes(dev, "spidev");
    if found.is_empty() {
        s.push(
            Mark::Info,
            format!("none in {} (enable SPI for a panel: see the README)", dev.display()),
        );
    }
    for path in found {
        s.push(Mark::Info, path.display().to_string());
    }
    s
}

/// Open a tty without making it our controlling terminal or waiting for carrier.
fn open_quietly(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
}

/// Check each device the config names.
/// The disks inputs and results are written to: what is kept there, since when, how long
/// the free space lasts at the last week's rate, and whether results the PACS still owes
/// hold it under the retention floor.
fn disk(config: Option<&Config>) -> Section {
    let mut s = Section::new("Disk (retention)");
    let Some(config) = config else {
        s.push(Mark::Info, "no --config given: no folders to look at");
        return s;
    };
    let unconfirmed = Unconfirmed::now(config);
    let owed = |file: &Path| unconfirmed.as_ref().is_some_and(|u| u.holds(file));
    let disks = match Retention::of(config, DAY).survey(SystemTime::now(), &owed) {
        Ok(disks) => disks,
        Err(e) => {
            s.push(Mark::Fail, format!("cannot list the inputs and results: {e}"));
            return s;
        }
    };
    let gb = |bytes: u64| bytes as f64 / 1e9;
    for d in disks {
        let oldest = d.oldest.map_or("none kept".into(), |t| {
            format!("the oldest from {}", humantime::format_rfc3339_seconds(t))
        });
        s.push(
            Mark::Info,
            format!(
                "{}: {:.1} GB free of {:.1} GB (floor {:.1} GB); {} inputs and results kept, {:.2} GB, {oldest}",
                d.path.display(),
                gb(d.space.free),
                gb(d.space.total),
                gb(d.floor),
                d.files,
                gb(d.bytes)
            ),
        );
        match d.days_left() {
            Some(days) => s.push(
                Mark::Info,
                format!(
                    "about {days:.0} days until the floor at the last week's {:.0} MB a day; then the oldest go first",
                    d.last_week as f64 / 7.0 / 1e6
                ),
            ),
            None => s.push(Mark::Info, "nothing written there in the last week"),
        }
        if d.owed_bytes > 0 {
            let (mark, tail) = match d.space.free < d.floor {
                true => (
                    Mark::Fail,
                    ": they hold the disk under its floor; check the PACS (its line above) or free space by hand",
                ),
                false => (Mark::Info, ""),
            };
            s.push(
                mark,
                format!(
                    "{:.2} GB of DICOM results wait for the PACS to confirm them{tail}",
                    gb(d.owed_bytes)
                ),
            );
        }
    }
    journal_segments(config, &mut s);
    s
}

/// The journal's sealed segments: how many, their size, and what keeps the oldest.
fn journal_segments(config: &Config, s: &mut Section) {
    let path = &config.journal.path;
    let segments = match journal::segments(path) {
        Ok(segments) => segments,
        Err(e) => {
            s.push(
                Mark::Fail,
                format!("cannot list the journal's segments beside {}: {e}", path.display()),
            );
            return;
        }
    };
    let Some(oldest) = segments.first() else {
        s.push(
            Mark::Info,
            format!("journal {}: one file, no sealed segment yet", path.display()),
        );
        return;
    };
    let bytes: u64 = segments
        .iter()
        .filter_map(|seg| std::fs::metadata(&seg.path).ok())
        .map(|m| m.len())
        .sum();
    // a segment goes once past keep_days and every output has all of it
    let delivered = delivered_through(config);
    let held = match delivered {
        u64::MAX => String::new(),
        through => {
            format!("; every output configured (serial host, PACS, MQTT broker) has every result through #{through}")
        }
    };
    s.push(
        Mark::Info,
        format!(
            "journal {}: {} sealed segment(s), {:.1} MB, from result #{}{held}",
            path.display(),
            segments.len(),
            bytes as f64 / 1e6,
            oldest.first
        ),
    );
}

fn configured(config: Option<&Config>) -> Section {
    let mut s = Section::new("The config's devices");
    let Some(config) = config else {
        s.push(Mark::Info, "no --config given: nothing to check against");
        return s;
    };
    if let Some(p) = &config.profile {
        s.push(Mark::Info, format!("board profile: {} ({})", p.name, p.cpu));
    }
    match &config.capture {
        Some(c) => match capture::open(c) {
            Ok((_, n)) => s.push(
                Mark::Ok,
                format!("capture {}: {}x{} {}", c.device.display(), n.width, n.height, n.format),
            ),
            Err(e) => s.push(Mark::Fail, format!("capture {}: {e}", c.device.display())),
        },
        None => s.push(Mark::Info, "capture: not configured (watch folder only)"),
    }
    match &config.display {
        // an SPI panel is re-initialised by opening it: check its nodes instead
        Some(DisplayConfig::Spi(c)) => {
            for node in [&c.spi, &c.gpiochip] {
                match OpenOptions::new().read(true).write(true).open(node) {
                    Ok(_) => s.push(Mark::Ok, format!("display: {} can be opened", node.display())),
                    Err(e) => s.push(Mark::Fail, format!("display: {}: {e}", node.display())),
                }
            }
        }
        Some(d) => match display::open(d) {
            Ok(d) => s.push(
                Mark::Ok,
                format!("display {}: {}x{}", d.name(), d.size().width, d.size().height),
            ),
            Err(e) => s.push(Mark::Fail, e.to_string()),
        },
        None => s.push(Mark::Info, "display: not configured"),
    }
    match &config.serial {
        Some(c) => match open_quietly(&c.port) {
            Ok(_) => s.push(
                Mark::Ok,
                format!("serial {}: can be opened ({} baud)", c.port.display(), c.baud),
            ),
            Err(e) => s.push(Mark::Fail, format!("serial {}: {e}", c.port.display())),
        },
        None => s.push(Mark::Info, "serial: not configured (no host link)"),
    }
    match &config.gpio {
        Some(g) => match Chip::new(&g.chip) {
            Ok(mut chip) => {
                let lines = [
                    ("led", &g.led),
                    ("buzzer", &g.buzzer),
                    ("ack_button", &g.ack_button),
                    ("trigger_button", &g.trigger_button),
                ];
                for (what, line) in lines {
                    if let Some(line) = line {
                        match line_offset(&mut chip, line) {
                            Ok(offset) => s.push(Mark::Ok, format!("gpio {what}: {line} is offset {offset}")),
                            Err(e) => s.push(Mark::Fail, format!("gpio {what}: {e}")),
                        }
                    }
                }
            }
            Err(e) => s.push(
                Mark::Fail,
                format!("gpio {}: {e} (the daemon runs without the alert)", g.chip.display()),
            ),
        },
        None => s.push(Mark::Info, "gpio: not configured (no LED/buzzer alert)"),
    }
    match &config.dicom {
        // the daemon holds the port when it runs: a bind here would only say that
        Some(d) => s.push(
            Mark::Info,
            format!(
                "dicom listener: {} on {}, calling AE titles {}",
                d.ae_title,
                d.listen,
                allowed(&d.allowed_calling)
            ),
        ),
        None => s.push(Mark::Info, "dicom listener: not configured (no network input)"),
    }
    match &config.pacs {
        Some(p) => match crate::sink::pacs::echo(p) {
            Ok(()) => s.push(
                Mark::Ok,
                format!(
                    "pacs {} at {}: answers C-ECHO from {}",
                    p.ae_title, p.address, p.calling_ae_title
                ),
            ),
            Err(e) => s.push(
                Mark::Fail,
                format!("pacs: C-ECHO failed: {e} (results wait and are retried)"),
            ),
        },
        None => s.push(Mark::Info, "pacs: not configured (results stay on the board)"),
    }
    if config.pacs.is_some() {
        let path = config.pacs_cursor();
        match crate::sink::pacs::Cursor::load(&path) {
            Ok(cursor) if cursor.refused.is_empty() => s.push(
                Mark::Ok,
                format!("pacs outbox: stored through result #{}", cursor.stored_through),
            ),
            Ok(cursor) => s.push(
                Mark::Fail,
                format!(
                    "pacs outbox: stored through result #{}, but the PACS refused {} object(s) for good, set aside (the first: {}); they are listed in {}: fix the PACS, then remove that file to resend every result",
                    cursor.stored_through,
                    cursor.refused.len(),
                    cursor.refused[0].reason,
                    path.display()
                ),
            ),
            Err(e) => s.push(Mark::Fail, format!("pacs outbox: {e}")),
        }
    }
    broker(config, &mut s);
    s
}

/// The MQTT broker: connect and subscribe as ptxd would, read the retained status; and how
/// far the uplink's cursor is.
fn broker(config: &Config, s: &mut Section) {
    use crate::sink::mqtt;
    let Some(m) = &config.mqtt else {
        s.push(Mark::Info, "mqtt: not configured (no fleet uplink)");
        return;
    };
    let status = m.topic("status");
    match mqtt::check_broker(m, std::time::Duration::from_secs(10)) {
        Ok(retained) => s.push(
            Mark::Ok,
            format!(
                "mqtt broker {}{}: connected, subscribed to {status}; retained status: {}",
                m.broker,
                if m.tls { " (TLS)" } else { " (plain text, loopback)" },
                retained.as_deref().unwrap_or("none yet")
            ),
        ),
        Err(e) => s.push(
            Mark::Fail,
            format!("mqtt: {e} (results wait in the journal and are published when it answers)"),
        ),
    }
    match mqtt::Cursor::load(&config.mqtt_cursor()) {
        Ok(cursor) => s.push(
            Mark::Ok,
            format!("mqtt uplink: published through result #{}", cursor.published_through),
        ),
        Err(e) => s.push(Mark::Fail, format!("mqtt uplink: {e}")),
    }
}

fn allowed(titles: &[crate::config::AeTitle]) -> String {
    match titles {
        [] => "any".to_string(),
        titles => titles.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "),
    }
}
