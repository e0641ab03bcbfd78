//! DIMSE commands, the messages both sides of ptxd's DICOM networking speak: the listener
//! ([`crate::input::receive`]) answers C-ECHO and C-STORE, the PACS outbox ([`crate::sink::pacs`]) sends
//! them. A command is a small data set, always in implicit VR little endian, carried in one
//! P-DATA value of its own.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::Pdu;

/// Command Field values (PS3.7 E.1).
pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;

/// Command Data Set Type: a data set follows, or none does.
pub const DATA_SET: u16 = 0x0000;
pub const NO_DATA_SET: u16 = 0x0101;

/// A command from its elements (the group length is computed).
pub fn command(elements: impl IntoIterator<Item = (Tag, VR, PrimitiveValue)>) -> InMemDicomObject {
    InMemDicomObject::command_from_element_iter(
        elements
            .into_iter()
            .map(|(tag, vr, value)| DataElement::new(tag, vr, value)),
    )
}

/// The P-DATA PDU carrying `command` on presentation context `context`.
pub fn command_pdu(context: u8, command: &InMemDicomObject) -> Pdu {
    let mut data = Vec::new();
    command
        .write_dataset_with_ts(&mut data, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("a command of text and numbers always encodes");
    Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: context,
            value_type: PDataValueType::Command,
            is_last: true,
            data,
        }],
    }
}

/// A command whose bytes do not parse as implicit VR little endian: the peer does not speak
/// DIMSE as PS3.7 says, and the association cannot go on.
#[derive(Debug, thiserror::Error)]
#[error("unreadable DIMSE command: {0}")]
pub struct UnreadableCommand(#[source] dicom_object::ReadError);

/// A received command's data set.
pub fn read_command(bytes: &[u8]) -> Result<InMemDicomObject, UnreadableCommand> {
    InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased()).map_err(UnreadableCommand)
}

/// A command's US element (Command Field, Message ID, Status), None when absent.
pub fn number(command: &InMemDicomObject, tag: Tag) -> Option<u16> {
    command.element(tag).ok()?.to_int::<u16>().ok()
}

/// A command's text element without its padding; empty when absent.
pub fn text(command: &InMemDicomObject, tag: Tag) -> String {
    command
        .element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .unwrap_or_default()
}

/// The Status of a response.
pub fn status(response: &InMemDicomObject) -> Option<u16> {
    number(response, tags::STATUS)
}
