//! Capped exponential backoff with jitter: the one formula for every retry
//! and reconnect (source stream, sinks).
//!
//! Invariants kept: a wait is the current delay times a random factor in
//! [0.75, 1.25) (so many clients failing together do not retry in step);
//! the delay doubles after each wait and never exceeds the cap; `reset`
//! goes back to the first delay once the caller made progress.

use std::time::Duration;

/// Retry delays for one retrying activity.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    delay: Duration,
}

impl Backoff {
    /// Starts at `first`, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            delay: first.min(max),
        }
    }

    /// The time to wait before the next attempt (jittered), advancing the delay.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.delay.mul_f64(rand::random::<f64>() * 0.5 + 0.75);
        self.delay = (self.delay * 2).min(self.max);
        wait
    }

    /// Sleeps for [`Backoff::next_wait`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_wait()).await
    }

    /// Back to the first delay (the activity made progress).
    pub fn reset(&mut self) {
        self.delay = self.first.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_cap() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(350));
        let within = |w: Duration, d: u64| w >= ms(d) * 3 / 4 && w < ms(d) * 5 / 4;
        for d in [100, 200, 350, 350] {
            let w = b.next_wait();
            assert!(within(w, d), "{w:?} for {d}");
        }
        b.reset();
        assert!(within(b.next_wait(), 100));
    }
}
