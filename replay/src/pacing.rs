//! When to send each command: live (as soon as decoded) or offline (captured pacing scaled by
//! `--speed`, idle gaps compressed by `--skip-idle`), and lag behind that schedule.
//!
//! The offline schedule maps capture time to wall time relative to one anchor: the first session's
//! first timestamp ↔ the instant the engine saw it. Sessions open in capture order, so the gaps
//! between session openings are compressed by `--skip-idle` globally ([`Timeline`]); within a
//! session, each gap between its own events is compressed the same way ([`SessionClock`]). This
//! module computes instants; it does not sleep.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How commands are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    /// Live capture: send as soon as decoded; lag = now − packet time.
    Live,
    /// Offline replay.
    Offline {
        /// Speed factor (1.0 = captured pacing); `None` = as fast as possible.
        speed: Option<f64>,
        /// Gaps longer than this are shortened to it (capture time, before the speed factor).
        skip_idle: Option<Duration>,
    },
}

impl Pacing {
    /// Parse `--speed` (`max` or a positive factor).
    pub fn parse_speed(s: &str) -> Result<Option<f64>, crate::target::ConfigError> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(None);
        }
        match s.parse::<f64>() {
            Ok(f) if f > 0.0 && f.is_finite() => Ok(Some(f)),
            _ => Err(crate::target::ConfigError::Value(format!(
                "--speed {s:?}: expected a positive number or 'max'"
            ))),
        }
    }
}

fn compress(gap_us: u64, skip_idle: Option<Duration>) -> u64 {
    match skip_idle {
        Some(d) => gap_us.min(d.as_micros() as u64),
        None => gap_us,
    }
}

/// Global capture-time → compressed-time mapping for session openings.
#[derive(Debug)]
pub struct Timeline {
    skip_idle: Option<Duration>,
    state: Mutex<Option<TimelineState>>,
}

#[derive(Debug, Clone, Copy)]
struct TimelineState {
    anchor: Instant,
    last_open_us: u64,
    compressed_us: u64,
}

impl Timeline {
    /// A timeline not anchored yet.
    pub fn new(skip_idle: Option<Duration>) -> Self {
        Self {
            skip_idle,
            state: Mutex::new(None),
        }
    }

    /// Register a session opened at capture time `ts_us`, first seen at `now`: returns the wall
    /// anchor and the session's compressed start offset (µs of capture time).
    pub fn open_session(&self, ts_us: u64, now: Instant) -> (Instant, u64) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = g.get_or_insert(TimelineState {
            anchor: now,
            last_open_us: ts_us,
            compressed_us: 0,
        });
        if ts_us > st.last_open_us {
            st.compressed_us += compress(ts_us - st.last_open_us, self.skip_idle);
            st.last_open_us = ts_us;
        }
        (st.anchor, st.compressed_us)
    }
}

/// One session's schedule.
#[derive(Debug, Clone)]
pub struct SessionClock {
    anchor: Instant,
    speed: f64,
    skip_idle: Option<Duration>,
    last_ts_us: u64,
    offset_us: u64,
}

impl SessionClock {
    /// A clock for a session whose compressed start offset is `offset_us` and whose first event
    /// was captured at `start_ts_us`.
    pub fn new(
        anchor: Instant,
        offset_us: u64,
        start_ts_us: u64,
        speed: f64,
        skip_idle: Option<Duration>,
    ) -> Self {
        Self {
            anchor,
            speed,
            skip_idle,
            last_ts_us: start_ts_us,
            offset_us,
        }
    }

    /// The wall instant at which an event captured at `ts_us` is due.
    pub fn due(&mut self, ts_us: u64) -> Instant {
        if ts_us > self.last_ts_us {
            self.offset_us += compress(ts_us - self.last_ts_us, self.skip_idle);
            self.last_ts_us = ts_us;
        }
        let scaled = self.offset_us as f64 / self.speed;
        self.anchor + Duration::from_micros(scaled as u64)
    }
}

/// Lag of a send at `sent` behind `due`, µs (0 when early).
pub fn lag_us(due: Instant, sent: Instant) -> u64 {
    sent.saturating_duration_since(due).as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_parse() {
        assert_eq!(Pacing::parse_speed("max").unwrap(), None);
        assert_eq!(Pacing::parse_speed("2.5").unwrap(), Some(2.5));
        assert!(Pacing::parse_speed("0").is_err());
        assert!(Pacing::parse_speed("-1").is_err());
        assert!(Pacing::parse_speed("nan").is_err());
    }

    #[test]
    fn schedule_scales_and_compresses() {
        let t0 = Instant::now();
        let tl = Timeline::new(Some(Duration::from_secs(1)));
        let (a, off) = tl.open_session(1_000_000, t0);
        assert_eq!((a, off), (t0, 0));
        let (a2, off2) = tl.open_session(11_000_000, t0 + Duration::from_millis(5));
        assert_eq!(a2, t0);
        assert_eq!(
            off2, 1_000_000,
            "10 s idle between openings compressed to 1 s"
        );
        let mut c = SessionClock::new(a, off, 1_000_000, 2.0, Some(Duration::from_secs(1)));
        assert_eq!(c.due(1_000_000), t0);
        assert_eq!(c.due(1_500_000), t0 + Duration::from_millis(250));
        assert_eq!(c.due(101_500_000), t0 + Duration::from_millis(750));
        assert_eq!(
            c.due(101_000_000),
            t0 + Duration::from_millis(750),
            "never goes back"
        );
        let mut plain = SessionClock::new(a, 0, 1_000_000, 1.0, None);
        assert_eq!(plain.due(4_000_000), t0 + Duration::from_secs(3));
    }

    #[test]
    fn lag() {
        let t = Instant::now();
        assert_eq!(lag_us(t + Duration::from_millis(1), t), 0);
        assert_eq!(lag_us(t, t + Duration::from_millis(2)), 2000);
    }
}
