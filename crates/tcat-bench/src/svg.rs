//! A hand-written SVG plot of median time against sequence length, one line per variant.
//!
//! Both axes are logarithmic: sequence lengths in powers of two on x, seconds in decades on y,
//! so quadratic cost is a straight line of slope 2 per doubling and linear cost one of slope 1.

use std::fmt::Write;

use crate::Measurement;
use crate::report::format_duration;

const WIDTH: f64 = 780.0;
const HEIGHT: f64 = 470.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// Colour-blind-safe palette (Okabe & Ito), cycled when there are more variants.
const COLOURS: [&str; 8] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];

/// The plot of `rows` as a standalone SVG document titled `title`.
///
/// Variants appear in the order of their first row; each has one `<polyline>` through its
/// points sorted by sequence length, a marker per point, and a legend entry.
///
/// ```
/// use std::time::Duration;
/// use candle_core::DType;
/// use tcat_bench::{Measurement, Shape, Variant, svg};
/// let row = |seq, ms| Measurement {
///     variant: Variant::Dense, shape: Shape { batch: 1, heads: 1, seq, head_dim: 4 },
///     dtype: DType::F32, times: vec![], median: Duration::from_millis(ms), peak_bytes: None,
/// };
/// let doc = svg::plot(&[row(512, 3), row(2048, 40)], "attention");
/// assert_eq!(doc.matches("<polyline").count(), 1);
/// ```
pub fn plot(rows: &[Measurement], title: &str) -> String {
    let mut variants = Vec::new();
    for m in rows {
        if !variants.contains(&m.variant) {
            variants.push(m.variant);
        }
    }
    let mut seqs: Vec<usize> = rows.iter().map(|m| m.shape.seq).collect();
    seqs.sort();
    seqs.dedup();
    let secs = |m: &Measurement| m.median.as_secs_f64().max(1e-9);

    // x: log2 of the sequence length, padded when there is one length only.
    let (mut x_lo, mut x_hi) = match (seqs.first(), seqs.last()) {
        (Some(&a), Some(&b)) => ((a as f64).log2(), (b as f64).log2()),
        _ => (0.0, 1.0),
    };
    if x_hi - x_lo < 1e-9 {
        x_lo -= 0.5;
        x_hi += 0.5;
    }
    // y: whole decades of seconds around the data.
    let logs: Vec<f64> = rows.iter().map(|m| secs(m).log10()).collect();
    let y_lo = logs.iter().cloned().fold(f64::INFINITY, f64::min).floor();
    let y_hi = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max).ceil();
    let (y_lo, y_hi) = if !y_lo.is_finite() {
        (-3.0, 0.0)
    } else if y_hi <= y_lo {
        (y_lo, y_lo + 1.0)
    } else {
        (y_lo, y_hi)
    };

    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |seq: usize| LEFT + ((seq as f64).log2() - x_lo) / (x_hi - x_lo) * plot_w;
    let py = |log_s: f64| TOP + (y_hi - log_s) / (y_hi - y_lo) * plot_h;

    let mut s = String::new();
    let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="15">{}</text>"#,
        LEFT + plot_w / 2.0,
        escape(title)
    );

    // Grid and ticks.
    let mut decade = y_lo;
    while decade <= y_hi + 1e-9 {
        let y = py(decade);
        let label = decade_label(decade as i32);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            escape(&label)
        );
        decade += 1.0;
    }
    for &seq in &seqs {
        let x = px(seq);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#dddddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{seq}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0
        );
    }
    let _ =
        writeln!(s, r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">sequence length (log scale)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 16.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">median time (log scale)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );

    // One line per variant, and its legend entry.
    for (i, variant) in variants.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut points: Vec<&Measurement> = rows.iter().filter(|m| m.variant == *variant).collect();
        points.sort_by_key(|m| m.shape.seq);
        let coords: Vec<String> =
            points.iter().map(|m| format!("{:.1},{:.1}", px(m.shape.seq), py(secs(m).log10()))).collect();
        let name = escape(&variant.to_string());
        let _ = writeln!(
            s,
            r#"<polyline data-variant="{name}" points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            coords.join(" ")
        );
        for m in &points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"><title>{name}, seq {}: {}</title></circle>"#,
                px(m.shape.seq),
                py(secs(m).log10()),
                m.shape.seq,
                escape(&format_duration(m.median))
            );
        }
        let ly = TOP + 10.0 + 20.0 * i as f64;
        let lx = LEFT + plot_w + 16.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// `10^k` seconds as a round label: `1 ms`, `100 ms`, `10 s`.
fn decade_label(k: i32) -> String {
    let (unit, shift) = match k {
        k if k >= 0 => ("s", 0),
        -3..=-1 => ("ms", 3),
        -6..=-4 => ("µs", 6),
        _ => ("ns", 9),
    };
    let exponent = (k + shift).max(0) as u32;
    let value = 10u64.checked_pow(exponent).map_or(format!("1e{exponent}"), |v| v.to_string());
    format!("{value} {unit}")
}

