//! Which result the attached screen shows, and for how long: the policy ([`Presenter`],
//! apart from drawing), and the display as a sink of results ([`Screen`]).
//!
//! - **An alert holds the screen.** A positive or indeterminate result stays on screen until
//!   the ACK button is pressed, or for at least `output.alert_hold_s` seconds. Results that
//!   arrive meanwhile are journaled and reported as always, and wait for the screen. Why: in
//!   a batch the next result came 0.4 s later and replaced the alarm before anyone looked.
//! - **Waiting alerts come first.** When the hold ends, the oldest waiting alert is shown
//!   next (and holds in turn); with none waiting, the newest other result; else the current
//!   one stays until something replaces it.
//! - **The count is on screen.** [`Presenter::badge`] says how many alerts nobody has
//!   acknowledged (by the button, or the host's `ACK` of their result) and how many results
//!   wait, so a radiographer sees that more came in. Where nothing can acknowledge (no ACK
//!   button, no host link) only the waiting results are counted: a count that can only grow
//!   would teach people to ignore it.
//! - **Bounded.** At most [`MAX_WAITING`] drawn screens wait (a full-HD screen is 6 MB);
//!   beyond that the oldest non-alert screen is dropped first. A dropped screen is still in
//!   the journal and the overlay folder, and a dropped alert is still counted.
//!
//! Time is passed in, so the policy is tested without sleeping.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::analysis::findings::Verdict;
use crate::base::logging::Failing;
use crate::config::OverlaySize;
use crate::hw::display::Display;
use crate::record::journal::Record;
use crate::record::render::{self, result_frame, Framebuffer, StatusView};
use crate::sink::{Delivery, Sink, SinkError};

/// Drawn screens kept while the screen is held.
pub const MAX_WAITING: usize = 8;

/// Unacknowledged alerts remembered (the oldest are forgotten beyond it; 9,999 reads "a lot").
pub const MAX_UNACKNOWLEDGED: usize = 9_999;

/// One result's screen, drawn, with what the policy needs to know of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown<F> {
    pub seq: u64,
    /// Positive or indeterminate: holds the screen and is counted until acknowledged.
    pub alert: bool,
    pub frame: F,
}

/// The screen's queue. `F` is the drawn frame (a framebuffer in the daemon).
#[derive(Debug)]
pub struct Presenter<F> {
    hold: Duration,
    /// An ACK button or a host link exists, so alerts can be acknowledged and are counted.
    acknowledgeable: bool,
    current: Option<Shown<F>>,
    /// When the current alert's hold ends; None when the current screen holds nothing.
    held_until: Option<Instant>,
    waiting: VecDeque<Shown<F>>,
    unacknowledged: BTreeSet<u64>,
}

impl<F> Presenter<F> {
    pub fn new(hold: Duration, acknowledgeable: bool) -> Presenter<F> {
        Presenter {
            hold,
            acknowledgeable,
            current: None,
            held_until: None,
            waiting: VecDeque::new(),
            unacknowledged: BTreeSet::new(),
        }
    }

    /// A new result. Returns true when it is to be drawn now (the screen was not held).
    pub fn arrive(&mut self, shown: Shown<F>, now: Instant) -> bool {
        if shown.alert && self.acknowledgeable {
            self.unacknowledged.insert(shown.seq);
            if self.unacknowledged.len() > MAX_UNACKNOWLEDGED {
                self.unacknowledged.pop_first();
            }
        }
        if self.is_held(now) {
            if self.waiting.len() == MAX_WAITING {
                let drop = self.waiting.iter().position(|s| !s.alert).unwrap_or(0);
                self.waiting.remove(drop);
            }
            self.waiting.push_back(shown);
            return false;
        }
        self.put(shown, now);
        true
    }

