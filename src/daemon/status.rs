//! Between files: the host's (and the MQTT broker's) commands and the buttons answered, and
//! the service's state told to the link, the broker, systemd and the idle screen when it
//! changes.

use std::time::Instant;

use crate::base::outcome::{ErrorReason, ServiceState};
use crate::input::capture::CaptureState;
use crate::record::journal::Record;
use crate::record::render::StatusView;
use crate::sink::alert::Press;
use crate::sink::{mqtt, serial};

use super::Daemon;

/// What is known of the serial link: a port can open with no cable in it, so "up" waits
/// for a line from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkState {
    Down,
    PortOpen,
    HostSeen,
}

impl Daemon {
    /// Answer what the host and the buttons asked for since the last look.
    pub(super) fn serve_events(&mut self) {
        while let Ok(event) = self.link_events.try_recv() {
            match event {
                serial::Event::Trigger => self.trigger("host"),
                serial::Event::Acked(seq) => {
                    if let Some(alert) = &self.alert {
                        alert.clear(Some(seq));
                    }
                    if let Some(screen) = &mut self.screen {
                        screen.acknowledged_by_host(seq);
                    }
                }
                serial::Event::Up => self.link_state = LinkState::PortOpen,
                serial::Event::HostSeen => self.link_state = LinkState::HostSeen,
                serial::Event::Down => self.link_state = LinkState::Down,
            }
        }
        while let Ok(request) = self.uplink_requests.try_recv() {
            match request {
                mqtt::Request::Trigger => self.trigger("MQTT broker"),
            }
        }
        while let Ok(press) = self.presses.try_recv() {
            match press {
                Press::Trigger => self.trigger("button"),
                Press::Ack => {
                    log::info!("ACK button: result acknowledged on the device");
                    if let Some(screen) = &mut self.screen {
                        // the next waiting result, or the idle screen, at the next refresh
                        screen.acknowledge_shown(Instant::now());
                    }
                }
            }
        }
        if let Some(capture) = &self.capture {
            let state = capture.state();
            if state != self.capture_state {
                if state == CaptureState::Lost {
                    if let Some(link) = &self.link {
                        let device = self.config.capture.as_ref().map(|c| c.device.display().to_string());
                        link.send_error(
                            ErrorReason::CaptureLost,
                            &format!("{}: device lost, retrying", device.unwrap_or_default()),
                        );
                    }
                }
                self.capture_state = state;
            }
        }
    }

    /// Analyze the current capture frame now (a TRIGGER from the host or the button).
    fn trigger(&self, from: &str) {
        let problem = match (&self.capture, self.capture_state) {
            (Some(capture), CaptureState::Streaming) => {
                log::info!("trigger from the {from}: taking the next frame");
                capture.trigger();
                return;
            }
            (Some(_), _) => "the capture device is not streaming (lost or still opening)",
            (None, _) => "no capture device is configured",
        };
        log::warn!("trigger from the {from} ignored: {problem}");
        if let Some(link) = &self.link {
            link.send_error(ErrorReason::NoCapture, &format!("TRIGGER: {problem}"));
        }
    }

    /// The idle screen's facts now.
    fn status(&self) -> StatusView {
        let capture = match (&self.config.capture, self.capture_state) {
            (None, _) => "not configured".to_string(),
            (Some(c), CaptureState::Streaming) => format!("{} streaming", c.device.display()),
            (Some(c), CaptureState::Opening) => format!("{} opening", c.device.display()),
            (Some(c), CaptureState::Lost) => format!("{} LOST, retrying", c.device.display()),
        };
        let link = match (&self.link, self.link_state) {
            (None, _) => "not configured",
            (Some(_), LinkState::HostSeen) => "up, host seen",
            (Some(_), LinkState::PortOpen) => "port open, no host seen yet",
            (Some(_), LinkState::Down) => "DOWN (results wait in the journal)",
        };
        let v = self.analyzer.versions();
        let state = match (&self.stalled, self.capture_state) {
            (Some(stalled), _) => stalled.why.state,
            (None, CaptureState::Lost) => ServiceState::CaptureLost,
            (None, _) => ServiceState::Ready,
        };
        StatusView {
            state,
            problem: self.stalled.as_ref().map(|s| s.why.advice()),
            models: format!("{} / {}", v.classifier, v.segmenter),
            queue: self.queue,
            last_result: self.last_result.clone(),
            link: link.into(),
            capture,
        }
    }

    /// Tell the link and systemd the state when it changed; let the screen draw what is due.
    pub(super) fn refresh_status(&mut self) {
        let view = self.status();
        if self
            .last_status
            .as_ref()
            .is_none_or(|s| (s.state, s.queue) != (view.state, view.queue))
        {
            if let Some(link) = &self.link {
                link.set_status(view.queue, view.state);
            }
            if let Some(uplink) = &self.uplink {
                uplink.set_status(view.queue, view.state);
            }
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(view.state.banner())]);
        }
        self.last_status = Some(view.clone());
        if let Some(screen) = &mut self.screen {
            screen.refresh(view, Instant::now());
        }
    }
}

/// "#12 2026-11-26T19:03:04Z positive" for the idle screen: the contract's words.
pub(super) fn summary_line(r: &Record) -> String {
    format!("#{} {} {}", r.seq, r.time, r.verdict)
}
