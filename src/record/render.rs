//! The result screen, drawn with `embedded-graphics` onto any `DrawTarget<Color = Rgb888>`.
//!
//! The same [`draw_result`] drives an in-memory [`Framebuffer`] (saved as the overlay PNG),
//! and later a Linux framebuffer or an SPI panel: the drawing code never knows which. The
//! screen has three parts, sized from the target so it stays legible from 320x240 to
//! 1920x1080:
//!
//! - a banner: red "PNEUMOTHORAX SUSPECTED - RIGHT - 12%", amber "INDETERMINATE - HAVE IT
//!   READ", or green "No pneumothorax flagged" (what the model did, never "no pneumothorax":
//!   at the shipped alarm budget it misses some; models/README.md says how many);
//! - the radiograph scaled to fit, the suspected region as a translucent red fill with a
//!   solid red outline;
//! - footer lines: probability, time, model versions, and "Not a diagnosis".
//!
//! Text uses the built-in mono fonts drawn through [`Scaled`], which magnifies any drawing
//! by an integer factor, so big screens get big letters without shipping font files.

use std::convert::Infallible;

use embedded_graphics::mono_font::ascii::{FONT_10X20, FONT_6X10};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};

use crate::analysis::findings::{Finding, Mask, Side, Verdict};
use crate::analysis::Analysis;
use crate::base::outcome::ServiceState;
use crate::config::OverlaySize;
use crate::model::infer::ModelVersions;
use crate::pixels::grey::GreyImage;

pub const RED: Rgb888 = Rgb888::new(220, 30, 30);
pub const GREEN: Rgb888 = Rgb888::new(20, 140, 60);
pub const AMBER: Rgb888 = Rgb888::new(230, 150, 0);
/// The idle screen's banner: calm, clearly not a result colour.
pub const SLATE: Rgb888 = Rgb888::new(40, 60, 90);
/// "Not read": the image is not a chest radiograph. Not red (no alarm), not green (nothing
/// was cleared), not the idle screen's slate.
pub const VIOLET: Rgb888 = Rgb888::new(110, 60, 170);
const OVERLAY_ALPHA: u32 = 100; // of 256: the lung stays visible under the fill

/// An RGB framebuffer in memory: the overlay PNG and the tests' screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Framebuffer {
    width: u32,
    height: u32,
    pixels: Vec<Rgb888>,
}

impl Framebuffer {
    pub fn new(width: u32, height: u32) -> Framebuffer {
        Framebuffer {
            width,
            height,
            pixels: vec![Rgb888::BLACK; (width * height) as usize],
        }
    }

    pub fn pixel(&self, x: u32, y: u32) -> Rgb888 {
        self.pixels[(y * self.width + x) as usize]
    }

    /// Packed RGB bytes, row by row.
    pub fn to_rgb_bytes(&self) -> Vec<u8> {
        self.pixels.iter().flat_map(|c| [c.r(), c.g(), c.b()]).collect()
    }

    /// Encode as PNG.
    pub fn to_png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(
                &self.to_rgb_bytes(),
                self.width,
                self.height,
                image::ExtendedColorType::Rgb8,
            )
            .expect("encoding an in-memory RGB buffer to PNG cannot fail");
        out
    }
}

use image::ImageEncoder as _;

impl OriginDimensions for Framebuffer {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for Framebuffer {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(&mut self, pixels: I) -> Result<(), Infallible> {
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 && (p.x as u32) < self.width && (p.y as u32) < self.height {
                self.pixels[(p.y as u32 * self.width + p.x as u32) as usize] = c;
            }
        }
        Ok(())
    }
}

/// Draws onto `inner` magnified `factor` times: each pixel becomes a factor x factor square.
pub struct Scaled<'a, D> {
    inner: &'a mut D,
    factor: u32,
    origin: Point,
}

impl<'a, D: DrawTarget> Scaled<'a, D> {
    /// Magnify drawings by `factor`, placing their (0, 0) at `origin` of `inner`.
    pub fn new(inner: &'a mut D, factor: u32, origin: Point) -> Self {
        Scaled {
            inner,
            factor: factor.max(1),
            origin,
        }
    }
}

