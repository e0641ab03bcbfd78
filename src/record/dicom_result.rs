//! A result as DICOM objects, for a clinic's PACS: a Comprehensive Structured Report (the
//! verdict, the probability, each finding with its side, area and region, the models, and
//! that this is not a diagnosis) and a Secondary Capture of the overlay screen. Both go into
//! the source image's study (same patient and study attributes), each in a new series.
//!
//! Decisions:
//! - UIDs are derived from the input's sha256 (under the `2.25` root, UUID-derived UIDs of
//!   PS3.5 B.2): the same input always gives the same SOP Instance UIDs, so a result written
//!   or sent twice (after a restart, a retry) is the same object, never a duplicate.
//! - Concept names use a local coding scheme, `99PTXD` (PS3.16: "99" marks a private
//!   scheme), and units UCUM: the report says what it measured, without claiming a standard
//!   template it does not follow.
//! - The region is the finding's bounding box as a closed POLYLINE in the source image's
//!   pixel coordinates, SELECTED FROM the source image.
//! - Only DICOM sources get DICOM results: a PNG or a captured frame names no patient or
//!   study to file them under.

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use sha2::{Digest, Sha256};

use crate::analysis::findings::{Finding, Side};
use crate::base::outcome::Verdict;
use crate::model::infer::ModelVersions;
use crate::pixels::decode::StudyContext;

/// What a result says, as the DICOM objects need it.
pub struct ResultView<'a> {
    pub study: &'a StudyContext,
    /// The input's sha256 (hex): the root of the objects' UIDs.
    pub input_sha256: &'a str,
    pub verdict: Verdict,
    pub probability: Option<f32>,
    pub findings: &'a [Finding],
    pub models: &'a ModelVersions,
    /// When the result was made (RFC 3339, UTC, as the journal writes it).
    pub time: &'a str,
}

/// Whether `uid` is a DICOM UID: 1 to 64 characters, digits and dots, no empty component.
pub fn is_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

/// A result can be filed only beside a source with valid study and instance UIDs (a
/// de-identified file may carry made-up ones, as the public SIIM files do).
fn check_source(study: &StudyContext) -> Result<(), String> {
    for (name, uid) in [
        ("Study Instance UID", &study.study_instance_uid),
        ("Series Instance UID", &study.series_instance_uid),
        ("SOP Instance UID", &study.sop_instance_uid),
        ("SOP Class UID", &study.sop_class_uid),
    ] {
        if !is_uid(uid) {
            return Err(format!(
                "the source's {name} ({uid:?}) is not a valid UID: a result cannot be filed in its study"
            ));
        }
    }
    Ok(())
}

/// A UID under `2.25` from a hash of `parts`: stable for the same parts.
pub fn stable_uid(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // a version-4-like UUID's 122 random bits keep the decimal within 64 characters
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    format!("2.25.{}", u128::from_be_bytes(bytes))
}

/// The SR's and the overlay's SOP Instance UIDs for an input.
pub fn instance_uids(input_sha256: &str) -> (String, String) {
    (
        stable_uid(&["ptxd sr instance", input_sha256]),
        stable_uid(&["ptxd overlay instance", input_sha256]),
    )
}

fn put(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: impl Into<PrimitiveValue>) {
    obj.put(DataElement::new(tag, vr, value.into()));
}

