//! When a market's ticks fall due: on whole multiples of its interval on the wall clock (a
//! one-second market ticks at every whole second), each announced by a thread of its own.
//!
//! The runtime's timers count in whole milliseconds and fired a tick one to two of them late,
//! more while the workers were busy sending the last one. A thread that sleeps until the due
//! time wakes within microseconds of it, so what a tick loses on its way to the clients is the
//! time it takes to store and send, not a timer's rounding. And a tick due on a whole
//! millisecond is stamped with exactly when it was due.

use std::io;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

/// The due times of one market's ticks, one after another.
pub struct Pacer {
    due: watch::Receiver<i64>,
    interval_ms: i64,
    /// When [`Pacer::skip_passed`] was last called (ms), until a due time is returned after it.
    passed: Option<i64>,
}

impl Pacer {
    /// Starts the thread that keeps `symbol`'s schedule, a tick every `interval_ms`; it ends
    /// soon after the pacer is dropped.
    pub fn start(symbol: &str, interval_ms: u32) -> io::Result<Pacer> {
        let interval_ms = i64::from(interval_ms.max(1));
        let (announce, due) = watch::channel(i64::MIN);
        std::thread::Builder::new()
            .name(format!("pacer {symbol}"))
            .spawn(move || keep_schedule(&announce, interval_ms))?;
        Ok(Pacer { due, interval_ms, passed: None })
    }

    /// Waits for the next due time and returns it (ms since the Unix epoch). When more than one
    /// has passed since the last call (the caller was busy), only the latest is returned: a
    /// missed tick is skipped, never sent late, and never moves the ones after it.
    pub async fn tick(&mut self) -> io::Result<i64> {
        loop {
            self.due.changed().await.map_err(|_| io::Error::other("the pacer's thread ended"))?;
            let due = *self.due.borrow_and_update();
            if !self.passed.is_some_and(|passed| is_passed_over(due, passed, self.interval_ms)) {
                self.passed = None;
                return Ok(due);
            }
        }
    }

    /// Passes over the due time that has come and was not yet returned, whether or not the
    /// pacer's thread has announced it yet: the next [`Pacer::tick`] returns one still to come.
    pub fn skip_passed(&mut self) {
        self.due.borrow_and_update();
        self.passed = Some(Utc::now().timestamp_millis());
    }
}

/// Announces each due time as it comes, until nobody listens.
fn keep_schedule(announce: &watch::Sender<i64>, interval_ms: i64) {
    let interval = Duration::from_millis(interval_ms.unsigned_abs());
    loop {
        let due = latest_due(Utc::now().timestamp_millis(), interval_ms) + interval_ms;
        if let Some(left) = until(due) {
            // Never longer than one interval: if the wall clock is set back meanwhile, `due` has
            // not come when this ends, and the next turn waits for the slot after the clock's new
            // time instead of idling until the clock is back where it was.
            std::thread::sleep(left.min(interval));
        }
        if until(due).is_some() {
            continue;
        }
        if announce.send(to_announce(due, Utc::now().timestamp_millis(), interval_ms)).is_err() {
            return;
        }
    }
}

/// How long until `due_ms` on the wall clock, or `None` once it has come.
fn until(due_ms: i64) -> Option<Duration> {
    let left = due_ms.checked_mul(1_000_000)? - Utc::now().timestamp_nanos_opt()?;
    u64::try_from(left).ok().filter(|&ns| ns > 0).map(Duration::from_nanos)
}

/// The due time to announce once `due` has come, at `now_ms`: `due` itself, or, woken more
/// than an interval late (this thread was not run), the latest one since, so that a missed tick
/// is skipped here too, never sent late.
fn to_announce(due: i64, now_ms: i64, interval_ms: i64) -> i64 {
    latest_due(now_ms, interval_ms).max(due)
}

/// Whether `due` is the one that had come when it was passed over at `passed`: the last interval
/// before it. One older than that comes from a wall clock set back since, and is the schedule's
/// next: skipping it, and the others until the clock is back at `passed`, would stop the feed.
fn is_passed_over(due: i64, passed: i64, interval_ms: i64) -> bool {
    passed - interval_ms < due && due <= passed
}

/// The latest multiple of `interval_ms` that is not after `now_ms`.
fn latest_due(now_ms: i64, interval_ms: i64) -> i64 {
    now_ms.div_euclid(interval_ms) * interval_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_due_time_is_the_last_whole_interval_not_after_now() {
        assert_eq!(latest_due(1_700_000_000_999, 1_000), 1_700_000_000_000);
        assert_eq!(latest_due(1_700_000_001_000, 1_000), 1_700_000_001_000);
        assert_eq!(latest_due(1_234, 100), 1_200);
        assert_eq!(latest_due(-1, 100), -100);
    }

    #[test]
    fn a_pacer_woken_late_announces_the_latest_due_time_not_the_one_it_slept_for() {
        assert_eq!(to_announce(1_000, 1_000, 100), 1_000);
        assert_eq!(to_announce(1_000, 1_099, 100), 1_000);
        assert_eq!(to_announce(1_000, 1_350, 100), 1_300);
    }

    #[test]
    fn only_the_due_time_of_the_last_interval_is_passed_over() {
        assert!(is_passed_over(1_000, 1_050, 100));
        assert!(is_passed_over(1_050, 1_050, 100));
        assert!(!is_passed_over(1_100, 1_050, 100), "still to come");
        assert!(!is_passed_over(900, 1_050, 100), "the clock was set back");
    }

    #[tokio::test]
    async fn ticks_fall_on_whole_intervals_one_after_another_and_never_before_their_time() {
        let start = Utc::now().timestamp_millis();
        let mut pacer = Pacer::start("T", 20).unwrap();
        let mut previous = start;
        for n in 0..5 {
            let due = pacer.tick().await.unwrap();
            assert!(due <= Utc::now().timestamp_millis(), "tick {n} is due at {due}, which has not come");
            assert_eq!(due % 20, 0, "tick {n} is due at {due}, not a whole interval");
            let gap = if n == 0 { 1 } else { 20 };
            assert!(due >= previous + gap, "tick {n} is due at {due}, after one due at {previous}");
            previous = due;
        }
    }

    #[tokio::test]
    async fn due_times_missed_while_busy_are_skipped_not_returned_late() {
        let mut pacer = Pacer::start("T", 10).unwrap();
        let first = pacer.tick().await.unwrap();
        // Busy for several intervals: the next tick is the latest due one, not the one after `first`.
        std::thread::sleep(Duration::from_millis(65));
        let next = pacer.tick().await.unwrap();
        assert!(next >= first + 40, "{first} then {next}");
        assert!(next <= Utc::now().timestamp_millis());
    }

    #[tokio::test]
    async fn a_due_time_passed_over_is_not_returned() {
        let mut pacer = Pacer::start("T", 10).unwrap();
        let first = pacer.tick().await.unwrap();
        std::thread::sleep(Duration::from_millis(25));
        // `first + 20` fell due while asleep; passed over, the next is one still to come.
        pacer.skip_passed();
        let next = pacer.tick().await.unwrap();
        assert!(next >= first + 30, "{first}, then {next}");
    }
}
