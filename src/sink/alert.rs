//! The alert: an LED and a buzzer that pulse on a positive result until someone acknowledges
//! it, and the acknowledge and trigger buttons.
//!
//! [`Alert`] is the logic, over any `embedded-hal` pins, so the same code drives GPIO
//! character-device lines on a board and pins in memory in the tests. It is ticked every
//! few milliseconds: it toggles the outputs on the pulse period and debounces the buttons
//! (a press counts once the line held its new level for the debounce time).
//!
//! [`AlertService`] runs it on a thread with lines from `/dev/gpiochipN`. A machine with no
//! gpiochip (or with lines it cannot have) gets one log line and no alert: results are still
//! journaled, shown and reported, which matters more than the buzzer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use embedded_hal::digital::{InputPin, OutputPin};
use linux_embedded_hal::CdevPin;
use thiserror::Error;

use crate::analysis::findings::Verdict;
use crate::base::worker::Worker;
use crate::config::{GpioConfig, LineId};
use crate::hw::gpio::{input_line, open_chip, output_line, GpioError};
use crate::sink::{Delivery, Sink, SinkError};

/// How often the service looks at the buttons and the pulse.
const TICK: Duration = Duration::from_millis(5);

/// Something a button asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Press {
    /// The radiographer has seen the result.
    Ack,
    /// Analyze the current capture frame now.
    Trigger,
}

/// Timings and polarity.
#[derive(Debug, Clone, Copy)]
pub struct AlertTiming {
    /// The outputs are on for this long, then off for this long.
    pub pulse: Duration,
    pub debounce: Duration,
    /// A pressed button reads low.
    pub active_low: bool,
}

/// A debounced button.
struct Button<I> {
    pin: I,
    /// The accepted level (true = pressed).
    pressed: bool,
    /// A different level seen since this instant.
    changing: Option<Instant>,
}

impl<I: InputPin> Button<I> {
    /// Some(true) on the press edge.
    fn sample(&mut self, now: Instant, timing: &AlertTiming) -> bool {
        // a read error reads as "not pressed": a flaky line must not fire presses
        let level = self.pin.is_high().unwrap_or(timing.active_low);
        let pressed = level != timing.active_low;
        if pressed == self.pressed {
            self.changing = None;
            return false;
        }
        let since = *self.changing.get_or_insert(now);
        if now.duration_since(since) < timing.debounce {
            return false;
        }
        self.pressed = pressed;
        self.changing = None;
        pressed
    }
}

/// The alert outputs and the buttons.
pub struct Alert<O, I> {
    led: Option<O>,
    buzzer: Option<O>,
    ack: Option<Button<I>>,
    trigger: Option<Button<I>>,
    timing: AlertTiming,
    /// The result being alerted, and when the alert began.
    raised: Option<(u64, Instant)>,
    on: bool,
}

impl<O: OutputPin, I: InputPin> Alert<O, I> {
    pub fn new(led: Option<O>, buzzer: Option<O>, ack: Option<I>, trigger: Option<I>, timing: AlertTiming) -> Self {
        let button = |pin| Button {
            pin,
            pressed: false,
            changing: None,
        };
        let mut alert = Alert {
            led,
            buzzer,
            ack: ack.map(button),
            trigger: trigger.map(button),
            timing,
            raised: None,
            on: true,
        };
        alert.set(false);
        alert
    }

    /// Start alerting for result `seq` (a positive).
    pub fn raise(&mut self, seq: u64, now: Instant) {
        self.raised = Some((seq, now));
        self.set(true);
    }

    /// Stop alerting (if the alert is for `seq`, or for anything when None).
    pub fn clear(&mut self, seq: Option<u64>) {
        if self.raised.is_some_and(|(s, _)| seq.is_none_or(|q| q == s)) {
            self.raised = None;
            self.set(false);
        }
    }

    /// The result being alerted.
    pub fn raised(&self) -> Option<u64> {
        self.raised.map(|(s, _)| s)
    }

    /// Drive the pulse and read the buttons. An ack press also clears the alert.
    pub fn tick(&mut self, now: Instant) -> Vec<Press> {
        if let Some((_, since)) = self.raised {
            let half = self.timing.pulse.as_millis().max(1);
            let phase = now.duration_since(since).as_millis() / half;
            self.set(phase % 2 == 0);
        }
        let mut presses = Vec::new();
        let timing = self.timing;
        if self.ack.as_mut().is_some_and(|b| b.sample(now, &timing)) {
            self.clear(None);
            presses.push(Press::Ack);
        }
        if self.trigger.as_mut().is_some_and(|b| b.sample(now, &timing)) {
            presses.push(Press::Trigger);
        }
        presses
    }

