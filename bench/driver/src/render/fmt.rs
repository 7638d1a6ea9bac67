//! How the report writes a figure: latencies in µs (ms from 10 ms on), rates, MiB.

/// A client latency, µs (`-` when none): `873 µs`, `14.8 ms`.
pub fn us(x: Option<u32>) -> String {
    x.map_or("-".into(), |v| {
        if v >= 10_000 {
            format!("{:.1} ms", f64::from(v) / 1000.0)
        } else {
            format!("{v} µs")
        }
    })
}

/// A filter latency (interpolated in the histogram's buckets), µs.
pub fn usf(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.0} µs"))
}

/// A fraction as a percentage.
pub fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.0}%", v * 100.0))
}

/// Bytes as MiB.
pub fn mib(b: u64) -> f64 {
    b as f64 / 1_048_576.0
}

/// The first line of an error, safe inside a table cell.
pub fn cell(e: &str) -> String {
    e.lines().next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_as_written() {
        assert_eq!(us(Some(9_999)), "9999 µs");
        assert_eq!(us(Some(14_840)), "14.8 ms");
        assert_eq!(us(None), "-");
        assert_eq!(usf(Some(248.6)), "249 µs");
        assert_eq!(pct(Some(0.5)), "50%");
        assert_eq!(pct(None), "-");
        assert_eq!(mib(3 * 1_048_576), 3.0);
        assert_eq!(cell("first\nsecond"), "first");
    }
}
