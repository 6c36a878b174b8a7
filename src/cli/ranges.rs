//! Parsers for numeric options: every number a user gives is checked against its allowed range
//! when the command line is parsed, before any work starts, and the error names the range.
//! The ranges appear in each option's `--help` text as `[range: …]`.

/// A whole number in `lo..=hi`.
pub fn count(lo: usize, hi: usize) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    whole(lo, hi)
}

/// A whole number in `lo..=hi`, as `i64` (sizes handed to tensor shapes).
pub fn size(lo: i64, hi: i64) -> impl Fn(&str) -> Result<i64, String> + Clone + Send + Sync + 'static {
    whole(lo, hi)
}

fn whole<T>(lo: T, hi: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |s: &str| {
        let v: T = s.trim().parse().map_err(|_| format!("`{s}` is not a whole number; give one from {lo} to {hi}"))?;
        if v < lo || v > hi {
            return Err(format!("{v} is outside the allowed range {lo}..={hi}"));
        }
        Ok(v)
    }
}

/// A finite number > 0.
pub fn positive(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("{v}: give a number > 0"));
    }
    Ok(v)
}

/// A finite number ≥ 0.
pub fn non_negative(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("{v}: give a number ≥ 0"));
    }
    Ok(v)
}

/// A number in [0, 1].
pub fn unit_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{v}: give a number from 0 to 1"));
    }
    Ok(v)
}

/// A pruning rate: a finite number in [0, 1).
pub fn rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number; give a rate in [0, 1)"))?;
    relprune::prune::ranking::check_rate(v).map_err(|e| e.to_string())?;
    Ok(v)
}

/// Upper bound of `--threads`: libtorch's OpenMP pool allocates a stack per thread, and
/// counts far beyond any machine exhaust memory or crash libgomp.
pub const MAX_THREADS: usize = 256;
/// Upper bound of batch sizes.
pub const MAX_BATCH: usize = 65_536;
/// Upper bound of sample counts and trial budgets.
pub const MAX_COUNT: usize = 100_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_enforced_with_a_message() {
        let p = count(1, 10);
        assert_eq!(p("3"), Ok(3));
        assert!(p("0").unwrap_err().contains("1..=10"));
        assert!(p("11").unwrap_err().contains("1..=10"));
        assert!(p("-1").unwrap_err().contains("not a whole number"));
        assert!(p("99999999999999999999999").is_err());
        assert!(size(1, 4)("0").is_err());
        assert_eq!(rate("0.5"), Ok(0.5));
        for bad in ["1", "-0.1", "NaN", "inf", "x"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
        assert!(positive("0").is_err() && positive("inf").is_err() && positive("2.5") == Ok(2.5));
        assert!(non_negative("-1").is_err() && non_negative("0") == Ok(0.0));
        assert!(unit_interval("1.01").is_err() && unit_interval("NaN").is_err() && unit_interval("1") == Ok(1.0));
    }
}
