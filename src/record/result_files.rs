//! The files a result names, written durably before its record: the overlay PNG (the result
//! screen), the mask PNG of a positive, and for a DICOM input its result as DICOM (a report,
//! and the overlay as a secondary capture) for the PACS outbox. A record never names a file
//! that was not written.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::analysis::Analysis;
use crate::base::files::{is_disk_full, write_durably};
use crate::config::OutputConfig;
use crate::record::dicom_result;
use crate::record::journal::Record;
use crate::record::render::result_frame;

/// A result file that could not be written because the disk is full: the caller stalls the
/// result (nothing is lost) until space returns.
#[derive(Debug, Error)]
#[error("{}: {source}", path.display())]
pub struct DiskFull {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Write the files of `record` (about to be journaled as number `seq`, its input named
/// `name`, `stem` without its extension) into the configured folders; the overlay's and the
/// mask's paths, for the record. A file that cannot be written for another reason than a
/// full disk (a folder made read-only) is logged and named as null, so a misconfigured output
/// cannot stop the service.
pub fn write(
    output: &OutputConfig,
    seq: u64,
    stem: &str,
    name: &str,
    analysis: &Analysis,
    record: &Record,
) -> Result<(Option<String>, Option<String>), DiskFull> {
    let write = |path: PathBuf, bytes: Vec<u8>| match write_durably(&path, &bytes) {
        Ok(()) => Ok(Some(path.display().to_string())),
        Err(source) if is_disk_full(&source) => Err(DiskFull { path, source }),
        Err(e) => {
            log::error!("{}: cannot write it: {e}", path.display());
            Ok(None)
        }
    };
    let file = |dir: &Path, suffix: &str| dir.join(format!("{seq:08}-{stem}{suffix}"));
    let fb = result_frame(analysis, output.overlay_size, &record.models, &record.time, name);
    let overlay = write(file(&output.overlay_dir, ".png"), fb.to_png())?;
    let mask = match (&analysis.mask, &output.mask_dir) {
        (Some(mask), Some(dir)) => write(file(dir, ".png"), mask.to_png())?,
        _ => None,
    };
    if let (Some(dir), Some(study)) = (&output.dicom_dir, &analysis.radiograph.study) {
        let view = dicom_result::ResultView {
            study,
            input_sha256: &analysis.radiograph.sha256,
            verdict: analysis.verdict,
            probability: analysis.probability,
            findings: &analysis.findings,
            models: &record.models,
            time: &record.time,
        };
        let embedded_graphics::geometry::Size { width, height } =
            embedded_graphics::geometry::OriginDimensions::size(&fb);
        let objects = [
            ("sr", dicom_result::structured_report(&view)),
            (
                "sc",
                dicom_result::overlay_capture(&view, width, height, &fb.to_rgb_bytes()),
            ),
        ];
        for (kind, object) in objects {
            match object {
                Ok(bytes) => _ = write(file(dir, &format!(".{kind}.dcm")), bytes)?,
                Err(e) => log::warn!("{name}: no DICOM {kind} result: {e}"),
            }
        }
    }
    Ok((overlay, mask))
}
