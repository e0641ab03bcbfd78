//! The links to other machines: the host's serial line (`[serial]`), the DICOM listener
//! (`[dicom]`) and the clinic's PACS (`[pacs]`).

use std::num::NonZeroU64;
use std::path::PathBuf;

use serde::Deserialize;

use super::yes;

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
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: NonZeroU64,
    /// Connection, read and write timeout, seconds. Default 30.
    #[serde(default = "default_dicom_timeout_s")]
    pub timeout_s: NonZeroU64,
}

fn default_calling_ae_title() -> AeTitle {
    AeTitle("PTXD".into())
}

fn default_retry_max_ms() -> NonZeroU64 {
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

/// `[mqtt]`: every result, and the service's status, published to an MQTT broker
/// (`crate::sink::mqtt`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// The broker's host and port, e.g. "broker.clinic.lan:8883".
    pub broker: Broker,
    /// The device's name in the topics (`ptxd/<device_id>/...`). Default: the host name.
    #[serde(default = "DeviceId::from_hostname")]
    pub device_id: DeviceId,
    /// TLS to the broker. Default true; false is allowed only for a broker on loopback.
    #[serde(default = "yes")]
    pub tls: bool,
    /// The CA certificates (PEM) the broker's certificate must chain to. Default: the
    /// system's (`/etc/ssl/certs`).
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) and its key, for brokers that ask for one; both or neither.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The user name the broker knows ptxd by, with `password_file` (its first line).
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Whether `REPLAY n`, `TRIGGER` and `STATUS` on `ptxd/<device_id>/command` are obeyed.
    /// Who may publish there is the broker's access list, as the cable is the serial host's.
    /// Default true.
    #[serde(default = "yes")]
    pub commands: bool,
    /// The broker drops ptxd (and publishes its last will) after 1.5 times this without a
    /// packet. Default 30.
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: NonZeroU64,
    /// The retained status is published again this often (disk and queue change). Default 60.
    #[serde(default = "default_status_s")]
    pub status_s: NonZeroU64,
    /// After a failure the broker is tried again after 1 s, doubling up to this. Default 60000.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: NonZeroU64,
}

fn default_keep_alive_s() -> NonZeroU64 {
    NonZeroU64::new(30).expect("not zero")
}
fn default_status_s() -> NonZeroU64 {
    NonZeroU64::new(60).expect("not zero")
}

/// Why an `[mqtt]` section cannot be used as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MqttRule {
    #[error("mqtt: tls = false sends results in plain text; it is allowed only for a broker on loopback (127.0.0.1, ::1, localhost), not {0}")]
    PlainTextOffLoopback(String),
    #[error("mqtt: give both client_cert and client_key, or neither")]
    HalfAClientCertificate,
    #[error("mqtt: give both username and password_file, or neither")]
    HalfACredential,
}

impl MqttConfig {
    pub(super) fn check(&self) -> Result<(), MqttRule> {
        if !self.tls && !self.broker.is_loopback() {
            return Err(MqttRule::PlainTextOffLoopback(self.broker.to_string()));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(MqttRule::HalfAClientCertificate);
        }
        if self.username.is_some() != self.password_file.is_some() {
            return Err(MqttRule::HalfACredential);
        }
        Ok(())
    }

    /// `ptxd/<device_id>/<leaf>`.
    pub fn topic(&self, leaf: &str) -> String {
        format!("ptxd/{}/{leaf}", self.device_id.as_str())
    }
}

/// A broker's address: a host name or IP address, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Broker {
    host: String,
    port: u16,
}

impl Broker {
    pub fn host(&self) -> &str {
        &self.host
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    /// On this machine: 127.0.0.0/8, ::1 or "localhost".
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl TryFrom<String> for Broker {
    type Error = String;
    fn try_from(text: String) -> Result<Broker, String> {
        let bad =
            || format!("broker {text:?}: give a host and a port, e.g. \"broker.clinic.lan:8883\" or \"[::1]:8883\"");
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse().map_err(|_| bad())?;
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(Broker {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}", self.host, self.port),
            false => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// A device's name in MQTT topics: 1 to 64 of letters, digits, `-`, `_` and `.` (no `/`,
/// `+` or `#`, which would change the topic's meaning).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct DeviceId(String);

impl DeviceId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The machine's host name, or "ptxd" when it has none usable as a device id.
    fn from_hostname() -> DeviceId {
        let mut buf = [0u8; 256];
        // SAFETY: buf is writable for its length; gethostname writes a NUL-terminated name
        // (truncated to the buffer) and returns 0 on success.
        let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
        let name = match ok {
            true => String::from_utf8_lossy(buf.split(|&b| b == 0).next().unwrap_or_default()).into_owned(),
            false => String::new(),
        };
        DeviceId::try_from(name).unwrap_or_else(|_| DeviceId("ptxd".into()))
    }
}

impl TryFrom<String> for DeviceId {
    type Error = String;
    fn try_from(text: String) -> Result<DeviceId, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if text.is_empty() || text.len() > 64 || !text.chars().all(allowed) {
            return Err(format!(
                "device_id {text:?}: use 1 to 64 letters, digits, '-', '_' or '.' (e.g. \"ward3-xray\")"
            ));
        }
        Ok(DeviceId(text))
    }
}
