//! Where radiographs come from: the watch folder ([`source`]), the digitizer's video output
//! ([`capture`]), and the DICOM listener ([`receive`]) with the DIMSE commands it and the PACS
//! outbox speak ([`dimse`]). Each one ends in a complete file in the watch folder.

pub mod capture;
pub mod dimse;
pub mod receive;
pub mod source;