impl<D: DrawTarget> OriginDimensions for Scaled<'_, D> {
    fn size(&self) -> Size {
        let s = self.inner.bounding_box().size;
        Size::new(s.width / self.factor, s.height / self.factor)
    }
}

impl<D: DrawTarget> DrawTarget for Scaled<'_, D> {
    type Color = D::Color;
    type Error = D::Error;

    fn draw_iter<I: IntoIterator<Item = Pixel<D::Color>>>(&mut self, pixels: I) -> Result<(), D::Error> {
        let f = self.factor;
        for Pixel(p, c) in pixels {
            let at = self.origin + Point::new(p.x * f as i32, p.y * f as i32);
            self.inner.fill_solid(&Rectangle::new(at, Size::new(f, f)), c)?;
        }
        Ok(())
    }
}

/// What the result screen shows.
pub struct ResultView<'a> {
    pub image: &'a GreyImage,
    pub mask: Option<&'a Mask>,
    pub verdict: Verdict,
    /// None when the classifier did not run (not a chest radiograph).
    pub probability: Option<f32>,
    /// Why the image was refused, with the verdict `NotChestRadiograph`.
    pub not_chest: Option<&'a crate::analysis::lungs::NotChest>,
    pub findings: &'a [Finding],
    /// e.g. "2026-11-26 19:03:04Z"
    pub time: &'a str,
    /// e.g. "cls ptx-cls-...-int8 / seg ptx-seg-...-int8"
    pub models: &'a str,
    /// Where the image came from (file name or device).
    pub source: &'a str,
}

/// The banner's words and colour.
pub fn banner(verdict: Verdict, findings: &[Finding]) -> (String, Rgb888) {
    match verdict {
        Verdict::Positive => {
            let side = |s: Side| findings.iter().any(|f| f.side == s);
            let text = match (side(Side::Right), side(Side::Left)) {
                (false, false) => "PNEUMOTHORAX SUSPECTED - NOT LOCALISED".to_string(),
                (true, true) => "PNEUMOTHORAX SUSPECTED - BOTH SIDES".to_string(),
                _ => {
                    let s = findings[0].side;
                    let percent: f32 = findings
                        .iter()
                        .filter(|f| f.side == s)
                        .map(|f| f.area_percent_side)
                        .sum();
                    let name = if s == Side::Right { "RIGHT" } else { "LEFT" };
                    format!("PNEUMOTHORAX SUSPECTED - {name} - {}", percent_text(percent))
                }
            };
            (text, RED)
        }
        Verdict::Indeterminate => ("INDETERMINATE - HAVE IT READ".to_string(), AMBER),
        Verdict::Negative => ("No pneumothorax flagged".to_string(), GREEN),
        Verdict::NotChestRadiograph => ("NOT A CHEST RADIOGRAPH - NOT READ".to_string(), VIOLET),
        Verdict::NotAnalyzed => ("IMAGE NOT ANALYZED - NOT READ".to_string(), AMBER),
    }
}

/// A finding's share as a radiographer reads it: a localised finding is never "0%" (a small
/// region rounds down to it, and "0%" reads as "nothing"), so below 1% it is "<1%".
pub fn percent_text(percent: f32) -> String {
    if percent < 1.0 {
        "<1%".to_string()
    } else {
        format!("{percent:.0}%")
    }
}

/// A font and a magnification that fit `chars` characters in `width` and a line in `max_h`.
fn pick_font(chars: usize, width: u32, max_h: u32) -> (&'static MonoFont<'static>, u32) {
    let mut best = (&FONT_6X10, 1);
    for (font, factor) in [(&FONT_10X20, 1), (&FONT_10X20, 2), (&FONT_10X20, 3), (&FONT_10X20, 4)] {
        let w = font.character_size.width * factor * chars as u32;
        let h = font.character_size.height * factor;
        if w <= width && h <= max_h {
            best = (font, factor);
        }
    }
    best
}

/// One line of text at `at`. It is never cut here: callers wrap (`wrap`) or size the font
/// (`pick_font`) so that it fits, and the render tests check that no pixel falls outside.
fn text_line<D: DrawTarget<Color = Rgb888>>(
    target: &mut D,
    text: &str,
    at: Point,
    font: &MonoFont<'_>,
    factor: u32,
    color: Rgb888,
) -> Result<(), D::Error> {
    let mut scaled = Scaled::new(target, factor, at);
    Text::with_baseline(text, Point::zero(), MonoTextStyle::new(font, color), Baseline::Top).draw(&mut scaled)?;
    Ok(())
}

