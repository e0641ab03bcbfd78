//! The DICOM listener: a modality (the digitizer, a CR reader) sends its radiographs over
//! the network (C-STORE), and checks the link (C-ECHO). Each image is written durably into
//! the watch folder *before* the modality is told "success", so nothing acknowledged is ever
//! lost: the watch folder ([`crate::input::source`]) then takes it like any other file.
//!
//! Decisions:
//! - One association at a time, on one thread: a digitizer sends one image a minute, and a
//!   second modality waits in the TCP backlog rather than competing for the board's memory.
//!   So no association may hold the listener for long: a peer silent for `timeout_s` is
//!   dropped, and any association is cut at `association_max_s` (a peer dripping a byte
//!   every few seconds is never silent that long).
//! - Calling AE titles are checked when `allowed_calling` lists any: others are rejected at
//!   association, with DICOM's "calling AE title not recognized".
//! - Storage is negotiated for the radiograph SOP classes and for the objects a modality may
//!   send along (structured reports, presentation states, PDF), so that those get a clear
//!   refusal in the C-STORE answer (status 0xA900 with an Error Comment) rather than an
//!   anonymous "no presentation context". An image whose Body Part Examined plainly names
//!   another part than the chest (HAND, not THORAX or CHEST_PA) is refused the same way.
//! - The data set is never held beyond [`Limits`]: an association sending more bytes for one
//!   object than an image within the pixel limit needs is aborted.
//! - The received data set is stored as it came, in its transfer syntax, behind a file meta
//!   group made here: no re-encoding, no parse of the pixel data on this thread.

use std::io::Cursor;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use dicom_core::value::PrimitiveValue;
use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};
use dicom_ul::association::server::AccessControl;
use dicom_ul::association::Association;
use dicom_ul::pdu::{AbortRQSource, AssociationRJServiceUserReason, PDataValueType, UserIdentity};
use dicom_ul::{Pdu, ServerAssociation, ServerAssociationOptions};

use crate::base::files::write_durably;
use crate::base::worker::{nap, Worker};
use crate::config::{AeTitle, DicomConfig, Limits};
use crate::input::dimse::{self, UnreadableCommand};

