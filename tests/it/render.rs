//! The result screen at the smallest and largest sizes we support (320x240 SPI panel,
//! 1920x1080 HDMI): banner colour and words, the radiograph, the red mask, the warning line.

use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use ptxd::analysis::findings::{Finding, Mask, Side, Verdict};
use ptxd::base::outcome::ServiceState;
use ptxd::pixels::grey::GreyImage;
use ptxd::record::render::{draw_result, Framebuffer, ResultView, AMBER, GREEN, RED, VIOLET};

/// A 400x300 grey gradient "radiograph" with a 100x80 mask block on the viewer's left.
fn scene() -> (GreyImage, Mask, Vec<Finding>) {
    let (w, h) = (400usize, 300usize);
    let pixels = (0..w * h).map(|i| (60 + (i % w) * 120 / w) as u8).collect();
    let mut mask = vec![0u8; w * h];
    for y in 50..130 {
        for x in 60..160 {
            mask[y * w + x] = 255;
        }
    }
    let finding = Finding {
        side: Side::Right,
        area_pixels: 8000,
        area_percent_image: 6.7,
        area_percent_side: 13.3,
        bbox: [60, 50, 100, 80],
        mean_probability: 0.9,
    };
    (
        GreyImage::new(w, h, pixels).unwrap(),
        Mask {
            width: w,
            height: h,
            pixels: mask,
        },
        vec![finding],
    )
}

fn draw(w: u32, h: u32, verdict: Verdict, with_mask: bool) -> Framebuffer {
    let (image, mask, findings) = scene();
    let mut fb = Framebuffer::new(w, h);
    let view = ResultView {
        image: &image,
        mask: with_mask.then_some(&mask),
        verdict,
        probability: Some(0.83),
        not_chest: None,
        findings: if with_mask { &findings } else { &[] },
        time: "2026-11-26T19:03:04Z",
        models: "ptx-cls int8 / ptx-seg int8",
        source: "watch:test.png",
    };
    let Ok(()) = draw_result(&mut fb, &view);
    fb
}

fn count(fb: &Framebuffer, x: std::ops::Range<u32>, y: std::ops::Range<u32>, pred: impl Fn(Rgb888) -> bool) -> usize {
    y.flat_map(|yy| x.clone().map(move |xx| (xx, yy)))
        .filter(|&(xx, yy)| pred(fb.pixel(xx, yy)))
        .count()
}

fn is_reddish(c: Rgb888) -> bool {
    let (r, g, b) = (i32::from(c.r()), i32::from(c.g()), i32::from(c.b()));
    r > g + 40 && r > b + 40
}

#[test]
fn positive_screen_is_legible_small_and_large() {
    for (w, h) in [(320u32, 240u32), (1920, 1080)] {
        let fb = draw(w, h, Verdict::Positive, true);
        // banner: red across the top, white letters on it
        assert_eq!(fb.pixel(1, 1), RED, "{w}x{h}");
        assert_eq!(fb.pixel(w - 2, 1), RED, "{w}x{h}");
        let banner_rows = (0..h).take_while(|&y| fb.pixel(1, y) == RED).count() as u32;
        assert!(
            banner_rows >= 14 && banner_rows <= h / 6,
            "{w}x{h}: banner {banner_rows} rows"
        );
        let letters = count(&fb, 0..w, 0..banner_rows, |c| c == Rgb888::WHITE);
        assert!(letters > 300, "{w}x{h}: banner text pixels {letters}");
        // letters at least 10 px high on the small screen, at least 30 on the large one
        let text_rows = (0..banner_rows)
            .filter(|&y| (0..w).any(|x| fb.pixel(x, y) == Rgb888::WHITE))
            .count() as u32;
        assert!(
            text_rows >= if w >= 1920 { 30 } else { 7 },
            "{w}x{h}: text {text_rows} rows high"
        );
        // the radiograph below it: many grey levels; the mask as red over it
        let body = banner_rows + 2..h * 3 / 4;
        let greys = count(&fb, 0..w, body.clone(), |c| {
            c.r() == c.g() && c.g() == c.b() && c.r() > 40
        });
        assert!(greys as u32 > w * h / 10, "{w}x{h}: radiograph visible");
        let red = count(&fb, 0..w, body, is_reddish);
        assert!(red as u32 > w * h / 200, "{w}x{h}: mask visible ({red} red pixels)");
        // the warning line in amber near the bottom
        let amber = count(&fb, 0..w, h - h / 5..h, |c| c == AMBER);
        assert!(amber > 50, "{w}x{h}: 'not a diagnosis' line");
    }
}

#[test]
fn negative_screen_is_green_with_no_red() {
    let fb = draw(320, 240, Verdict::Negative, false);
    assert_eq!(fb.pixel(1, 1), GREEN);
    assert_eq!(count(&fb, 0..320, 30..200, is_reddish), 0);
}

#[test]
fn indeterminate_screen_is_amber() {
    let fb = draw(800, 480, Verdict::Indeterminate, false);
    assert_eq!(fb.pixel(1, 1), AMBER);
}

#[test]
fn overlay_png_round_trips() {
    let fb = draw(320, 240, Verdict::Positive, true);
    let png = image::load_from_memory(&fb.to_png()).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (320, 240));
    assert_eq!(png.into_raw(), fb.to_rgb_bytes());
}