    /// The ACK button: the result on screen is acknowledged and its hold ends. Returns true
    /// when the screen changed (a waiting result is due, or the idle screen).
    pub fn acknowledge_shown(&mut self, now: Instant) -> bool {
        let Some(current) = self.current.take() else {
            return false;
        };
        self.unacknowledged.remove(&current.seq);
        self.held_until = None;
        if let Some(next) = self.next_waiting() {
            self.put(next, now);
        }
        true
    }

    /// The host acknowledged this result: it no longer counts as unacknowledged. The screen
    /// stays as it is: a host acknowledges within milliseconds, before anyone can look.
    pub fn acknowledged_by_host(&mut self, seq: u64) {
        self.unacknowledged.remove(&seq);
    }

    /// Called often: ends an elapsed hold and brings the next waiting result. Returns true
    /// when the screen changed.
    pub fn tick(&mut self, now: Instant) -> bool {
        if self.is_held(now) || self.waiting.is_empty() {
            return false;
        }
        let next = self.next_waiting().expect("not empty");
        self.put(next, now);
        true
    }

    /// The result on screen, if any (None: the idle screen is due).
    pub fn current(&self) -> Option<&Shown<F>> {
        self.current.as_ref()
    }

    /// The line to draw over the result screen, when there is something to say.
    pub fn badge(&self) -> Option<String> {
        let others = self
            .unacknowledged
            .iter()
            .filter(|&&s| self.current.as_ref().is_none_or(|c| c.seq != s))
            .count();
        let waiting = self.waiting.len();
        let mut parts = Vec::new();
        if others > 0 {
            parts.push(format!("{others} MORE ALERT{} TO ACKNOWLEDGE", plural(others)));
        }
        if waiting > 0 {
            parts.push(format!("{waiting} RESULT{} WAITING", plural(waiting)));
        }
        (!parts.is_empty()).then(|| parts.join(" - "))
    }

    fn is_held(&self, now: Instant) -> bool {
        self.held_until.is_some_and(|until| now < until)
    }

    fn put(&mut self, shown: Shown<F>, now: Instant) {
        self.held_until = shown.alert.then(|| now + self.hold);
        self.current = Some(shown);
    }

    /// The oldest waiting alert, else the newest other result (older ones were superseded:
    /// they are in the journal and the overlay folder).
    fn next_waiting(&mut self) -> Option<Shown<F>> {
        if let Some(i) = self.waiting.iter().position(|s| s.alert) {
            return self.waiting.remove(i);
        }
        let newest = self.waiting.pop_back();
        self.waiting.clear();
        newest
    }
}

/// The attached display as a [`Sink`]: the [`Presenter`]'s policy, the drawing, and the
/// display itself. Results are drawn at the display's size when they arrive; the idle screen
/// when nothing is due.
pub struct Screen {
    display: Box<dyn Display + Send>,
    presenter: Presenter<Framebuffer>,
    /// What is drawn now: the idle screen's facts, or a result's seq with its badge.
    drawn: Drawn,
    /// The idle screen's facts as last given ([`Screen::refresh`]).
    idle: StatusView,
    /// Draws are failing: logged when that starts and ends.
    failing: Failing,
}

#[derive(Debug, Clone, PartialEq)]
enum Drawn {
    Nothing,
    Idle(StatusView),
    Result { seq: u64, badge: Option<String> },
}

impl Screen {
    /// `hold`: how long an alert holds the screen; `acknowledgeable`: an ACK button or a
    /// host link exists (see [`Presenter::new`]).
    pub fn new(display: Box<dyn Display + Send>, hold: Duration, acknowledgeable: bool) -> Screen {
        Screen {
            display,
            presenter: Presenter::new(hold, acknowledgeable),
            drawn: Drawn::Nothing,
            idle: StatusView::default(),
            failing: Failing::default(),
        }
    }

    /// Called often: the idle screen's facts now; ends an elapsed hold and draws what is due.
    pub fn refresh(&mut self, idle: StatusView, now: Instant) {
        self.idle = idle;
        self.presenter.tick(now);
        self.redraw();
    }

