//! PNG snapshots as a display: `<dir>/screen.png`, replaced atomically each time the screen
//! changes (a machine without a screen, and the tests, see what a panel would show).

use std::path::{Path, PathBuf};

use embedded_graphics::prelude::Size;

use super::{Display, DisplayError};
use crate::base::files;
use crate::config::PngConfig;
use crate::record::render::Framebuffer;

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
            .and_then(|()| files::write_durably(&self.path, &frame.to_png()))
            .map_err(|e| DisplayError::Draw {
                device: self.path.clone(),
                reason: e.to_string(),
            })
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::display::test_frame as frame;

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
