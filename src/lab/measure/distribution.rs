//! Summary statistics of repeated measurements: median, p90, min, max.
//!
//! Percentiles interpolate linearly between the two nearest ranks (the
//! "R-7" definition, NumPy's and a spreadsheet's default): for `n` sorted
//! values `x[0..n]`, percentile `p` is at fractional index `p * (n - 1)`.
//! With 10 runs, p90 lies between the 9th and 10th value, so one outlier
//! moves it but not the median.

use serde::Serialize;

/// Median, p90, min and max of a set of measurements (all in one unit).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// How many values were summarised.
    pub n: usize,
    /// The 50th percentile.
    pub median: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Summary {
    /// Summarises `values`; `None` when there are none. NaNs are ignored.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        Some(Summary {
            n: sorted.len(),
            median: percentile(&sorted, 0.5),
            p90: percentile(&sorted, 0.9),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }
}

/// Percentile `p` (0..=1) of sorted, non-empty `sorted`, interpolated linearly.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let last = sorted.len() - 1;
    let pos = p.clamp(0.0, 1.0) * last as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_has_no_summary() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN]), None);
    }

    #[test]
    fn one_value_is_every_statistic() {
        let s = Summary::of(&[4.0]).unwrap();
        assert_eq!(
            (s.n, s.median, s.p90, s.min, s.max),
            (1, 4.0, 4.0, 4.0, 4.0)
        );
    }

    #[test]
    fn median_of_even_count_is_the_mean_of_the_middle_two() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!((s.min, s.max), (1.0, 4.0));
    }

    #[test]
    fn p90_of_ten_values_interpolates_between_ninth_and_tenth() {
        // 1..=10 shuffled: p90 at index 8.1 -> 9 + 0.1 * (10 - 9).
        let v = [7.0, 3.0, 10.0, 1.0, 9.0, 2.0, 8.0, 4.0, 6.0, 5.0];
        let s = Summary::of(&v).unwrap();
        assert!((s.p90 - 9.1).abs() < 1e-9, "{}", s.p90);
        assert_eq!(s.median, 5.5);
        assert_eq!(s.n, 10);
    }

    #[test]
    fn an_outlier_moves_max_but_not_median() {
        let s = Summary::of(&[10.0, 11.0, 12.0, 1000.0, 11.0]).unwrap();
        assert_eq!(s.median, 11.0);
        assert_eq!(s.max, 1000.0);
    }
}