    /// The ACK button: the result on screen is acknowledged (the next one, or the idle
    /// screen, is drawn at the next refresh).
    pub fn acknowledge_shown(&mut self, now: Instant) {
        self.presenter.acknowledge_shown(now);
    }

    /// The host acknowledged result `seq`.
    pub fn acknowledged_by_host(&mut self, seq: u64) {
        self.presenter.acknowledged_by_host(seq);
    }

    /// Draw what the presenter says is due, unless the screen shows it already: the current
    /// result with its badge, or the idle screen. A display failure is logged here, once per
    /// run of them, and the draw is tried again at the next refresh: a display that comes
    /// back catches up.
    fn redraw(&mut self) {
        // a stalled service (a full disk) says so over any result: nothing new is analyzed
        let current = match self.idle.state.stalls() {
            true => None,
            false => self.presenter.current(),
        };
        let (due, fb) = match current {
            Some(shown) => {
                let due = Drawn::Result {
                    seq: shown.seq,
                    badge: self.presenter.badge(),
                };
                if due == self.drawn {
                    return;
                }
                let mut fb = shown.frame.clone();
                if let Drawn::Result { badge: Some(text), .. } = &due {
                    let Ok(()) = render::draw_badge(&mut fb, text);
                }
                (due, fb)
            }
            None => {
                let due = Drawn::Idle(self.idle.clone());
                if due == self.drawn {
                    return;
                }
                let size = self.display.size();
                let mut fb = Framebuffer::new(size.width, size.height);
                let Ok(()) = render::draw_status(&mut fb, &self.idle);
                (due, fb)
            }
        };
        match self.display.show(&fb) {
            Ok(()) => {
                if self.failing.worked() {
                    log::info!("{}: working again", self.display.name());
                }
                self.drawn = due;
            }
            Err(e) => {
                if self.failing.failed() {
                    log::error!("{e}; results are still journaled and reported");
                }
            }
        }
    }
}

impl Sink for Screen {
    fn name(&self) -> &'static str {
        "screen"
    }

    fn deliver(&mut self, d: &Delivery<'_>) -> Result<(), SinkError> {
        let size = self.display.size();
        let size = OverlaySize {
            width: size.width,
            height: size.height,
        };
        let r = d.record;
        let frame = match d.analysis {
            Some(analysis) => result_frame(analysis, size, &r.models, &r.time, d.input),
            None => failure_frame(size, r, d.input),
        };
        let alert = matches!(r.verdict, Verdict::Positive | Verdict::Indeterminate);
        self.presenter.arrive(
            Shown {
                seq: r.seq,
                alert,
                frame,
            },
            Instant::now(),
        );
        // a display failure is logged by redraw, which also retries it
        self.redraw();
        Ok(())
    }
}

