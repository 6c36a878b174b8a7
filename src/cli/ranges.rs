//! Parsers for numeric options: every number a user gives is checked against its allowed range
//! when the command line is parsed, before any work starts, and the error names the range.
//! The ranges appear in each option's `--help` text as `[range: …]`.

/// A whole number in `lo..=hi`.
pub fn count(lo: usize, hi: usize) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let v: usize =
            s.trim().parse().map_err(|_| format!("`{s}` is not a whole number; give one from {lo} to {hi}"))?;
        if v < lo || v > hi {
            return Err(format!("{v} is outside the allowed range {lo}..={hi}"));
        }
        Ok(v)
    }
}

/// A whole number in `lo..=hi`, as `i64` (sizes handed to tensor shapes).
pub fn size(lo: i64, hi: i64) -> impl Fn(&str) -> Result<i64, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let v: i64 =
            s.trim().parse().map_err(|_| format!("`{s}` is not a whole number; give one from {lo} to {hi}"))?;
        if v < lo || v > hi {
            return Err(format!("{v} is outside the allowed range {lo}..={hi}"));
        }
        Ok(v)
    }
}

/// A pruning rate: a finite number in [0, 1).
pub fn rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number; give a rate in [0, 1)"))?;
    relprune::ranking::check_rate(v).map_err(|e| e.to_string())?;
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
    }
}
