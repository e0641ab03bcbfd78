//! The links to other machines: the host's serial line (`[serial]`), the DICOM listener
//! (`[dicom]`) and the clinic's PACS (`[pacs]`).

use std::num::NonZeroU64;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    /// The serial device, e.g. "/dev/ttyS0" or "/dev/ttyUSB0".
    pub port: PathBuf,
    /// Baud rate (8N1, no flow control). Default 115200.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// First resend of an unacknowledged result after this long; doubled each time. Default 2000.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: NonZeroU64,
    /// The longest wait between resends. Default 60000.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: NonZeroU64,
    /// A status frame this often. Default 30.
    #[serde(default = "default_heartbeat_s")]
    pub heartbeat_s: NonZeroU64,
    /// After an unplug or an error the port is reopened after 1 s, doubling up to this.
    /// Default 30000.
    #[serde(default = "default_reopen_max_ms")]
    pub reopen_max_ms: NonZeroU64,
    /// Where the host's ACKs are kept. Default: `acks.json` beside the journal.
    pub acks: Option<PathBuf>,
    /// The name ptxd gives itself in `hello`. Default "ptxd".
    #[serde(default = "default_device_id")]
    pub device_id: String,
}

fn default_baud() -> u32 {
    115_200
}
fn default_ack_timeout_ms() -> NonZeroU64 {
    NonZeroU64::new(2000).expect("not zero")
}
fn default_max_backoff_ms() -> NonZeroU64 {
    NonZeroU64::new(60_000).expect("not zero")
}
fn default_heartbeat_s() -> NonZeroU64 {
    NonZeroU64::new(30).expect("not zero")
}
fn default_reopen_max_ms() -> NonZeroU64 {
    NonZeroU64::new(30_000).expect("not zero")
}
fn default_device_id() -> String {
    "ptxd".into()
}

/// `[pacs]`: the DICOM results of `output.dicom_dir` are stored there (`crate::sink::pacs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacsConfig {
    /// The PACS's host and DICOM port, e.g. "192.168.1.20:104".
    pub address: String,
    /// The PACS's AE title (the called AE title).
    pub ae_title: AeTitle,
    /// The AE title ptxd calls with, which the PACS must know. Default "PTXD".
    #[serde(default = "default_calling_ae_title")]
    pub calling_ae_title: AeTitle,
    /// First retry after 1 s, doubling up to this. Default 60000.
    #[serde(default = "default_pacs_retry_max_ms")]
    pub retry_max_ms: NonZeroU64,
    /// Connection, read and write timeout, seconds. Default 30.
    #[serde(default = "default_dicom_timeout_s")]
    pub timeout_s: NonZeroU64,
}

fn default_calling_ae_title() -> AeTitle {
    AeTitle("PTXD".into())
}

fn default_pacs_retry_max_ms() -> NonZeroU64 {
    NonZeroU64::new(60_000).expect("not zero")
}

/// `[dicom]`: images received over the network are written into the watch folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomConfig {
    /// Address and port to listen on, e.g. "0.0.0.0:11112" (port 0: any free one).
    pub listen: std::net::SocketAddr,
    /// ptxd's own AE title, which modalities call.
    pub ae_title: AeTitle,
    /// The calling AE titles accepted (the digitizers'); empty or absent: any.
    #[serde(default)]
    pub allowed_calling: Vec<AeTitle>,
    /// A silent peer is dropped after this many seconds. Default 30.
    #[serde(default = "default_dicom_timeout_s")]
    pub timeout_s: NonZeroU64,
    /// The longest one association may last, seconds: a peer that sends a byte now and then
    /// (never silent for `timeout_s`) would otherwise hold the listener, which serves one
    /// association at a time, for ever. Default 600 (a 50 MB radiograph at 1 Mbit/s takes
    /// 400 s).
    #[serde(default = "default_association_max_s")]
    pub association_max_s: NonZeroU64,
}

fn default_association_max_s() -> NonZeroU64 {
    NonZeroU64::new(600).expect("not zero")
}

fn default_dicom_timeout_s() -> NonZeroU64 {
    NonZeroU64::new(30).expect("not zero")
}

/// A DICOM application entity title: 1 to 16 characters of printable ASCII, no backslash,
/// not only spaces (PS3.5 AE value representation); kept without its padding.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AeTitle(String);

impl AeTitle {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AeTitle {
    type Error = String;
    fn try_from(text: String) -> Result<AeTitle, String> {
        let trimmed = text.trim();
        let printable = trimmed.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\');
        if trimmed.is_empty() || trimmed.len() > 16 || !printable {
            return Err(format!(
                "AE title {text:?}: use 1 to 16 printable ASCII characters, no backslash (e.g. \"PTXD\")"
            ));
        }
        Ok(AeTitle(trimmed.to_string()))
    }
}

impl std::fmt::Display for AeTitle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