/// Why an association ended before the modality released it. Logged, with the peer; the
/// listener goes on with the next association.
#[derive(Debug, thiserror::Error)]
pub enum AssociationError {
    #[error("{0}")]
    Socket(#[source] std::io::Error),
    #[error("{0}")]
    Network(#[source] Box<dicom_ul::association::Error>),
    #[error(transparent)]
    Command(#[from] UnreadableCommand),
    #[error("command fragments are not supported")]
    FragmentedCommand,
    #[error("{calling} sent more than {max_bytes} bytes for one object, more than any image within input.max_pixels: association aborted")]
    TooLarge { calling: String, max_bytes: usize },
    #[error("still open after {seconds} s (dicom.association_max_s): cut, so that the next modality is served")]
    TooLong { seconds: u64 },
    #[error("a data set came without a C-STORE command")]
    DataWithoutCommand,
    #[error("a data set came on a presentation context never agreed")]
    UnknownContext,
    #[error("cannot answer: {0}")]
    Answer(#[source] Box<dicom_ul::association::Error>),
    #[error("{calling} aborted the association ({by:?})")]
    Aborted { calling: String, by: AbortRQSource },
}

/// Why one object was not stored: the C-STORE status to answer, and the reason, which goes
/// back as the Error Comment (at most 64 characters in DICOM's LO) and into the log.
#[derive(Debug)]
struct Refusal {
    status: u16,
    reason: String,
}

impl Refusal {
    fn refused(reason: impl Into<String>) -> Refusal {
        Refusal {
            status: REFUSED,
            reason: reason.into(),
        }
    }
}

/// The radiograph SOP classes stored and analyzed: CR, DX (for presentation and for
/// processing), and Secondary Capture (digitized film).
const IMAGE_CLASSES: [&str; 4] = [
    uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
];

/// Objects a modality may send along with its images, accepted into the association only
/// to be refused clearly: basic text, enhanced and comprehensive SR, grey presentation
/// state, encapsulated PDF.
const REFUSED_CLASSES: [&str; 5] = [
    uids::BASIC_TEXT_SR_STORAGE,
    uids::ENHANCED_SR_STORAGE,
    uids::COMPREHENSIVE_SR_STORAGE,
    uids::GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    uids::ENCAPSULATED_PDF_STORAGE,
];

/// The transfer syntaxes ptxd decodes (docs/dicom.md), 8- and 12-bit extended JPEG included.
/// Big endian is retired from the standard, and old modalities still send it.
#[allow(deprecated)]
const TRANSFER_SYNTAXES: [&str; 13] = [
    uids::EXPLICIT_VR_LITTLE_ENDIAN,
    uids::IMPLICIT_VR_LITTLE_ENDIAN,
    uids::EXPLICIT_VR_BIG_ENDIAN,
    uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    uids::RLE_LOSSLESS,
    uids::JPEG_BASELINE8_BIT,
    uids::JPEG_EXTENDED12_BIT,
    uids::JPEG_LOSSLESS,
    uids::JPEG_LOSSLESS_SV1,
    uids::JPEGLS_LOSSLESS,
    uids::JPEGLS_NEAR_LOSSLESS,
    uids::JPEG2000_LOSSLESS,
    uids::JPEG2000,
];

/// C-STORE status: stored.
const SUCCESS: u16 = 0x0000;
/// C-STORE status: the data set does not match the SOP class (used for "not a chest
/// radiograph" and "not an image"), with the reason in the Error Comment.
const REFUSED: u16 = 0xA900;
/// C-STORE status: out of resources (the image could not be written: a full disk).
const OUT_OF_RESOURCES: u16 = 0xA700;

/// A running listener; dropping it stops it.
pub struct Listener {
    address: SocketAddr,
    _worker: Worker,
}

impl Listener {
    /// Listen on `config.listen` and store what arrives in `dir` (the watch folder).
    pub fn start(config: DicomConfig, dir: PathBuf, limits: Limits) -> std::io::Result<Listener> {
        let socket = TcpListener::bind(config.listen)?;
        // polled, so that dropping the listener stops the thread within 200 ms
        socket.set_nonblocking(true)?;
        let address = socket.local_addr()?;
        let worker = Worker::spawn("dicom-listener", move |stop| {
            log::info!("DICOM listener: {} on {address}", config.ae_title);
            while !stop.load(Ordering::Relaxed) {
                match socket.accept() {
                    Ok((stream, peer)) => {
                        if let Err(e) = serve_within(stream, &config, &dir, limits) {
                            log::warn!("DICOM association from {peer}: {e}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => nap(Duration::from_millis(200), stop),
                    Err(e) => {
                        log::warn!("DICOM listener on {address}: {e}");
                        nap(Duration::from_secs(1), stop);
                    }
                }
            }
        })?;
        Ok(Listener {
            address,
            _worker: worker,
        })
    }

    /// Where it listens (the port chosen when the config said 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

/// Only the configured calling AE titles, when there are any; and only when they call us.
struct Allowed(Vec<AeTitle>);

impl AccessControl for Allowed {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if called_ae_title.trim() != this_ae_title.trim() {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if !self.0.is_empty() && !self.0.iter().any(|a| a.as_str() == calling_ae_title.trim()) {
            log::warn!(
                "DICOM association refused: calling AE title {calling_ae_title:?} is not in dicom.allowed_calling"
            );
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

/// [`serve`], cut at `association_max_s`: a watchdog shuts the socket down, which ends the
/// blocked read in `serve` with an error.
fn serve_within(stream: TcpStream, config: &DicomConfig, dir: &Path, limits: Limits) -> Result<(), AssociationError> {
    let limit = Duration::from_secs(config.association_max_s.get());
    let socket = stream.try_clone().map_err(AssociationError::Socket)?;
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::Builder::new()
        .name("dicom-deadline".into())
        .spawn(move || {
            // Disconnected (the association ended) or Timeout (it did not)
            if finished.recv_timeout(limit) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                let _ = socket.shutdown(std::net::Shutdown::Both);
                return true;
            }
            false
        })
        .map_err(AssociationError::Socket)?;
    let served = serve(stream, config, dir, limits);
    drop(done);
    let cut = watchdog.join().unwrap_or(false);
    match served {
        Err(_) if cut => Err(AssociationError::TooLong {
            seconds: limit.as_secs(),
        }),
        served => served,
    }
}

/// One association: answer echoes, store images, until the modality releases it.
fn serve(stream: TcpStream, config: &DicomConfig, dir: &Path, limits: Limits) -> Result<(), AssociationError> {
    stream.set_nonblocking(false).map_err(AssociationError::Socket)?;
    let timeout = Duration::from_secs(config.timeout_s.get());
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(Allowed(config.allowed_calling.clone()))
        .ae_title(config.ae_title.as_str())
        .read_timeout(timeout)
        .write_timeout(timeout)
        .with_abstract_syntax(uids::VERIFICATION);
    for class in IMAGE_CLASSES.iter().chain(&REFUSED_CLASSES) {
        options = options.with_abstract_syntax(*class);
    }
    for syntax in TRANSFER_SYNTAXES {
        options = options.with_transfer_syntax(syntax);
    }
    let mut association = options
        .establish(stream)
        .map_err(|e| AssociationError::Network(Box::new(e)))?;
    let calling = association.peer_ae_title().trim().to_string();
    // what the pixel limit allows one object to be (as `decode::read_input` for files)
    let max_bytes = limits.max_file_bytes() as usize;
    let mut command: Option<InMemDicomObject> = None;
    let mut data: Vec<u8> = Vec::new();
    loop {
        let pdu = association
            .receive()
            .map_err(|e| AssociationError::Network(Box::new(e)))?;
        match pdu {
            Pdu::PData { data: values } => {
                for value in values {
                    match value.value_type {
                        PDataValueType::Command if value.is_last => {
                            let cmd = dimse::read_command(&value.data)?;
                            data.clear();
                            if dimse::number(&cmd, tags::COMMAND_FIELD) == Some(dimse::C_ECHO_RQ) {
                                let answer = echo_response(&cmd);
                                send(&mut association, value.presentation_context_id, &answer)?;
                            } else {
                                command = Some(cmd);
                            }
                        }
                        PDataValueType::Command => return Err(AssociationError::FragmentedCommand),
                        PDataValueType::Data => {
                            if data.len() + value.data.len() > max_bytes {
                                let _ = association.abort();
                                return Err(AssociationError::TooLarge { calling, max_bytes });
                            }
                            data.extend_from_slice(&value.data);
                            if value.is_last {
                                let cmd = command.take().ok_or(AssociationError::DataWithoutCommand)?;
                                let syntax = association
                                    .presentation_contexts()
                                    .iter()
                                    .find(|pc| pc.id == value.presentation_context_id)
                                    .map(|pc| pc.transfer_syntax.clone())
                                    .ok_or(AssociationError::UnknownContext)?;
                                let (status, comment) = match store(&cmd, &data, &syntax, dir, limits) {
                                    Ok(path) => {
                                        log::info!("DICOM: stored {} from {calling}", path.display());
                                        (SUCCESS, None)
                                    }
                                    Err(Refusal { status, reason }) => {
                                        log::warn!("DICOM: refused an object from {calling}: {reason}");
                                        (status, Some(reason))
                                    }
                                };
                                let answer = store_response(&cmd, status, comment.as_deref());
                                send(&mut association, value.presentation_context_id, &answer)?;
                                data.clear();
                            }
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => {
                let _ = association.send(&Pdu::ReleaseRP);
                return Ok(());
            }
            Pdu::AbortRQ { source } => return Err(AssociationError::Aborted { calling, by: source }),
            other => log::debug!("DICOM: ignored {}", other.short_description()),
        }
    }
}

/// Store one received object in the watch folder, durably, or say why not.
fn store(
    command: &InMemDicomObject,
    data_set: &[u8],
    syntax: &str,
    dir: &Path,
    limits: Limits,
) -> Result<PathBuf, Refusal> {
    let class = dimse::text(command, tags::AFFECTED_SOP_CLASS_UID);
    let instance = dimse::text(command, tags::AFFECTED_SOP_INSTANCE_UID);
    if !IMAGE_CLASSES.contains(&class.as_str()) {
        return Err(Refusal::refused(format!("not a radiograph (SOP class {class})")));
    }
    // the name is the SOP Instance UID: digits and dots only, so nothing else reaches a path
    if instance.is_empty() || instance.len() > 64 || !instance.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(Refusal::refused("bad SOP Instance UID"));
    }
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(class.as_str())
        .media_storage_sop_instance_uid(instance.as_str())
        .transfer_syntax(syntax)
        .build()
        .map_err(|e| Refusal::refused(format!("no file meta: {e}")))?;
    let mut file = vec![0u8; 128];
    file.extend_from_slice(b"DICM");
    meta.write(&mut file)
        .map_err(|e| Refusal::refused(format!("no file meta: {e}")))?;
    file.extend_from_slice(data_set);
    check_chest(&file, limits)?;
    let path = dir.join(format!("{instance}.dcm"));
    write_durably(&path, &file).map_err(|e| {
        log::error!("DICOM: cannot write {}: {e}", path.display());
        Refusal {
            status: OUT_OF_RESOURCES,
            reason: "cannot store the image (disk full?)".into(),
        }
    })?;
    Ok(path)
}

/// Refuse what is not a chest image: a header that says it is not a projection radiograph
/// (a CT, an MR, a report: `decode::check_projection`), no Rows (not an image), or a Body
/// Part Examined that names another part. Reads the header only (up to the pixel data), after the same length
/// checks as any file (`decode::check_header`).
fn check_chest(file: &[u8], limits: Limits) -> Result<(), Refusal> {
    crate::pixels::decode::check_header(file, limits).map_err(|e| Refusal::refused(e.reason))?;
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .from_reader(Cursor::new(&file[128..]))
        .map_err(|e| Refusal::refused(format!("unreadable data set: {e}")))?;
    crate::pixels::decode::check_projection(&obj).map_err(|e| Refusal::refused(e.reason))?;
    if obj.element_opt(tags::ROWS).ok().flatten().is_none() {
        return Err(Refusal::refused("not an image (no Rows)"));
    }
    let part = obj
        .element_opt(tags::BODY_PART_EXAMINED)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_uppercase()))
        .unwrap_or_default();
    // vendors write the chest in their own words (CHEST, THORAX, TORAX, CHEST_PA, LUNG...);
    // a chest refused here is an image the radiographer must resend, while a non-chest let
    // through is still refused by the lung-field check: only a part that is plainly not the
    // chest is refused
    const CHEST_WORDS: [&str; 5] = ["CHEST", "THORA", "TORA", "LUNG", "PULM"];
    if !(part.is_empty() || CHEST_WORDS.iter().any(|w| part.contains(w))) {
        return Err(Refusal::refused(format!("not a chest radiograph (body part {part})")));
    }
    Ok(())
}

fn send(
    association: &mut ServerAssociation<TcpStream>,
    context: u8,
    command: &InMemDicomObject,
) -> Result<(), AssociationError> {
    association
        .send(&dimse::command_pdu(context, command))
        .map_err(|e| AssociationError::Answer(Box::new(e)))
}

/// The elements every answer to `request` opens with: its SOP class, the response's
/// Command Field, the Message ID answered, no data set, and the status.
fn response(
    request: &InMemDicomObject,
    class: String,
    field: u16,
    status: u16,
) -> Vec<(dicom_core::Tag, VR, PrimitiveValue)> {
    vec![
        (tags::AFFECTED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from(class)),
        (tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(field)),
        (
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            VR::US,
            PrimitiveValue::from(dimse::number(request, tags::MESSAGE_ID).unwrap_or(0)),
        ),
        (
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(dimse::NO_DATA_SET),
        ),
        (tags::STATUS, VR::US, PrimitiveValue::from(status)),
    ]
}

fn echo_response(request: &InMemDicomObject) -> InMemDicomObject {
    dimse::command(response(request, uids::VERIFICATION.into(), dimse::C_ECHO_RSP, SUCCESS))
}

fn store_response(request: &InMemDicomObject, status: u16, comment: Option<&str>) -> InMemDicomObject {
    let class = dimse::text(request, tags::AFFECTED_SOP_CLASS_UID);
    let mut elements = response(request, class, dimse::C_STORE_RSP, status);
    elements.push((
        tags::AFFECTED_SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(dimse::text(request, tags::AFFECTED_SOP_INSTANCE_UID)),
    ));
    if let Some(comment) = comment {
        // LO: 64 characters at most
        let comment: String = comment.chars().take(64).collect();
        elements.push((tags::ERROR_COMMENT, VR::LO, PrimitiveValue::from(comment)));
    }
    dimse::command(elements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};

    /// A small grey DICOM file whose Body Part Examined is `part` (none when empty).
    fn image(part: &str) -> Vec<u8> {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(IMAGE_CLASSES[0]),
        ));
        obj.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.3.4"),
        ));
        if !part.is_empty() {
            obj.put(DataElement::new(
                tags::BODY_PART_EXAMINED,
                VR::CS,
                PrimitiveValue::from(part),
            ));
        }
        obj.put(DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(2u16)));
        obj.put(DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(2u16)));
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(vec![0u8; 4]),
        ));
        let file = obj
            .with_meta(
                FileMetaTableBuilder::new()
                    .media_storage_sop_class_uid(IMAGE_CLASSES[0])
                    .media_storage_sop_instance_uid("1.2.3.4")
                    .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN),
            )
            .unwrap();
        let mut bytes = Vec::new();
        file.write_all(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn the_chest_in_vendors_words_passes_and_plainly_other_parts_are_refused() {
        let limits = Limits::default();
        for part in ["", "CHEST", "THORAX", "TORAX", "CHEST_PA", "chest ap", "LUNG"] {
            assert!(check_chest(&image(part), limits).is_ok(), "{part:?} refused");
        }
        for part in ["HAND", "SKULL", "KNEE"] {
            let Refusal { status, reason: why } = check_chest(&image(part), limits).unwrap_err();
            assert_eq!(status, REFUSED);
            assert!(why.contains(part), "{why}");
        }
    }
}
