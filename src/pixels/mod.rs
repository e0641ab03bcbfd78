//! From bytes on disk to an 8-bit grey image ([`grey`]): DICOM in twelve transfer syntaxes,
//! PNG, JPEG and TIFF ([`decode`]), with the size a compressed frame declares checked before
//! any codec allocates ([`codestream`]) and the 12-bit JPEG dicom-rs cannot read
//! ([`jpeg12`]). Knows nothing of the models.

pub mod codestream;
pub mod decode;
pub mod grey;
pub mod jpeg12;
