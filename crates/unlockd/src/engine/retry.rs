//! The one retry-and-backoff mechanism of the worker (on the `backon` crate): exponential
//! delays with full jitter (each wait drawn uniformly from zero to the exponential step),
//! used by the contact sources, the claim loop and settlement.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::Rng;

/// Exponential backoff with full jitter: `first`, doubled per retry, capped at `max`,
/// each delay drawn from `[0, step]`. `retries: None` never stops.
#[derive(Debug, Clone, Copy)]
pub struct FullJitter {
    pub first: Duration,
    pub max: Duration,
    pub retries: Option<usize>,
}

impl FullJitter {
    pub fn new(first: Duration, max: Duration, retries: Option<usize>) -> Self {
        FullJitter {
            first,
            max: max.max(first),
            retries,
        }
    }
}

pub struct FullJitterBackoff {
    steps: backon::ExponentialBackoff,
}

impl Iterator for FullJitterBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let step = self.steps.next()?;
        let fraction: f64 = rand::rng().random_range(0.0..=1.0);
        Some(step.mul_f64(fraction))
    }
}

impl BackoffBuilder for FullJitter {
    type Backoff = FullJitterBackoff;

    fn build(self) -> FullJitterBackoff {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.first)
            .with_max_delay(self.max)
            .with_factor(2.0);
        let builder = match self.retries {
            Some(n) => builder.with_max_times(n),
            None => builder.without_max_times(),
        };
        FullJitterBackoff {
            steps: builder.build(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_exponential_step_and_the_cap() {
        let delays: Vec<Duration> = FullJitter::new(
            Duration::from_millis(100),
            Duration::from_millis(450),
            Some(5),
        )
        .build()
        .collect();
        assert_eq!(delays.len(), 5);
        let caps = [100, 200, 400, 450, 450];
        for (delay, cap) in delays.iter().zip(caps) {
            assert!(*delay <= Duration::from_millis(cap), "{delay:?} > {cap}ms");
        }
    }

    #[test]
    fn unbounded_backoff_keeps_going() {
        let mut backoff =
            FullJitter::new(Duration::from_millis(1), Duration::from_millis(2), None).build();
        for _ in 0..1000 {
            assert!(backoff.next().is_some());
        }
    }
}
