//! Reaching the broker: the client's settings (who ptxd is, its last will), TLS and
//! credentials read once from the config's files, and the doctor's check.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, Incoming, LastWill, MqttOptions, QoS, RecvTimeoutError, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::MqttConfig;

use super::session::Status;
use super::MqttError;

/// The largest packet either way: a record is a few hundred bytes, a command a line.
const MAX_PACKET: usize = 64 * 1024;

/// The client's settings: who ptxd is, its last will, TLS and credentials.
pub(super) fn options(mqtt: &MqttConfig, secrets: &Secrets) -> MqttOptions {
    let id = mqtt.device_id.as_str();
    let mut options = MqttOptions::new(format!("ptxd-{id}"), mqtt.broker.host(), mqtt.broker.port());
    options
        .set_keep_alive(Duration::from_secs(mqtt.keep_alive_s.get()))
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_last_will(LastWill::new(
            mqtt.topic("status"),
            serde_json::to_vec(&Status::offline(id)).expect("serializes"),
            QoS::AtLeastOnce,
            true,
        ));
    if let Some((user, password)) = &secrets.credentials {
        options.set_credentials(user, password);
    }
    if let Some(tls) = &secrets.tls {
        options.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls.clone())));
    }
    options
}

/// What the config's files hold, read once at start: a wrong path or a bad certificate
/// stops start-up with its name, rather than failing every connection.
#[derive(Clone)]
pub struct Secrets {
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The user name and the first line of `password_file`.
    credentials: Option<(String, String)>,
}

impl Secrets {
    pub fn load(mqtt: &MqttConfig) -> Result<Secrets, MqttError> {
        let credentials = match (&mqtt.username, &mqtt.password_file) {
            (Some(user), Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|source| MqttError::File {
                    path: path.clone(),
                    source,
                })?;
                Some((user.clone(), text.lines().next().unwrap_or_default().to_string()))
            }
            _ => None,
        };
        Ok(Secrets {
            tls: tls_config(mqtt)?,
            credentials,
        })
    }
}

/// The TLS client settings `mqtt` asks for (None for plain text on loopback): the roots
/// from `ca_file` or the system, and the client certificate when one is given.
fn tls_config(mqtt: &MqttConfig) -> Result<Option<Arc<rustls::ClientConfig>>, MqttError> {
    if !mqtt.tls {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    match &mqtt.ca_file {
        Some(path) => {
            for cert in pem_certificates(path)? {
                roots.add(cert).map_err(|e| MqttError::Pem {
                    path: path.clone(),
                    reason: format!("not a CA certificate: {e}"),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    if roots.is_empty() {
        return Err(MqttError::NoRoots);
    }
    // ring, not rustls's aws-lc default (C built by cmake for every target); rustls 0.23.48
    // marks it deprecated for its lack of post-quantum key exchange, which a clinic's broker
    // does not offer today
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(MqttError::Tls)?
        .with_root_certificates(roots);
    let config = match (&mqtt.client_cert, &mqtt.client_key) {
        (Some(cert), Some(key)) => {
            let chain = pem_certificates(cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| MqttError::Pem {
                path: key.clone(),
                reason: format!("no private key read: {e}"),
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| MqttError::Pem {
                    path: cert.clone(),
                    reason: format!("cannot be the client certificate with {}: {e}", key.display()),
                })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

/// Every certificate in a PEM file; none is an error.
fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, MqttError> {
    let pem = |reason: String| MqttError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// What `ptxd doctor` learns of the broker: it connects as ptxd would (TLS, credentials),
/// subscribes to the device's own status topic and reads the retained status, if any.
pub fn check_broker(mqtt: &MqttConfig, wait: Duration) -> Result<Option<String>, MqttError> {
    let broker = mqtt.broker.to_string();
    let mut probe = mqtt.clone();
    // its own client id: the broker would otherwise drop the running service to let it in
    probe.device_id = crate::config::DeviceId::try_from(format!("{}-doctor", mqtt.device_id.as_str()))
        .unwrap_or_else(|_| mqtt.device_id.clone());
    let mut options = options(&probe, &Secrets::load(mqtt)?);
    // no last will: the doctor leaving must not mark the device offline
    options.set_last_will(LastWill::new(mqtt.topic("doctor"), Vec::new(), QoS::AtMostOnce, false));
    let (client, mut connection) = Client::new(options, 4);
    let _ = client.try_subscribe(mqtt.topic("status"), QoS::AtLeastOnce);
    let until = Instant::now() + wait;
    let mut subscribed = false;
    let mut status = None;
    while Instant::now() < until {
        match connection.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(Event::Incoming(Incoming::SubAck(_)))) => {
                subscribed = true;
                // a retained status comes right after the SUBACK, if there is one
                let settle = Instant::now() + Duration::from_millis(500);
                while status.is_none() && Instant::now() < settle {
                    if let Ok(Ok(Event::Incoming(Incoming::Publish(p)))) =
                        connection.recv_timeout(Duration::from_millis(100))
                    {
                        status = Some(String::from_utf8_lossy(&p.payload).into_owned());
                    }
                }
                break;
            }
            Ok(Ok(Event::Incoming(Incoming::Publish(p)))) => {
                status = Some(String::from_utf8_lossy(&p.payload).into_owned());
            }
            Ok(Ok(_)) | Err(RecvTimeoutError::Timeout) => {}
            Ok(Err(source)) => {
                return Err(MqttError::Connection {
                    broker,
                    source: Box::new(source),
                })
            }
            Err(RecvTimeoutError::Disconnected) => return Err(MqttError::Closed(broker)),
        }
    }
    let _ = client.try_disconnect();
    let _ = connection.recv_timeout(Duration::from_millis(200));
    match subscribed {
        true => Ok(status),
        false => Err(MqttError::NoAnswer(broker, wait)),
    }
}
