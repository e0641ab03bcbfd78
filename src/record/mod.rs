//! A result written down: the journal that every result reaches before anyone is told
//! ([`journal`]), the result screen drawn into pixels ([`render`]) and the result as DICOM
//! objects for a PACS ([`dicom_result`]), the files a result names, written before its
//! record ([`result_files`]), and how long they are kept ([`retention`]).

pub mod dicom_result;
pub mod journal;
pub mod render;
pub mod result_files;
pub mod retention;