/// How many characters of `font` at `factor` fit in `width` pixels.
fn chars_in(width: u32, font: &MonoFont<'_>, factor: u32) -> usize {
    (width / (font.character_size.width * factor)).max(1) as usize
}

/// A full-width band of `colour` at the top with `text` centred in white, its letters as
/// large as `fit_chars` characters allow; returns the band's height.
fn draw_banner<D: DrawTarget<Color = Rgb888>>(
    target: &mut D,
    text: &str,
    fit_chars: usize,
    colour: Rgb888,
    pad: u32,
) -> Result<u32, D::Error> {
    let Size { width: w, height: h } = target.bounding_box().size;
    let (font, factor) = pick_font(fit_chars, w.saturating_sub(2 * pad), h / 8);
    let banner_h = font.character_size.height * factor + 2 * pad;
    Rectangle::new(Point::zero(), Size::new(w, banner_h))
        .into_styled(PrimitiveStyle::with_fill(colour))
        .draw(target)?;
    let text_w = font.character_size.width * factor * text.len() as u32;
    let x = (w.saturating_sub(text_w) / 2) as i32;
    text_line(target, text, Point::new(x, pad as i32), font, factor, Rgb888::WHITE)?;
    Ok(banner_h)
}

/// The result screen's small text: its font, line height, characters a line, and where
/// the badge line is (the screen's last line, kept free for `draw_badge`).
struct Footer {
    font: &'static MonoFont<'static>,
    factor: u32,
    line_h: u32,
    chars: usize,
    badge_y: i32,
}

fn footer(w: u32, h: u32, pad: u32) -> Footer {
    let (font, factor) = pick_font(64, w.saturating_sub(2 * pad), h / 24);
    let line_h = font.character_size.height * factor + pad / 2;
    Footer {
        font,
        factor,
        line_h,
        chars: chars_in(w.saturating_sub(2 * pad), font, factor),
        badge_y: h as i32 - (line_h + pad) as i32,
    }
}

/// Write `text` in amber on the result screen's last line, kept free for it: how many
/// alerts await acknowledgement and how many results wait
/// (`crate::sink::screen::Presenter::badge`). Drawn on a finished result screen, so the count can
/// change without drawing the radiograph again.
pub fn draw_badge<D: DrawTarget<Color = Rgb888>>(target: &mut D, text: &str) -> Result<(), D::Error> {
    let Size { width: w, height: h } = target.bounding_box().size;
    let pad = (h / 60).max(2);
    let f = footer(w, h, pad);
    Rectangle::new(Point::new(0, f.badge_y), Size::new(w, f.line_h))
        .into_styled(PrimitiveStyle::with_fill(Rgb888::BLACK))
        .draw(target)?;
    // one line: the badge's words are short; a narrow screen gets the first of them
    let line = wrap(text, f.chars).into_iter().next().unwrap_or_default();
    text_line(
        target,
        &line,
        Point::new(pad as i32, f.badge_y),
        f.font,
        f.factor,
        AMBER,
    )
}