fn sequence(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

/// DA and TM of an RFC 3339 time ("2026-11-28T21:20:54Z" -> "20261128", "212054").
fn date_time(time: &str) -> (String, String) {
    let digits: String = time.chars().filter(char::is_ascii_digit).collect();
    let date = digits.get(..8).unwrap_or("19700101").to_string();
    let clock = digits.get(8..14).unwrap_or("000000").to_string();
    (date, clock)
}

/// The patient and study attributes copied from the source, so the object files beside it.
fn patient_and_study(obj: &mut InMemDicomObject, study: &StudyContext) {
    put(obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    put(obj, tags::PATIENT_NAME, VR::PN, study.patient_name.as_str());
    put(obj, tags::PATIENT_ID, VR::LO, study.patient_id.as_str());
    put(obj, tags::PATIENT_BIRTH_DATE, VR::DA, study.patient_birth_date.as_str());
    put(obj, tags::PATIENT_SEX, VR::CS, study.patient_sex.as_str());
    put(obj, tags::STUDY_INSTANCE_UID, VR::UI, study.study_instance_uid.as_str());
    put(obj, tags::STUDY_DATE, VR::DA, study.study_date.as_str());
    put(obj, tags::STUDY_TIME, VR::TM, study.study_time.as_str());
    put(obj, tags::STUDY_ID, VR::SH, study.study_id.as_str());
    put(obj, tags::ACCESSION_NUMBER, VR::SH, study.accession_number.as_str());
    put(
        obj,
        tags::REFERRING_PHYSICIAN_NAME,
        VR::PN,
        study.referring_physician_name.as_str(),
    );
    put(obj, tags::MANUFACTURER, VR::LO, "ptxd");
    put(
        obj,
        tags::SOFTWARE_VERSIONS,
        VR::LO,
        concat!("ptxd ", env!("CARGO_PKG_VERSION")),
    );
}

fn code(value: &str, meaning: &str, scheme: &str) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    put(&mut item, tags::CODE_VALUE, VR::SH, value);
    put(&mut item, tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme);
    put(&mut item, tags::CODE_MEANING, VR::LO, meaning);
    item
}

/// One content item: its relationship, value type and concept name.
fn content(relationship: &str, value_type: &str, concept: (&str, &str)) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    put(&mut item, tags::RELATIONSHIP_TYPE, VR::CS, relationship);
    put(&mut item, tags::VALUE_TYPE, VR::CS, value_type);
    sequence(
        &mut item,
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        vec![code(concept.0, concept.1, "99PTXD")],
    );
    item
}

fn text(concept: (&str, &str), value: &str) -> InMemDicomObject {
    let mut item = content("CONTAINS", "TEXT", concept);
    put(&mut item, tags::TEXT_VALUE, VR::UT, value);
    item
}

fn number(concept: (&str, &str), value: f32, unit: (&str, &str)) -> InMemDicomObject {
    let mut item = content("CONTAINS", "NUM", concept);
    let mut measured = InMemDicomObject::new_empty();
    put(&mut measured, tags::NUMERIC_VALUE, VR::DS, format!("{value:.4}"));
    sequence(
        &mut measured,
        tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
        vec![code(unit.0, unit.1, "UCUM")],
    );
    sequence(&mut item, tags::MEASURED_VALUE_SEQUENCE, vec![measured]);
    item
}

fn image_reference(relationship: &str, study: &StudyContext) -> InMemDicomObject {
    let mut item = content(relationship, "IMAGE", ("IMAGE", "Source image"));
    let mut referenced = InMemDicomObject::new_empty();
    put(
        &mut referenced,
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        study.sop_class_uid.as_str(),
    );
    put(
        &mut referenced,
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        study.sop_instance_uid.as_str(),
    );
    sequence(&mut item, tags::REFERENCED_SOP_SEQUENCE, vec![referenced]);
    item
}