    fn set(&mut self, on: bool) {
        if on == self.on {
            return;
        }
        self.on = on;
        for pin in [&mut self.led, &mut self.buzzer].into_iter().flatten() {
            // an output that fails to switch cannot be helped here; the screen still shows it
            let _ = if on { pin.set_high() } else { pin.set_low() };
        }
    }
}

enum Command {
    Raise(u64),
    Clear(Option<u64>),
}

/// The alert on its own thread, over GPIO character-device lines.
pub struct AlertService {
    commands: mpsc::Sender<Command>,
    _worker: Worker,
}

impl AlertService {
    /// Request the configured lines and start; None (after one log line) when the chip or a
    /// line is unavailable. Button presses are sent to `presses`.
    pub fn start(config: &GpioConfig, presses: mpsc::Sender<Press>) -> Option<AlertService> {
        let alert = match open_lines(config) {
            Ok(alert) => alert,
            Err(e) => {
                log::warn!("gpio: {e}; the LED/buzzer alert and the buttons are off");
                return None;
            }
        };
        let (commands, inbox) = mpsc::channel();
        let worker = Worker::spawn("alert", move |stop| run(alert, &inbox, &presses, stop))
            .map_err(|e| log::warn!("gpio: cannot start the alert thread: {e}"))
            .ok()?;
        log::info!("gpio {}: alert lines ready", config.chip.display());
        Some(AlertService {
            commands,
            _worker: worker,
        })
    }

    /// Stop the alert for `seq` (None: whatever is alerting).
    pub fn clear(&self, seq: Option<u64>) {
        let _ = self.commands.send(Command::Clear(seq));
    }
}

/// A positive result raises the alert; nothing else does (an indeterminate one holds the
/// screen in amber, without the buzzer).
impl Sink for AlertService {
    fn name(&self) -> &'static str {
        "alert"
    }

    fn deliver(&mut self, d: &Delivery<'_>) -> Result<(), SinkError> {
        if d.record.verdict != Verdict::Positive {
            return Ok(());
        }
        self.commands
            .send(Command::Raise(d.record.seq))
            .map_err(|_| SinkError("the alert thread has stopped; restart ptxd to get the LED and buzzer back".into()))
    }
}

fn run(
    mut alert: Alert<CdevPin, CdevPin>,
    inbox: &mpsc::Receiver<Command>,
    presses: &mpsc::Sender<Press>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        while let Ok(command) = inbox.try_recv() {
            match command {
                Command::Raise(seq) => alert.raise(seq, Instant::now()),
                Command::Clear(seq) => alert.clear(seq),
            }
        }
        for press in alert.tick(Instant::now()) {
            let _ = presses.send(press);
        }
        std::thread::sleep(TICK);
    }
    alert.clear(None);
}