#[test]
fn not_chest_screen_is_violet_with_no_red_and_says_what_to_do() {
    let fb = draw(800, 480, Verdict::NotChestRadiograph, false);
    assert_eq!(fb.pixel(1, 1), VIOLET, "neither the alarm's red nor the idle slate");
    assert_eq!(count(&fb, 0..800, 40..380, is_reddish), 0, "no alarm colour");
    // the instruction line is drawn (white text in the footer)
    let text = count(&fb, 0..800, 400..480, |c| c == Rgb888::WHITE);
    assert!(text > 100, "footer text {text}");
}

/// A framebuffer that counts every pixel drawn outside it (the plain one drops them
/// silently): a glyph that leaves the screen is text a radiographer cannot read.
struct Bounded {
    fb: Framebuffer,
    outside: usize,
}

impl embedded_graphics::geometry::OriginDimensions for Bounded {
    fn size(&self) -> embedded_graphics::geometry::Size {
        embedded_graphics::geometry::OriginDimensions::size(&self.fb)
    }
}

impl embedded_graphics::draw_target::DrawTarget for Bounded {
    type Color = Rgb888;
    type Error = std::convert::Infallible;

    fn draw_iter<I: IntoIterator<Item = embedded_graphics::Pixel<Rgb888>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Self::Error> {
        let size = embedded_graphics::geometry::OriginDimensions::size(&self.fb);
        let (w, h) = (size.width as i32, size.height as i32);
        let inside: Vec<_> = pixels
            .into_iter()
            .filter(|p| {
                let ok = (0..w).contains(&p.0.x) && (0..h).contains(&p.0.y);
                self.outside += usize::from(!ok);
                ok
            })
            .collect();
        self.fb.draw_iter(inside)
    }
}

/// The longest strings ptxd really puts on its screens (SIIM's file names, the shipped
/// models' versions, long reasons and errors), at the smallest and the largest
/// screen: every glyph lands on the screen, wrapped rather than cut, and the foot stays.
#[test]
fn the_longest_real_strings_stay_on_screen_at_320x240_and_1920x1080() {
    use ptxd::analysis::lungs::NotChest;
    use ptxd::record::render::{draw_badge, draw_error, draw_status, StatusView};

    let source = "capture:1.2.276.0.7230010.3.1.4.8323329.1080.1517875166.235178-received-2026-11-26T19:03:04Z.png";
    let models = "ptx-lungs-unetpp-effnetlite0-int8-20261128 int8 / ptx-cls-segscore-unetpp-effnetlite0-int8-20261128 int8 / ptx-seg-unetpp-effnetlite0-int8-20261128 int8";
    let error = "/var/lib/ptxd/incoming/1.2.276.0.7230010.3.1.4.8323329.1080.1517875166.235178.dcm: DICOM 12-bit extended JPEG cannot be decoded: JPEG scan undecodable: Premature end of JPEG file";
    let (image, mask, _) = scene();
    let finding = |side, pct| Finding {
        side,
        area_pixels: 123_456,
        area_percent_image: 12.3,
        area_percent_side: pct,
        bbox: [60, 50, 100, 80],
        mean_probability: 0.9,
    };
    let findings = [
        finding(Side::Right, 0.4),
        finding(Side::Left, 34.5),
        finding(Side::Right, 12.0),
    ];
    let not_chest = NotChest::NotChestLike { score: 0.02, min: 0.39 };
    for (w, h) in [(320u32, 240u32), (1920, 1080)] {
        let mut screens: Vec<(&str, Bounded)> = Vec::new();
        let new = || Bounded {
            fb: Framebuffer::new(w, h),
            outside: 0,
        };
        for (verdict, why) in [
            (Verdict::Positive, None),
            (Verdict::NotChestRadiograph, Some(&not_chest)),
        ] {
            let mut b = new();
            let view = ResultView {
                image: &image,
                mask: Some(&mask),
                verdict,
                probability: Some(0.83),
                not_chest: why,
                findings: if why.is_none() { &findings } else { &[] },
                time: "2026-11-26T19:03:04Z",
                models,
                source,
            };
            let Ok(()) = draw_result(&mut b, &view);
            let Ok(()) = draw_badge(&mut b, "12 MORE ALERTS TO ACKNOWLEDGE - 8 RESULTS WAITING");
            screens.push(("result", b));
        }
        let mut b = new();
        let lines = vec![
            format!("#123456 {source}"),
            error.to_string(),
            "Check the digitizer's output, then send the image again.".into(),
            "Press ACK to clear.".into(),
        ];
        let Ok(()) = draw_error(&mut b, "IMAGE NOT ANALYZED", &lines);
        screens.push(("error", b));
        let mut b = new();
        let view = StatusView {
            state: ServiceState::CaptureLost,
            models: models.into(),
            queue: 10_000,
            last_result: Some("#123456 2026-11-26T19:03:04Z not_chest_radiograph".into()),
            link: "port open, no host seen yet".into(),
            capture: "/dev/v4l/by-id/usb-Digitizer_Corp_XR-2000_0123456789-video-index0 LOST, retrying".into(),
            problem: Some(
                "No space left on the disk (/var/lib/ptxd/overlays/00000042-1.2.276.0.7230010.3.1.4.8323329.1080.png): \
                 free space there; images wait in the watch folder and are analyzed when it returns"
                    .into(),
            ),
        };
        let Ok(()) = draw_status(&mut b, &view);
        screens.push(("idle", b));
        for (name, b) in &screens {
            assert_eq!(
                b.outside, 0,
                "{name} at {w}x{h}: {} pixels of text off the screen",
                b.outside
            );
            let foot = count(&b.fb, 0..w, h * 3 / 4..h, |c| c == AMBER);
            assert!(
                foot > 50,
                "{name} at {w}x{h}: the amber foot or badge is missing ({foot})"
            );
        }
    }
}
