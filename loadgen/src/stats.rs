//! The arithmetic of the reports: percentiles and the gaps of a probing client.
//!
//! Samples are kept whole (a `Vec<u64>` of microseconds, 8 bytes each: a
//! million round trips is 8 MB) and sorted once, so percentiles are exact.

use serde::Serialize;

/// Microsecond samples.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<u64>);

/// What the reports print of a set of samples, in microseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: u64,
}

impl Samples {
    pub fn push(&mut self, us: u64) {
        self.0.push(us);
    }

    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn summary(mut self) -> Summary {
        self.0.sort_unstable();
        let s = &self.0;
        if s.is_empty() {
            return Summary::default();
        }
        let sum: u128 = s.iter().map(|&v| u128::from(v)).sum();
        Summary {
            count: s.len() as u64,
            p50: percentile(s, 50.0),
            p90: percentile(s, 90.0),
            p99: percentile(s, 99.0),
            p999: percentile(s, 99.9),
            max: s[s.len() - 1],
            mean: (sum / s.len() as u128) as u64,
        }
    }
}

/// Nearest-rank percentile of sorted samples: the smallest value with at
/// least `p` percent of the samples at or below it. 0 for no samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One probe of a probing client: when it was sent and, if it was, when its
/// (first) reply came, in microseconds from any common origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub sent: u64,
    pub reply: Option<u64>,
}

/// A probing client's worst moments.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gaps {
    /// Longest time from a probe sent to its reply.
    pub longest_round_trip_us: u64,
    /// Longest time between two consecutive replies.
    pub longest_silence_us: u64,
    pub answered: u64,
    pub lost: u64,
}

pub fn gaps(probes: &[Probe]) -> Gaps {
    let mut replies: Vec<u64> = probes.iter().filter_map(|p| p.reply).collect();
    replies.sort_unstable();
    Gaps {
        longest_round_trip_us: probes
            .iter()
            .filter_map(|p| p.reply.map(|r| r.saturating_sub(p.sent)))
            .max()
            .unwrap_or(0),
        longest_silence_us: replies.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0),
        answered: replies.len() as u64,
        lost: (probes.len() - replies.len()) as u64,
    }
}

/// Median (lower of the two middle values) and maximum.
pub fn median_max(values: &mut [u64]) -> (u64, u64) {
    if values.is_empty() {
        return (0, 0);
    }
    values.sort_unstable();
    (values[(values.len() - 1) / 2], values[values.len() - 1])
}

/// Microseconds as milliseconds with one decimal, for human lines.
pub fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&s, 50.0), 50);
        assert_eq!(percentile(&s, 99.0), 99);
        assert_eq!(percentile(&s, 99.9), 100);
        assert_eq!(percentile(&s, 100.0), 100);
        assert_eq!(percentile(&s, 0.0), 1);
        assert_eq!(percentile(&[7], 50.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[1, 2], 50.0), 1);
        assert_eq!(percentile(&[1, 2], 50.1), 2);
    }

    #[test]
    fn summary_of_unsorted_samples() {
        let mut s = Samples::default();
        for v in [30, 10, 20, 1000] {
            s.push(v);
        }
        let sum = s.summary();
        assert_eq!(sum.count, 4);
        assert_eq!(sum.p50, 20);
        assert_eq!(sum.p99, 1000);
        assert_eq!(sum.max, 1000);
        assert_eq!(sum.mean, 265);
        assert_eq!(Samples::default().summary(), Summary::default());
    }

    #[test]
    fn gaps_across_a_dark_time() {
        // Probes every 20 ms; the game is dark from 45 to 130 ms.
        let probes = [
            Probe {
                sent: 0,
                reply: Some(1_000),
            },
            Probe {
                sent: 20_000,
                reply: Some(21_000),
            },
            Probe {
                sent: 40_000,
                reply: Some(41_000),
            },
            Probe {
                sent: 60_000,
                reply: Some(131_000),
            },
            Probe {
                sent: 80_000,
                reply: Some(131_500),
            },
            Probe {
                sent: 100_000,
                reply: Some(132_000),
            },
            Probe {
                sent: 120_000,
                reply: Some(132_500),
            },
            Probe {
                sent: 140_000,
                reply: Some(141_000),
            },
        ];
        let g = gaps(&probes);
        assert_eq!(g.longest_round_trip_us, 71_000);
        assert_eq!(g.longest_silence_us, 90_000);
        assert_eq!((g.answered, g.lost), (8, 0));
    }

    #[test]
    fn gaps_count_lost_probes_and_sort_replies() {
        let probes = [
            Probe {
                sent: 0,
                reply: Some(5_000),
            },
            Probe {
                sent: 1_000,
                reply: None,
            },
            Probe {
                sent: 2_000,
                reply: Some(3_000),
            },
        ];
        let g = gaps(&probes);
        assert_eq!(g.longest_round_trip_us, 5_000);
        assert_eq!(g.longest_silence_us, 2_000);
        assert_eq!((g.answered, g.lost), (2, 1));
        assert_eq!(gaps(&[]), Gaps::default());
    }

    #[test]
    fn median_and_max() {
        assert_eq!(median_max(&mut [5, 1, 3]), (3, 5));
        assert_eq!(median_max(&mut [4, 1, 3, 2]), (2, 4));
        assert_eq!(median_max(&mut []), (0, 0));
        assert_eq!(ms(12_345), "12.3");
    }
}
