//! The latency-against-offered-load plot (gnuplot, PNG) from a run's sweep.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::results::SweepPoint;

/// The sweep as gnuplot data: offered, achieved, p50, p99, p99.9 and the filter's p99, in
/// ms.
pub fn data(sweep: &[SweepPoint]) -> String {
    let mut dat = String::from("# offered achieved p50_ms p99_ms p999_ms filter_p99_ms\n");
    for p in sweep {
        let m = &p.figures;
        let ms = |v: Option<u32>| f64::from(v.unwrap_or(0)) / 1000.0;
        let _ = writeln!(
            dat,
            "{:.0} {:.0} {:.3} {:.3} {:.3} {:.3}",
            p.offered,
            m.tokens_per_second(),
            ms(m.latency_us.p50),
            ms(m.latency_us.p99),
            ms(m.latency_us.p999),
            m.filter_p99_us.unwrap_or(0.0) / 1000.0
        );
    }
    dat
}

/// The gnuplot script drawing `dat` into `png`, with the half-of-maximum mark at `half`.
fn script(png: &Path, dat: &Path, half: f64) -> String {
    format!(
        "set terminal pngcairo size 900,560 font 'DejaVu Sans,10'\n\
         set output '{png}'\n\
         set title 'registry-token-filter: /token latency against offered load (DPoP-bound, RS256 mint, 1 Envoy worker)'\n\
         set xlabel 'offered load (requests/s, open loop)'\n\
         set ylabel 'latency (ms, client side, from the intended send time)'\n\
         set logscale y\n\
         set grid\n\
         set key right bottom box opaque\n\
         set arrow from {half},graph 0 to {half},graph 1 nohead dt 2 lc rgb '#888888'\n\
         set label 'half of max' at {half},graph 0.04 offset 0.5,0 tc rgb '#666666'\n\
         set arrow from graph 0,first 5 to graph 1,first 5 nohead dt 3 lc rgb '#cc0000'\n\
         set label 'p99 target 5 ms' at graph 0.01,first 5 offset 0,0.7 tc rgb '#cc0000'\n\
         plot '{dat}' using 1:3 with linespoints lw 2 title 'p50', \
              '{dat}' using 1:4 with linespoints lw 2 title 'p99', \
              '{dat}' using 1:5 with linespoints lw 2 title 'p99.9', \
              '{dat}' using 1:6 with linespoints lw 1 dt 2 title 'p99 inside the filter (Envoy histogram)'\n",
        png = png.display(),
        dat = dat.display(),
    )
}

/// Draws the sweep into `png` with gnuplot.
pub fn plot(png: &Path, sweep: &[SweepPoint]) -> Result<(), String> {
    if sweep.is_empty() {
        return Err("no sweep data".into());
    }
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    let dat = dir.path().join("sweep.dat");
    std::fs::write(&dat, data(sweep)).map_err(|e| e.to_string())?;
    let half = sweep
        .iter()
        .find(|p| (p.fraction - 0.5).abs() < 1e-9)
        .map_or(0.0, |p| p.offered);
    let gp = dir.path().join("sweep.gp");
    std::fs::write(&gp, script(png, &dat, half)).map_err(|e| e.to_string())?;
    let out = Command::new("gnuplot")
        .arg(&gp)
        .output()
        .map_err(|e| format!("gnuplot: {e} (make bench installs gnuplot-nox)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("gnuplot: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Figures, Latency};

    #[test]
    fn data_in_ms() {
        let p = SweepPoint {
            fraction: 0.5,
            offered: 361.2,
            figures: Figures {
                elapsed: 1.0,
                statuses: [(200, 362)].into(),
                latency_us: Latency {
                    p50: Some(1774),
                    p99: Some(2296),
                    p999: None,
                },
                filter_p99_us: Some(1685.0),
                ..Figures::default()
            },
        };
        assert_eq!(
            data(&[p]).lines().nth(1),
            Some("361 362 1.774 2.296 0.000 1.685")
        );
        assert!(plot(Path::new("/nonexistent/x.png"), &[]).is_err());
    }
}
