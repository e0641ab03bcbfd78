//! The first gate: what a DICOM header says the object is. A CT slice, an MR, an ultrasound,
//! a segmentation or a report is not a projection radiograph, whatever its pixels look like
//! to the models (a CT slice once got the red alarm, p = 0.64). Such an object is refused
//! from its header, in the header's own words, before a pixel is decoded or a model runs:
//! on the watch folder (the decoder) as on the DICOM listener (C-STORE).
//!
//! Modality (0008,0060) is checked against the ones that are never a chest film; the SOP
//! class against the standard classes a chest film comes in. A value the tables do not know
//! (a vendor's own modality word, a private SOP class) is let through: the lung-field check
//! still stands behind this gate.

use dicom_core::dictionary::UidDictionary;
use dicom_dictionary_std::{tags, uids, StandardSopClassDictionary};
use dicom_object::DefaultDicomObject;

use crate::base::outcome::ErrorKind;

use super::{element_text, Refusal};

/// Modalities that are never a projection radiograph of the chest, with what they are
/// (PS3.3 C.7.3.1.1.1), for the reason a radiographer reads.
const NOT_PROJECTION: [(&str, &str); 26] = [
    ("CT", "computed tomography"),
    ("MR", "magnetic resonance"),
    ("US", "ultrasound"),
    ("NM", "nuclear medicine"),
    ("PT", "positron emission tomography"),
    ("SEG", "a segmentation"),
    ("SR", "a structured report"),
    ("RTSTRUCT", "a radiotherapy structure set"),
    ("RTDOSE", "a radiotherapy dose"),
    ("RTPLAN", "a radiotherapy plan"),
    ("RTRECORD", "a radiotherapy record"),
    ("RTIMAGE", "a radiotherapy image"),
    ("MG", "mammography"),
    ("XA", "X-ray angiography"),
    ("RF", "fluoroscopy"),
    ("IO", "intra-oral radiography"),
    ("PX", "panoramic dental radiography"),
    ("BMD", "bone densitometry"),
    ("ES", "endoscopy"),
    ("OP", "ophthalmic photography"),
    ("SM", "slide microscopy"),
    ("XC", "a photograph"),
    ("KO", "a key object selection"),
    ("PR", "a presentation state"),
    ("DOC", "a document"),
    ("ECG", "an electrocardiogram"),
];

/// The standard SOP classes a chest film comes in: computed and digital radiography, and
/// secondary capture (film digitizers, converted archives).
const PROJECTION_CLASSES: [&str; 6] = [
    uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_GRAYSCALE_BYTE_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_GRAYSCALE_WORD_SECONDARY_CAPTURE_IMAGE_STORAGE,
];

/// Refuse (as not a chest radiograph) an object whose Modality or SOP class says it is not a
/// projection radiograph. Reads the header only. The reason is short: the listener sends it
/// back in a 64-character Error Comment.
pub fn check_projection(obj: &DefaultDicomObject) -> Result<(), Refusal> {
    // some writers pad at the front too
    let text = |tag| element_text(obj, tag).trim_start_matches(['\0', ' ']).to_string();
    let modality = text(tags::MODALITY).to_uppercase();
    if let Some((_, what)) = NOT_PROJECTION.iter().find(|(m, _)| *m == modality) {
        return Err(not_chest(format!(
            "header says Modality {modality} ({what}): not a radiograph"
        )));
    }
    let class = match text(tags::SOP_CLASS_UID) {
        class if class.is_empty() => obj
            .meta()
            .media_storage_sop_class_uid()
            .trim_matches(['\0', ' '])
            .to_string(),
        class => class,
    };
    if !PROJECTION_CLASSES.contains(&class.as_str()) {
        if let Some(entry) = StandardSopClassDictionary.by_uid(&class) {
            return Err(not_chest(format!(
                "header says SOP class {}: not a radiograph",
                entry.name
            )));
        }
    }
    Ok(())
}

fn not_chest(reason: String) -> Refusal {
    Refusal {
        kind: ErrorKind::NotChest,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

    fn object(modality: &str, class: &str) -> DefaultDicomObject {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from(modality)));
        obj.put(DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(class),
        ));
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .media_storage_sop_class_uid(class)
            .media_storage_sop_instance_uid("1.2.3.4")
            .build()
            .unwrap();
        obj.with_exact_meta(meta)
    }

    #[test]
    fn a_chest_film_passes_and_cross_sections_reports_and_private_words_are_told_apart() {
        assert!(check_projection(&object("CR", uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE)).is_ok());
        assert!(check_projection(&object("DX", uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION)).is_ok());
        assert!(check_projection(&object("OT", uids::SECONDARY_CAPTURE_IMAGE_STORAGE)).is_ok());
        // a vendor's own word and a private class are left to the lung-field check
        assert!(check_projection(&object("DR", "1.2.3.999.1")).is_ok());

        let ct = check_projection(&object("CT", uids::CT_IMAGE_STORAGE)).unwrap_err();
        assert_eq!(ct.kind, ErrorKind::NotChest);
        assert!(ct.reason.contains("Modality CT (computed tomography)"), "{}", ct.reason);
        // a CT image relabelled by a converter: its class still says so
        let relabelled = check_projection(&object("OT", uids::CT_IMAGE_STORAGE)).unwrap_err();
        assert!(
            relabelled.reason.contains("SOP class CT Image Storage"),
            "{}",
            relabelled.reason
        );
        let seg = check_projection(&object("", uids::SEGMENTATION_STORAGE)).unwrap_err();
        assert!(seg.reason.contains("Segmentation Storage"), "{}", seg.reason);
        assert!(check_projection(&object("mr", uids::MR_IMAGE_STORAGE)).is_err());
    }
}