/// The screen for a result no model read (`record`, of the input `input`): what went wrong
/// and what to do.
pub fn failure_frame(size: OverlaySize, record: &Record, input: &str) -> Framebuffer {
    let mut fb = Framebuffer::new(size.width, size.height);
    let (title, advice) = match record.verdict {
        Verdict::NotChestRadiograph => ("NOT A CHEST RADIOGRAPH", "Send a frontal chest radiograph."),
        _ => (
            "IMAGE NOT ANALYZED",
            "Check the digitizer's output, then send the image again.",
        ),
    };
    let lines = vec![
        format!("#{} {input}", record.seq),
        record.error.clone().unwrap_or_default(),
        advice.into(),
        "Press ACK to clear.".into(),
    ];
    let Ok(()) = render::draw_error(&mut fb, title, &lines);
    fb
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "S"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(seq: u64, alert: bool) -> Shown<u64> {
        Shown { seq, alert, frame: seq }
    }

    fn on_screen(p: &Presenter<u64>) -> Option<u64> {
        p.current().map(|s| s.frame)
    }

    const HOLD: Duration = Duration::from_secs(60);

    #[test]
    fn a_positive_is_not_replaced_by_a_result_0_4_s_later() {
        let t0 = Instant::now();
        let mut p = Presenter::new(HOLD, true);
        assert!(p.arrive(result(1, true), t0));
        assert!(!p.arrive(result(2, false), t0 + Duration::from_millis(400)));
        assert_eq!(on_screen(&p), Some(1));
        assert_eq!(p.badge().as_deref(), Some("1 RESULT WAITING"));
        assert!(!p.tick(t0 + Duration::from_secs(59)));
        assert_eq!(on_screen(&p), Some(1), "held for the whole minimum time");
        assert!(p.tick(t0 + HOLD));
        assert_eq!(on_screen(&p), Some(2), "then the waiting result");
        assert_eq!(
            p.badge().as_deref(),
            Some("1 MORE ALERT TO ACKNOWLEDGE"),
            "the alert is still counted"
        );
        p.acknowledged_by_host(1);
        assert_eq!(p.badge(), None);
    }

    #[test]
    fn the_button_ends_the_hold_and_waiting_alerts_come_first() {
        let t0 = Instant::now();
        let mut p = Presenter::new(HOLD, true);
        p.arrive(result(1, true), t0);
        p.arrive(result(2, false), t0);
        p.arrive(result(3, true), t0);
        p.arrive(result(4, false), t0);
        assert_eq!(
            p.badge().as_deref(),
            Some("1 MORE ALERT TO ACKNOWLEDGE - 3 RESULTS WAITING")
        );
        assert!(p.acknowledge_shown(t0 + Duration::from_secs(1)));
        assert_eq!(on_screen(&p), Some(3), "the waiting alert, before newer clear results");
        assert!(!p.tick(t0 + Duration::from_secs(2)), "and it holds in turn");
        assert!(p.acknowledge_shown(t0 + Duration::from_secs(3)));
        assert_eq!(on_screen(&p), Some(4), "then the newest other result");
        assert_eq!(p.badge(), None, "2 was superseded by 4; both alerts acknowledged");
        assert!(p.acknowledge_shown(t0 + Duration::from_secs(4)));
        assert_eq!(on_screen(&p), None, "the idle screen");
    }

    #[test]
    fn results_that_hold_nothing_replace_each_other_at_once() {
        let t0 = Instant::now();
        let mut p = Presenter::new(HOLD, true);
        assert!(p.arrive(result(1, false), t0));
        assert!(p.arrive(result(2, false), t0));
        assert_eq!(on_screen(&p), Some(2));
        // after its hold an alert stays until something replaces it
        assert!(p.arrive(result(3, true), t0));
        assert!(!p.tick(t0 + 2 * HOLD));
        assert_eq!(on_screen(&p), Some(3));
        assert!(p.arrive(result(4, false), t0 + 2 * HOLD));
    }

    #[test]
    fn without_a_way_to_acknowledge_only_waiting_results_are_counted() {
        let t0 = Instant::now();
        let mut p = Presenter::new(HOLD, false);
        p.arrive(result(1, true), t0);
        p.arrive(result(2, true), t0);
        assert_eq!(p.badge().as_deref(), Some("1 RESULT WAITING"));
        assert!(p.tick(t0 + HOLD));
        assert_eq!(on_screen(&p), Some(2), "the hold still applies");
        assert_eq!(p.badge(), None);
    }

    #[test]
    fn waiting_screens_are_bounded_and_alerts_are_kept_longest() {
        let t0 = Instant::now();
        let mut p = Presenter::new(HOLD, true);
        p.arrive(result(0, true), t0);
        p.arrive(result(1, true), t0);
        for seq in 2..40 {
            p.arrive(result(seq, false), t0);
        }
        assert_eq!(p.waiting.len(), MAX_WAITING);
        assert!(p.waiting.iter().any(|s| s.seq == 1), "the waiting alert is kept");
        assert_eq!(p.waiting.back().map(|s| s.seq), Some(39));
    }
}