/// Draw the whole result screen onto `target`.
pub fn draw_result<D: DrawTarget<Color = Rgb888>>(target: &mut D, view: &ResultView<'_>) -> Result<(), D::Error> {
    let area = target.bounding_box();
    let (w, h) = (area.size.width, area.size.height);
    target.clear(Rgb888::BLACK)?;
    let pad = (h / 60).max(2);

    let (words, colour) = banner(view.verdict, view.findings);
    let banner_h = draw_banner(target, &words, words.len(), colour, pad)?;

    // footer: wrapped lines of small text above the badge line (`draw_badge`)
    let f = footer(w, h, pad);
    let sizes: Vec<String> = view
        .findings
        .iter()
        .map(|f| {
            let side = if f.side == Side::Right { "right" } else { "left" };
            format!(
                "{side} {} of side ({:.1}% of image)",
                percent_text(f.area_percent_side),
                f.area_percent_image
            )
        })
        .collect();
    let regions = match (view.verdict, sizes.is_empty(), view.not_chest) {
        (Verdict::NotChestRadiograph, _, why) => format!(
            "Seen: {}. Send a frontal chest radiograph.",
            why.map(|w| w.short()).unwrap_or("no lung fields")
        ),
        (Verdict::Positive, true, _) => "no region localised: read the whole image".to_string(),
        (_, true, _) => String::new(),
        _ => sizes.join("; "),
    };
    let probability = match view.probability {
        Some(p) => format!("p = {p:.2}"),
        None => "p = -".to_string(),
    };
    let texts = [
        (format!("{probability}  {}", view.time), Rgb888::WHITE),
        (view.source.to_string(), Rgb888::WHITE),
        (regions, Rgb888::WHITE),
        (view.models.to_string(), Rgb888::WHITE),
        ("Not a diagnosis: a clinician must read the image.".to_string(), AMBER),
    ];
    let lines: Vec<(String, Rgb888)> = texts
        .iter()
        .filter(|(text, _)| !text.is_empty())
        .flat_map(|(text, colour)| wrap(text, f.chars).into_iter().map(|l| (l, *colour)))
        .collect();
    let footer_top = f.badge_y - (lines.len() as u32 * f.line_h) as i32;
    for (i, (line, colour)) in lines.iter().enumerate() {
        let y = footer_top + (i as u32 * f.line_h) as i32;
        text_line(target, line, Point::new(pad as i32, y), f.font, f.factor, *colour)?;
    }
    let footer_h = (h as i32 - footer_top).max(0) as u32;

    // radiograph, scaled to fit between banner and footer
    let top = banner_h + pad;
    let room = Size::new(w.saturating_sub(2 * pad), h.saturating_sub(top + footer_h + pad));
    draw_radiograph(target, view.image, view.mask, Point::new(pad as i32, top as i32), room)
}

/// The idle screen's facts: what a radiographer glances at between patients.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusView {
    pub state: ServiceState,
    pub models: String,
    /// Images waiting for analysis.
    pub queue: usize,
    /// e.g. "#12 2026-11-26T19:03:04Z positive", or None before the first.
    pub last_result: Option<String>,
    /// "up, host seen", "port open, no host seen yet", "DOWN ..." or "not configured".
    pub link: String,
    /// "/dev/video0 streaming", "/dev/video0 lost", or "not configured".
    pub capture: String,
    /// What is wrong and what to do, first under the banner (a full disk).
    pub problem: Option<String>,
}

/// Draw the idle screen: a slate banner with the state, then one fact per line.
pub fn draw_status<D: DrawTarget<Color = Rgb888>>(target: &mut D, view: &StatusView) -> Result<(), D::Error> {
    let ready = view.state == ServiceState::Ready;
    let colour = if ready { SLATE } else { AMBER };
    let lines: Vec<String> = view
        .problem
        .iter()
        .cloned()
        .chain([
            format!("Waiting: {}", view.queue),
            format!("Last result: {}", view.last_result.as_deref().unwrap_or("none yet")),
            format!("Host link: {}", view.link),
            format!("Capture: {}", view.capture),
            format!("Models: {}", view.models),
        ])
        .collect();
    draw_text_screen(target, &format!("ptxd {}", view.state.banner()), colour, &lines)
}

/// Draw an error screen: a red banner saying what failed, then what to do.
pub fn draw_error<D: DrawTarget<Color = Rgb888>>(
    target: &mut D,
    title: &str,
    lines: &[String],
) -> Result<(), D::Error> {
    draw_text_screen(target, title, RED, lines)
}

