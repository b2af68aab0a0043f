//! Exponential backoff with jitter, shared by retries of failed tasks and of queue errors.

use std::time::Duration;

use rand::Rng;

/// `base * 2^(n-1)`, capped at `max`, with up to 20% jitter added so a fleet does not retry in
/// lock step. `n` is 1 for the first retry.
pub fn exponential(base: Duration, max: Duration, n: u32) -> Duration {
    let exp = n.saturating_sub(1).min(30);
    let raw = base.saturating_mul(1u32 << exp).min(max);
    let jitter = rand::thread_rng().gen_range(0.0..0.2);
    raw.mul_f64(1.0 + jitter).min(max.max(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(100);
        let first = exponential(base, max, 1);
        assert!(first >= base && first <= Duration::from_secs(12), "{first:?}");
        let third = exponential(base, max, 3);
        assert!(third >= Duration::from_secs(40) && third <= Duration::from_secs(48), "{third:?}");
        assert_eq!(exponential(base, max, 20), max);
    }
}