/// The Structured Report of a result, as a whole DICOM file's bytes.
pub fn structured_report(result: &ResultView) -> Result<Vec<u8>, String> {
    let study = result.study;
    check_source(study)?;
    let (instance, _) = instance_uids(result.input_sha256);
    let (date, clock) = date_time(result.time);
    let mut obj = InMemDicomObject::new_empty();
    patient_and_study(&mut obj, study);
    put(&mut obj, tags::SOP_CLASS_UID, VR::UI, uids::COMPREHENSIVE_SR_STORAGE);
    put(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, instance.as_str());
    put(&mut obj, tags::MODALITY, VR::CS, "SR");
    put(
        &mut obj,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        stable_uid(&["ptxd sr series", result.input_sha256]),
    );
    put(&mut obj, tags::SERIES_NUMBER, VR::IS, "9001");
    put(
        &mut obj,
        tags::SERIES_DESCRIPTION,
        VR::LO,
        "ptxd pneumothorax triage (not a diagnosis)",
    );
    sequence(&mut obj, tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, vec![]);
    put(&mut obj, tags::INSTANCE_NUMBER, VR::IS, "1");
    put(&mut obj, tags::CONTENT_DATE, VR::DA, date.as_str());
    put(&mut obj, tags::CONTENT_TIME, VR::TM, clock.as_str());
    put(&mut obj, tags::INSTANCE_CREATION_DATE, VR::DA, date.as_str());
    put(&mut obj, tags::INSTANCE_CREATION_TIME, VR::TM, clock.as_str());
    put(&mut obj, tags::COMPLETION_FLAG, VR::CS, "COMPLETE");
    put(&mut obj, tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED");
    sequence(&mut obj, tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, vec![]);
    // the image the report is about (Hierarchical SOP Instance Reference)
    let mut sop = InMemDicomObject::new_empty();
    put(
        &mut sop,
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        study.sop_class_uid.as_str(),
    );
    put(
        &mut sop,
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        study.sop_instance_uid.as_str(),
    );
    let mut series = InMemDicomObject::new_empty();
    put(
        &mut series,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        study.series_instance_uid.as_str(),
    );
    sequence(&mut series, tags::REFERENCED_SOP_SEQUENCE, vec![sop]);
    let mut evidence = InMemDicomObject::new_empty();
    put(
        &mut evidence,
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        study.study_instance_uid.as_str(),
    );
    sequence(&mut evidence, tags::REFERENCED_SERIES_SEQUENCE, vec![series]);
    sequence(
        &mut obj,
        tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
        vec![evidence],
    );

    // the content tree
    put(&mut obj, tags::VALUE_TYPE, VR::CS, "CONTAINER");
    sequence(
        &mut obj,
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        vec![code("PTX-TRIAGE", "Pneumothorax triage", "99PTXD")],
    );
    put(&mut obj, tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
    let mut items = vec![
        text(("VERDICT", "Verdict"), result.verdict.as_str()),
        image_reference("CONTAINS", study),
    ];
    if let Some(p) = result.probability {
        items.push(number(("PROBABILITY", "Classifier probability"), p, ("1", "no units")));
    }
    for finding in result.findings {
        let mut container = content("CONTAINS", "CONTAINER", ("FINDING", "Suspected pneumothorax"));
        put(&mut container, tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
        let side = match finding.side {
            Side::Right => "right",
            Side::Left => "left",
        };
        let [x, y, w, h] = finding.bbox.map(|v| v as f32);
        let mut region = content("CONTAINS", "SCOORD", ("REGION", "Region"));
        put(&mut region, tags::GRAPHIC_TYPE, VR::CS, "POLYLINE");
        // column, row pairs; closed: the first point again at the end
        let corners = [x, y, x + w, y, x + w, y + h, x, y + h, x, y];
        put(
            &mut region,
            tags::GRAPHIC_DATA,
            VR::FL,
            PrimitiveValue::F32(corners.into_iter().collect()),
        );
        sequence(
            &mut region,
            tags::CONTENT_SEQUENCE,
            vec![image_reference("SELECTED FROM", study)],
        );
        let children = vec![
            text(("SIDE", "Patient side"), side),
            number(
                ("AREA-SIDE", "Area, percent of that side's lung field"),
                finding.area_percent_side,
                ("%", "percent"),
            ),
            number(
                ("AREA-IMAGE", "Area, percent of the image"),
                finding.area_percent_image,
                ("%", "percent"),
            ),
            region,
        ];
        sequence(&mut container, tags::CONTENT_SEQUENCE, children);
        items.push(container);
    }
    let models = format!(
        "lung fields {}; classifier {}; segmenter {}",
        result.models.lungs, result.models.classifier, result.models.segmenter
    );
    items.push(text(("MODELS", "Models"), &models));
    items.push(text(
        ("LIMITATION", "Limitation"),
        "Not a diagnosis. Triage by software that is not a medical device; a clinician reads the image.",
    ));
    sequence(&mut obj, tags::CONTENT_SEQUENCE, items);
    to_file(obj, uids::COMPREHENSIVE_SR_STORAGE, &instance)
}

/// A Secondary Capture of the overlay screen (RGB, `width` x `height`, packed rows).
pub fn overlay_capture(result: &ResultView, width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, String> {
    check_source(result.study)?;
    let (_, instance) = instance_uids(result.input_sha256);
    let (date, clock) = date_time(result.time);
    let mut obj = InMemDicomObject::new_empty();
    patient_and_study(&mut obj, result.study);
    put(
        &mut obj,
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
    );
    put(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, instance.as_str());
    put(&mut obj, tags::MODALITY, VR::CS, "OT");
    put(
        &mut obj,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        stable_uid(&["ptxd overlay series", result.input_sha256]),
    );
    put(&mut obj, tags::SERIES_NUMBER, VR::IS, "9002");
    put(&mut obj, tags::LATERALITY, VR::CS, "");
    put(
        &mut obj,
        tags::SERIES_DESCRIPTION,
        VR::LO,
        "ptxd overlay (not a diagnosis)",
    );
    put(&mut obj, tags::CONVERSION_TYPE, VR::CS, "WSD");
    put(&mut obj, tags::INSTANCE_NUMBER, VR::IS, "1");
    put(&mut obj, tags::PATIENT_ORIENTATION, VR::CS, "");
    put(&mut obj, tags::CONTENT_DATE, VR::DA, date.as_str());
    put(&mut obj, tags::CONTENT_TIME, VR::TM, clock.as_str());
    put(&mut obj, tags::BURNED_IN_ANNOTATION, VR::CS, "YES");
    put(
        &mut obj,
        tags::IMAGE_TYPE,
        VR::CS,
        PrimitiveValue::Strs(["DERIVED", "SECONDARY"].map(String::from).into()),
    );
    put(&mut obj, tags::SAMPLES_PER_PIXEL, VR::US, 3u16);
    put(&mut obj, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB");
    put(&mut obj, tags::PLANAR_CONFIGURATION, VR::US, 0u16);
    put(&mut obj, tags::ROWS, VR::US, height as u16);
    put(&mut obj, tags::COLUMNS, VR::US, width as u16);
    put(&mut obj, tags::BITS_ALLOCATED, VR::US, 8u16);
    put(&mut obj, tags::BITS_STORED, VR::US, 8u16);
    put(&mut obj, tags::HIGH_BIT, VR::US, 7u16);
    put(&mut obj, tags::PIXEL_REPRESENTATION, VR::US, 0u16);
    put(
        &mut obj,
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::U8(rgb.iter().copied().collect()),
    );
    to_file(obj, uids::SECONDARY_CAPTURE_IMAGE_STORAGE, &instance)
}

fn to_file(obj: InMemDicomObject, class: &str, instance: &str) -> Result<Vec<u8>, String> {
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .media_storage_sop_class_uid(class)
                .media_storage_sop_instance_uid(instance)
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN),
        )
        .map_err(|e| format!("cannot make the file meta: {e}"))?;
    let mut bytes = Vec::new();
    file.write_all(&mut bytes)
        .map_err(|e| format!("cannot write the DICOM object: {e}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_uids_are_valid_distinct_and_the_same_for_the_same_input() {
        let (sr, sc) = instance_uids("ab12");
        assert!(is_uid(&sr) && is_uid(&sc), "{sr} {sc}");
        assert_ne!(sr, sc);
        assert_eq!(instance_uids("ab12"), (sr.clone(), sc));
        assert_ne!(instance_uids("ab13").0, sr);
        assert!(!is_uid("ID_1b7cfb077") && !is_uid("1..2") && !is_uid(""));
    }
}