/// A banner in `colour`, lines of text under it, and the "Not a diagnosis" line at the foot.
fn draw_text_screen<D: DrawTarget<Color = Rgb888>>(
    target: &mut D,
    title: &str,
    colour: Rgb888,
    lines: &[String],
) -> Result<(), D::Error> {
    let area = target.bounding_box();
    let (w, h) = (area.size.width, area.size.height);
    target.clear(Rgb888::BLACK)?;
    let pad = (h / 60).max(2);
    // sized as if 24 characters long: short titles do not get giant letters
    let banner_h = draw_banner(target, title, title.len().max(24), colour, pad)?;
    let foot = "Not a diagnosis: a clinician must read the image.";
    let (tiny, tiny_factor) = pick_font(foot.len(), w.saturating_sub(2 * pad), h / 20);
    let foot_y = h.saturating_sub(tiny.character_size.height * tiny_factor + pad);
    // the largest font at which every line, wrapped, fits between banner and foot
    let room = foot_y.saturating_sub(banner_h + 3 * pad);
    let text_w = w.saturating_sub(2 * pad);
    let fonts = [(&FONT_10X20, 3), (&FONT_10X20, 2), (&FONT_10X20, 1), (&FONT_6X10, 1)];
    let layout = |font: &'static MonoFont<'static>, factor: u32| {
        let line_h = font.character_size.height * factor + pad;
        let wrapped: Vec<String> = lines
            .iter()
            .flat_map(|l| wrap(l, chars_in(text_w, font, factor)))
            .collect();
        (font, factor, line_h, wrapped)
    };
    let (small, small_factor, line_h, wrapped) = fonts
        .iter()
        .map(|&(font, factor)| layout(font, factor))
        .find(|(font, factor, line_h, wrapped)| {
            // no larger than 40 characters across and a twelfth of the height (giant
            // letters on a wide screen read worse), and everything fits
            font.character_size.width * factor * 40 <= text_w
                && font.character_size.height * factor <= h / 12
                && wrapped.len() as u32 * line_h <= room
        })
        .unwrap_or_else(|| layout(&FONT_6X10, 1));
    let mut y = banner_h + 2 * pad;
    for line in &wrapped {
        if y + line_h > foot_y {
            break; // only on a screen too small for the 6x10 font: the foot stays
        }
        text_line(
            target,
            line,
            Point::new(pad as i32, y as i32),
            small,
            small_factor,
            Rgb888::WHITE,
        )?;
        y += line_h;
    }
    text_line(
        target,
        foot,
        Point::new(pad as i32, foot_y as i32),
        tiny,
        tiny_factor,
        AMBER,
    )
}

/// Split `text` into lines of at most `width` characters, at spaces where possible (a word
/// longer than a line, such as a path, is cut).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let chars: Vec<char> = word.chars().collect();
        for piece in chars.chunks(width) {
            let line = lines.last_mut().expect("starts with one");
            let used = line.chars().count();
            if used > 0 && used + 1 + piece.len() > width {
                lines.push(String::new());
            }
            let line = lines.last_mut().expect("just pushed");
            if !line.is_empty() {
                line.push(' ');
            }
            line.extend(piece);
        }
    }
    lines
}

/// The radiograph scaled to fit `room` (aspect kept, centred), the mask blended in red and
/// outlined. Pixels are sampled at their centres (nearest neighbour): cheap on a Pi and
/// exact for the outline, which is computed on the screen grid.
fn draw_radiograph<D: DrawTarget<Color = Rgb888>>(
    target: &mut D,
    image: &GreyImage,
    mask: Option<&Mask>,
    origin: Point,
    room: Size,
) -> Result<(), D::Error> {
    if room.width == 0 || room.height == 0 || image.width == 0 || image.height == 0 {
        return Ok(());
    }
    let scale = f64::min(
        room.width as f64 / image.width as f64,
        room.height as f64 / image.height as f64,
    );
    let dw = ((image.width as f64 * scale).floor() as u32).max(1);
    let dh = ((image.height as f64 * scale).floor() as u32).max(1);
    let at = origin + Point::new(((room.width - dw) / 2) as i32, ((room.height - dh) / 2) as i32);
    let sx: Vec<usize> = (0..dw)
        .map(|x| (((x as f64 + 0.5) / scale) as usize).min(image.width - 1))
        .collect();
    let sy: Vec<usize> = (0..dh)
        .map(|y| (((y as f64 + 0.5) / scale) as usize).min(image.height - 1))
        .collect();
    let in_mask = |x: u32, y: u32| mask.is_some_and(|m| m.is_set(sx[x as usize], sy[y as usize]));
    let mut colours = Vec::with_capacity((dw * dh) as usize);
    for y in 0..dh {
        for x in 0..dw {
            let g = u32::from(image.pixels[sy[y as usize] * image.width + sx[x as usize]]);
            let colour = if in_mask(x, y) {
                let edge = x == 0
                    || y == 0
                    || x + 1 == dw
                    || y + 1 == dh
                    || !in_mask(x - 1, y)
                    || !in_mask(x + 1, y)
                    || !in_mask(x, y - 1)
                    || !in_mask(x, y + 1);
                if edge {
                    RED
                } else {
                    let blend = |c: u8| ((u32::from(c) * OVERLAY_ALPHA + g * (256 - OVERLAY_ALPHA)) / 256) as u8;
                    Rgb888::new(blend(RED.r()), blend(RED.g()), blend(RED.b()))
                }
            } else {
                Rgb888::new(g as u8, g as u8, g as u8)
            };
            colours.push(colour);
        }
    }
    target.fill_contiguous(&Rectangle::new(at, Size::new(dw, dh)), colours)
}