/// Why the alert lines could not be had: the chip, or one configured line.
#[derive(Debug, Error)]
pub enum AlertSetupError {
    #[error(transparent)]
    Chip(#[from] GpioError),
    /// `what` is the line's use: "led", "buzzer", "ack" or "trigger".
    #[error("{what} {source}")]
    Line { what: &'static str, source: GpioError },
}

fn open_lines(config: &GpioConfig) -> Result<Alert<CdevPin, CdevPin>, AlertSetupError> {
    let mut chip = open_chip(&config.chip)?;
    let mut output = |line: &Option<LineId>, what: &'static str| -> Result<Option<CdevPin>, AlertSetupError> {
        line.as_ref()
            .map(|l| {
                output_line(&mut chip, l, 0, &format!("ptxd-{what}"))
                    .map_err(|source| AlertSetupError::Line { what, source })
            })
            .transpose()
    };
    let led = output(&config.led, "led")?;
    let buzzer = output(&config.buzzer, "buzzer")?;
    let mut input = |line: &Option<LineId>, what: &'static str| -> Result<Option<CdevPin>, AlertSetupError> {
        line.as_ref()
            .map(|l| {
                input_line(&mut chip, l, &format!("ptxd-{what}"))
                    .map_err(|source| AlertSetupError::Line { what, source })
            })
            .transpose()
    };
    let ack = input(&config.ack_button, "ack")?;
    let trigger = input(&config.trigger_button, "trigger")?;
    Ok(Alert::new(
        led,
        buzzer,
        ack,
        trigger,
        AlertTiming {
            pulse: Duration::from_millis(config.pulse_ms.get()),
            debounce: Duration::from_millis(config.debounce_ms.get()),
            active_low: config.buttons_active_low,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::convert::Infallible;
    use std::rc::Rc;

    /// A pin in memory: a shared level the test sets or reads.
    #[derive(Clone, Default)]
    struct Wire(Rc<Cell<bool>>);

    impl embedded_hal::digital::ErrorType for Wire {
        type Error = Infallible;
    }
    impl OutputPin for Wire {
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.0.set(false);
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.0.set(true);
            Ok(())
        }
    }
    impl InputPin for Wire {
        fn is_high(&mut self) -> Result<bool, Infallible> {
            Ok(self.0.get())
        }
        fn is_low(&mut self) -> Result<bool, Infallible> {
            Ok(!self.0.get())
        }
    }

    const TIMING: AlertTiming = AlertTiming {
        pulse: Duration::from_millis(500),
        debounce: Duration::from_millis(30),
        active_low: true,
    };

    fn rig() -> (Alert<Wire, Wire>, Wire, Wire, Wire, Wire) {
        let (led, buzzer, ack, trigger) = (Wire::default(), Wire::default(), Wire::default(), Wire::default());
        // buttons are pulled up: released reads high
        ack.0.set(true);
        trigger.0.set(true);
        let alert = Alert::new(
            Some(led.clone()),
            Some(buzzer.clone()),
            Some(ack.clone()),
            Some(trigger.clone()),
            TIMING,
        );
        (alert, led, buzzer, ack, trigger)
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_positive_pulses_until_the_button_acknowledges_it() {
        let (mut alert, led, buzzer, ack, _) = rig();
        let t0 = Instant::now();
        assert!(!led.0.get() && !buzzer.0.get());
        alert.raise(7, t0);
        let mut seen = Vec::new();
        for t in (0..2000).step_by(100) {
            assert!(alert.tick(ms(t0, t)).is_empty());
            assert_eq!(led.0.get(), buzzer.0.get());
            seen.push(led.0.get());
        }
        // on 500 ms, off 500 ms
        assert_eq!(seen.iter().filter(|&&on| on).count(), 10);
        assert!(seen[0] && !seen[5] && seen[10]);
        // a 10 ms bounce is ignored
        ack.0.set(false);
        assert!(alert.tick(ms(t0, 2000)).is_empty());
        ack.0.set(true);
        assert!(alert.tick(ms(t0, 2010)).is_empty());
        assert_eq!(alert.raised(), Some(7));
        // a press held past the debounce time counts once
        ack.0.set(false);
        alert.tick(ms(t0, 2100));
        assert_eq!(alert.tick(ms(t0, 2140)), [Press::Ack]);
        assert!(alert.tick(ms(t0, 2500)).is_empty(), "held: still one press");
        assert_eq!(alert.raised(), None);
        assert!(!led.0.get() && !buzzer.0.get());
    }

    #[test]
    fn the_host_acknowledging_that_result_stops_it_but_not_another() {
        let (mut alert, led, _, _, _) = rig();
        let t0 = Instant::now();
        alert.raise(3, t0);
        alert.clear(Some(2));
        alert.tick(ms(t0, 10));
        assert!(led.0.get(), "ACK for an older result leaves the alert on");
        alert.clear(Some(3));
        alert.tick(ms(t0, 20));
        assert!(!led.0.get());
    }

    #[test]
    fn the_trigger_button_reports_presses_without_touching_the_alert() {
        let (mut alert, _, _, _, trigger) = rig();
        let t0 = Instant::now();
        alert.raise(1, t0);
        trigger.0.set(false);
        alert.tick(ms(t0, 0));
        assert_eq!(alert.tick(ms(t0, 40)), [Press::Trigger]);
        assert_eq!(alert.raised(), Some(1));
    }

    #[test]
    fn no_gpiochip_means_no_alert_and_one_warning() {
        let config = GpioConfig {
            chip: "/dev/gpiochip-not-here".into(),
            led: Some(LineId::Offset(17)),
            buzzer: None,
            ack_button: None,
            trigger_button: None,
            buttons_active_low: true,
            pulse_ms: std::num::NonZeroU64::new(500).unwrap(),
            debounce_ms: std::num::NonZeroU64::new(30).unwrap(),
        };
        let err = open_lines(&config).err().unwrap().to_string();
        assert!(
            err.contains("gpiochip-not-here") && err.contains("does not exist"),
            "{err}"
        );
        let (tx, _rx) = mpsc::channel();
        assert!(AlertService::start(&config, tx).is_none());
    }
}
