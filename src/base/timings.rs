//! The median of repeated runs: how every speed figure ptxd prints is taken (`bench`, the
//! variant trial, `bench-model`).
//!
//! The median rather than the mean because a board shares its cores with the capture, the
//! display and the kernel: one run slowed by a neighbour moves a mean, not a median. The
//! fastest and slowest runs are kept beside it to show that spread.

use std::time::Instant;

/// Seconds taken by repeated runs of one thing, sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct Timings(Vec<f64>);

impl Timings {
    /// Time `run` `runs` times (at least once) and keep its last value; its first error ends it.
    pub fn measure<T, E>(runs: usize, mut run: impl FnMut() -> Result<T, E>) -> Result<(Timings, T), E> {
        let mut seconds = Vec::with_capacity(runs.max(1));
        let mut last = None;
        for _ in 0..runs.max(1) {
            let started = Instant::now();
            last = Some(run()?);
            seconds.push(started.elapsed().as_secs_f64());
        }
        Ok((Timings::from_seconds(seconds), last.expect("ran at least once")))
    }

    /// Timings taken elsewhere (at least one).
    pub fn from_seconds(mut seconds: Vec<f64>) -> Timings {
        assert!(!seconds.is_empty(), "timings of no run");
        seconds.sort_by(f64::total_cmp);
        Timings(seconds)
    }

    /// The middle run (the upper middle of an even count).
    pub fn median(&self) -> f64 {
        self.0[self.0.len() / 2]
    }

    pub fn min(&self) -> f64 {
        self.0[0]
    }

    pub fn max(&self) -> f64 {
        self.0[self.0.len() - 1]
    }

    pub fn runs(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_ignores_one_slow_run() {
        let t = Timings::from_seconds(vec![0.30, 0.10, 9.0, 0.20, 0.25]);
        assert_eq!((t.median(), t.min(), t.max(), t.runs()), (0.25, 0.10, 9.0, 5));
    }

    #[test]
    fn measure_runs_at_least_once_and_stops_at_an_error() {
        let mut calls = 0;
        let (t, last) = Timings::measure(0, || {
            Ok::<_, ()>({
                calls += 1;
                calls
            })
        })
        .unwrap();
        assert_eq!((t.runs(), last), (1, 1));
        let mut calls = 0;
        let failed = Timings::measure(5, || {
            calls += 1;
            if calls == 3 {
                Err("third")
            } else {
                Ok(calls)
            }
        });
        assert_eq!((failed, calls), (Err("third"), 3));
    }
}