/// The result screen for `analysis` at `size`: what the display shows and the overlay file
/// holds.
pub fn result_frame(
    analysis: &Analysis,
    size: OverlaySize,
    models: &ModelVersions,
    time: &str,
    source: &str,
) -> Framebuffer {
    let mut fb = Framebuffer::new(size.width, size.height);
    let models = models.label();
    let view = ResultView {
        image: &analysis.radiograph.image,
        mask: analysis.mask.as_ref(),
        verdict: analysis.verdict,
        probability: analysis.probability,
        not_chest: analysis.not_chest.as_ref(),
        findings: &analysis.findings,
        time,
        models: &models,
        source,
    };
    let Ok(()) = draw_result(&mut fb, &view);
    fb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_wraps_at_spaces_and_long_words_are_cut() {
        assert_eq!(wrap("one two three", 7), ["one two", "three"]);
        assert_eq!(wrap("/a/very/long/path: bad", 8), ["/a/very/", "long/pat", "h: bad"]);
        assert_eq!(wrap("", 8), [""]);
    }
    use crate::analysis::findings::Side;

    fn finding(side: Side, percent: f32) -> Finding {
        Finding {
            side,
            area_pixels: 10,
            area_percent_image: percent / 2.0,
            area_percent_side: percent,
            bbox: [0, 0, 1, 1],
            mean_probability: 0.9,
        }
    }

    #[test]
    fn banner_words() {
        assert_eq!(
            banner(Verdict::Positive, &[finding(Side::Right, 12.4)]).0,
            "PNEUMOTHORAX SUSPECTED - RIGHT - 12%"
        );
        assert_eq!(
            banner(Verdict::Positive, &[]).0,
            "PNEUMOTHORAX SUSPECTED - NOT LOCALISED"
        );
        assert_eq!(
            banner(
                Verdict::Positive,
                &[finding(Side::Left, 3.0), finding(Side::Right, 1.0)]
            )
            .0,
            "PNEUMOTHORAX SUSPECTED - BOTH SIDES"
        );
        assert_eq!(
            banner(Verdict::Negative, &[]),
            ("No pneumothorax flagged".into(), GREEN)
        );
        // a localised finding never reads "0%": a small one is "<1%"
        assert_eq!(
            banner(Verdict::Positive, &[finding(Side::Right, 0.4)]).0,
            "PNEUMOTHORAX SUSPECTED - RIGHT - <1%"
        );
        assert_eq!(
            (percent_text(0.0), percent_text(0.99), percent_text(1.0)),
            ("<1%".into(), "<1%".into(), "1%".into())
        );
        assert_eq!(banner(Verdict::NotAnalyzed, &[]).0, "IMAGE NOT ANALYZED - NOT READ");
    }

    #[test]
    fn scaled_target_magnifies() {
        let mut fb = Framebuffer::new(20, 20);
        let mut scaled = Scaled::new(&mut fb, 3, Point::new(2, 2));
        Pixel(Point::new(1, 1), RED).draw(&mut scaled).unwrap();
        assert_eq!(fb.pixel(5, 5), RED);
        assert_eq!(fb.pixel(7, 7), RED);
        assert_eq!(fb.pixel(8, 8), Rgb888::BLACK);
        assert_eq!(fb.pixel(4, 4), Rgb888::BLACK);
    }

    #[test]
    fn font_grows_with_the_screen() {
        let small = pick_font(36, 300, 30);
        let big = pick_font(36, 1880, 135);
        assert_eq!((small.0.character_size.width, small.1), (6, 1));
        assert!(
            big.0.character_size.width * big.1 >= 30,
            "at least 30 px per letter on 1080p"
        );
    }
}
