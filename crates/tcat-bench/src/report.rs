//! Measurements as a text table and as JSON rows.

use std::fmt::Write;
use std::time::Duration;

use crate::roofline::attention_flops;
use crate::{Measurement, Variant};

/// Median time of `m` divided by that of dense attention on the same shape and dtype, when
/// `all` holds such a dense measurement.
pub fn ratio_to_dense(m: &Measurement, all: &[Measurement]) -> Option<f64> {
    let dense = all.iter().find(|d| d.variant == Variant::Dense && d.shape == m.shape && d.dtype == m.dtype)?.median;
    (dense > Duration::ZERO).then(|| m.median.as_secs_f64() / dense.as_secs_f64())
}

/// GFLOP/s of `m`: its visible query-key pairs' flops ([`attention_flops`]) over its median
/// time; `None` where the flops have no closed form or the time is zero.
pub fn gflops(m: &Measurement) -> Option<f64> {
    let flops = attention_flops(m.variant, m.shape)?;
    let seconds = m.median.as_secs_f64();
    (seconds > 0.0).then(|| flops / seconds / 1e9)
}

/// A fixed-width table: variant, seq, median time, GFLOP/s, peak memory, time ratio to dense,
/// and with `matmul_gflops` (the machine's f32 matrix product, [`crate::roofline`]) the share of
/// it each row reaches.
///
/// ```
/// use std::time::Duration;
/// use candle_core::DType;
/// use tcat_bench::{Measurement, Shape, Variant, report};
/// let shape = Shape { batch: 1, heads: 1, seq: 8, head_dim: 4 };
/// let row = |variant, ms| Measurement {
///     variant, shape, dtype: DType::F32, times: vec![Duration::from_millis(ms)],
///     median: Duration::from_millis(ms), peak_bytes: Some(3 << 20),
/// };
/// let table = report::table(&[row(Variant::Dense, 4), row(Variant::Sliding { window: 2 }, 2)], None);
/// assert!(table.contains("sliding:2"));
/// assert!(table.lines().nth(2).unwrap().ends_with("0.50"));
/// ```
pub fn table(rows: &[Measurement], matmul_gflops: Option<f64>) -> String {
    let width = rows.iter().map(|m| m.variant.to_string().len()).max().unwrap_or(0).max("variant".len());
    let mut out = String::new();
    let share_header = if matmul_gflops.is_some() { "  × matmul" } else { "" };
    let _ = writeln!(
        out,
        "{:<width$}  {:>7}  {:>11}  {:>8}  {:>11}  {:>7}{share_header}",
        "variant", "seq", "median", "GFLOP/s", "peak memory", "× dense"
    );
    for m in rows {
        let peak = m.peak_bytes.map_or("n/a".to_string(), format_bytes);
        let ratio = ratio_to_dense(m, rows).map_or("-".to_string(), |r| format!("{r:.2}"));
        let rate = gflops(m);
        let share = match matmul_gflops {
            Some(peak) if peak > 0.0 => {
                format!("  {:>8}", rate.map_or("-".to_string(), |r| format!("{:.2}", r / peak)))
            }
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:>7}  {:>11}  {:>8}  {:>11}  {:>7}{share}",
            m.variant.to_string(),
            m.shape.seq,
            format_duration(m.median),
            rate.map_or("-".to_string(), |r| format!("{r:.1}")),
            peak,
            ratio
        );
    }
    out
}

/// One JSON object per measurement: `variant`, `seq`, `batch`, `heads`, `head_dim`, `dtype`,
/// `median_s`, `times_s`, `peak_bytes` (null when not measured), `ratio_to_dense` (median
/// time over dense's at the same shape; null without a dense row) and `gflops` ([`gflops`];
/// null where it has no closed form).
pub fn json_rows(rows: &[Measurement]) -> Vec<serde_json::Value> {
    rows.iter()
        .map(|m| {
            serde_json::json!({
                "variant": m.variant.to_string(),
                "seq": m.shape.seq,
                "batch": m.shape.batch,
                "heads": m.shape.heads,
                "head_dim": m.shape.head_dim,
                "dtype": m.dtype.as_str(),
                "median_s": m.median.as_secs_f64(),
                "times_s": m.times.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
                "peak_bytes": m.peak_bytes,
                "ratio_to_dense": ratio_to_dense(m, rows),
                "gflops": gflops(m),
            })
        })
        .collect()
}

/// `850 µs`, `12.34 ms`, `1.234 s`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(tcat_bench::report::format_duration(Duration::from_micros(1500)), "1.50 ms");
/// ```
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.3} s")
    }
}

/// Bytes in binary units: `512 B`, `4.0 KiB`, `1.50 GiB`.
///
/// ```
/// assert_eq!(tcat_bench::report::format_bytes(3 << 20), "3.0 MiB");
/// ```
pub fn format_bytes(bytes: usize) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if b < K {
        format!("{bytes} B")
    } else if b < K * K {
        format!("{:.1} KiB", b / K)
    } else if b < K * K * K {
        format!("{:.1} MiB", b / (K * K))
    } else {
        format!("{:.2} GiB", b / (K * K * K))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Shape;
    use candle_core::DType;

    fn row(variant: Variant, seq: usize, ms: u64, peak: Option<usize>) -> Measurement {
        Measurement {
            variant,
            shape: Shape { batch: 1, heads: 2, seq, head_dim: 4 },
            dtype: DType::F32,
            times: vec![Duration::from_millis(ms)],
            median: Duration::from_millis(ms),
            peak_bytes: peak,
        }
    }

    #[test]
    fn ratios_pair_rows_of_the_same_shape() {
        let rows = [
            row(Variant::Dense, 8, 10, Some(1)),
            row(Variant::Dense, 16, 40, Some(1)),
            row(Variant::Sliding { window: 4 }, 8, 5, None),
            row(Variant::Sliding { window: 4 }, 16, 10, None),
            row(Variant::DenseBidirectional, 32, 10, None),
        ];
        let r: Vec<Option<f64>> = rows.iter().map(|m| ratio_to_dense(m, &rows)).collect();
        assert_eq!(r, [Some(1.0), Some(1.0), Some(0.5), Some(0.25), None]);
        let json = json_rows(&rows);
        assert_eq!(json[3]["ratio_to_dense"], 0.25);
        assert_eq!(json[3]["variant"], "sliding:4");
        assert!(json[4]["ratio_to_dense"].is_null() && json[4]["peak_bytes"].is_null());
        // Dense causal at seq 8: 2 heads × 4 × 4 flops × 36 pairs in 10 ms.
        assert_eq!(json[0]["gflops"], 2.0 * 16.0 * 36.0 / 0.010 / 1e9);
        assert!(json[4]["gflops"].as_f64().is_some());
        let table = table(&rows, None);
        assert_eq!(table.lines().count(), 6);
        assert!(table.lines().nth(5).unwrap().contains("n/a"));
        let shared = super::table(&rows, Some(2.0 * 16.0 * 36.0 / 0.010 / 1e9 * 4.0));
        assert!(shared.lines().next().unwrap().ends_with("× matmul"));
        assert!(shared.lines().nth(1).unwrap().ends_with("0.25"), "{shared}");
    }
}