/// Escapes text for XML content and attribute values.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use candle_core::DType;

    use super::*;
    use crate::{Shape, Variant};

    /// A small well-formedness check: tags nest and close in order, one root element,
    /// attributes are quoted, and text holds no raw `<` or stray `&`. Returns the element names
    /// in document order.
    pub(crate) fn check_well_formed(doc: &str) -> Result<Vec<String>, String> {
        let body = doc.trim_start();
        let body = match body.strip_prefix("<?xml") {
            Some(rest) => &rest[rest.find("?>").ok_or("unterminated XML declaration")? + 2..],
            None => body,
        };
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut roots = 0;
        let mut rest = body;
        while let Some(open) = rest.find('<') {
            check_text(&rest[..open])?;
            if stack.is_empty() && !rest[..open].trim().is_empty() {
                return Err(format!("text outside the root: {:?}", &rest[..open]));
            }
            let close = rest[open..].find('>').ok_or("unterminated tag")? + open;
            let tag = &rest[open + 1..close];
            if let Some(name) = tag.strip_prefix('/') {
                let top = stack.pop().ok_or_else(|| format!("closing </{name}> with nothing open"))?;
                if top != name.trim() {
                    return Err(format!("</{name}> closes <{top}>"));
                }
            } else {
                let self_closing = tag.ends_with('/');
                let tag = tag.trim_end_matches('/');
                let name = tag.split_whitespace().next().ok_or("empty tag")?.to_string();
                if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':') {
                    return Err(format!("bad element name {name:?}"));
                }
                check_attributes(&tag[name.len()..])?;
                if stack.is_empty() {
                    roots += 1;
                }
                names.push(name.clone());
                if !self_closing {
                    stack.push(name);
                }
            }
            rest = &rest[close + 1..];
        }
        if !rest.trim().is_empty() {
            return Err(format!("text after the root: {rest:?}"));
        }
        if let Some(open) = stack.pop() {
            return Err(format!("<{open}> is never closed"));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(names)
    }

    fn check_text(text: &str) -> Result<(), String> {
        if text.contains('<') {
            return Err(format!("raw < in {text:?}"));
        }
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..text[i..].find(';').map_or(text.len(), |e| i + e + 1)];
            if !["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity) {
                return Err(format!("stray & in {text:?}"));
            }
        }
        Ok(())
    }

    /// ` a="1" b="x y"`: names followed by `="..."`.
    fn check_attributes(mut attrs: &str) -> Result<(), String> {
        loop {
            attrs = attrs.trim_start();
            if attrs.is_empty() {
                return Ok(());
            }
            let eq = attrs.find("=\"").ok_or_else(|| format!("unquoted attribute in {attrs:?}"))?;
            let name = &attrs[..eq];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-:_".contains(c)) {
                return Err(format!("bad attribute name {name:?}"));
            }
            let value_end = attrs[eq + 2..].find('"').ok_or("unterminated attribute value")? + eq + 2;
            check_text(&attrs[eq + 2..value_end])?;
            attrs = &attrs[value_end + 1..];
        }
    }

    #[test]
    fn decade_labels() {
        let labels: Vec<String> = [-10, -9, -7, -6, -4, -3, -1, 0, 2].map(decade_label).into();
        assert_eq!(labels, ["1 ns", "1 ns", "100 ns", "1 µs", "100 µs", "1 ms", "100 ms", "1 s", "100 s"]);
    }

    #[test]
    fn the_checker_rejects_broken_documents() {
        assert!(check_well_formed("<svg><g></g></svg>").is_ok());
        for bad in [
            "<svg><g></svg>",
            "<svg></g>",
            "<svg>",
            "<svg/><svg/>",
            "<svg a=1/>",
            "<svg>a & b</svg>",
            "<svg x=\"<\"/>",
            "text<svg/>",
        ] {
            assert!(check_well_formed(bad).is_err(), "{bad}");
        }
    }

    fn row(variant: Variant, seq: usize, micros: u64) -> Measurement {
        Measurement {
            variant,
            shape: Shape { batch: 1, heads: 1, seq, head_dim: 4 },
            dtype: DType::F32,
            times: vec![],
            median: Duration::from_micros(micros),
            peak_bytes: None,
        }
    }

    #[test]
    fn one_polyline_per_variant_in_a_well_formed_document() {
        let rows = [
            row(Variant::Dense, 512, 900),
            row(Variant::Sliding { window: 256 }, 512, 800),
            row(Variant::Dense, 2048, 14_000),
            row(Variant::Sliding { window: 256 }, 2048, 12_000),
            row(Variant::DenseBidirectional, 128, 50),
        ];
        let doc = plot(&rows, "dense <vs> sliding & co");
        let names = check_well_formed(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        assert_eq!(names[0], "svg");
        assert_eq!(names.iter().filter(|n| *n == "polyline").count(), 3);
        assert_eq!(names.iter().filter(|n| *n == "circle").count(), rows.len());
        for v in ["dense", "sliding:256", "dense-bidirectional"] {
            assert!(doc.contains(&format!(r#"data-variant="{v}""#)), "{v}");
            assert!(doc.contains(&format!(">{v}</text>")), "legend for {v}");
        }
        // Dense's line goes up-right: larger seq is further right and (slower) higher.
        let line = doc.lines().find(|l| l.contains(r#"data-variant="dense""#)).unwrap();
        let points: Vec<(f64, f64)> = line
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(points.len(), 2);
        assert!(points[1].0 > points[0].0 && points[1].1 < points[0].1, "{points:?}");
    }

    #[test]
    fn degenerate_inputs_still_plot() {
        for rows in [vec![], vec![row(Variant::Dense, 64, 0)]] {
            let doc = plot(&rows, "t");
            check_well_formed(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
            assert!(!doc.contains("NaN") && !doc.contains("inf"), "{doc}");
        }
    }
}
