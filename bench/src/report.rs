//! The benchmark's output: a Markdown table (absolute figures and mux's
//! ratio to each peer) and an SVG bar chart of the ratios.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::work::Rate;

/// One workload's figures.
#[derive(Debug)]
pub(crate) struct Row {
    name: String,
    /// mux's figure, as text, and as a number for ratios (higher is better).
    ours: (String, f64),
    peers: Vec<(&'static str, String, f64)>,
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn rate_text(rate: &Rate) -> String {
    format!(
        "{:.0}/s (p50 {}, p99 {})",
        rate.per_second,
        ms(rate.p50),
        ms(rate.p99)
    )
}

impl Row {
    pub(crate) fn throughput(name: String, ours: f64, peers: Vec<(&'static str, f64)>) -> Self {
        Self {
            name,
            ours: (format!("{ours:.2}"), ours),
            peers: peers
                .into_iter()
                .map(|(n, v)| (n, format!("{v:.2}"), v))
                .collect(),
        }
    }

    pub(crate) fn rate(name: String, ours: Rate, peers: Vec<(&'static str, Rate)>) -> Self {
        Self {
            name,
            ours: (rate_text(&ours), ours.per_second),
            peers: peers
                .into_iter()
                .map(|(n, r)| (n, rate_text(&r), r.per_second))
                .collect(),
        }
    }

    pub(crate) fn fanout(name: String, ours: Rate, peers: Vec<(&'static str, Rate)>) -> Self {
        Self::rate(name, ours, peers)
    }
}

/// Everything measured.
#[derive(Debug, Default)]
pub(crate) struct Report {
    rows: Vec<Row>,
    /// Idle p99, mixed mux, mixed h2.
    pub(crate) mixed: Option<(Duration, Rate, Rate)>,
    /// (connections, bytes per idle connection, streams, bytes per idle stream).
    pub(crate) memory: Option<(usize, f64, usize, f64)>,
    pub(crate) notes: Vec<String>,
}

impl Report {
    pub(crate) fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub(crate) fn markdown(&self, quick: bool) -> String {
        let mut out = String::new();
        if quick {
            out.push_str("**--quick run: tiny sizes; these figures prove the program works and mean nothing.**\n\n");
        }
        out.push_str(
            "| workload | mux | peer | peer's figure | mux / peer |\n|---|---|---|---|---|\n",
        );
        for row in &self.rows {
            for (n, (peer, text, value)) in row.peers.iter().enumerate() {
                let ours = if n == 0 { row.ours.0.as_str() } else { "〃" };
                let name = if n == 0 { row.name.as_str() } else { "" };
                let ratio = if *value > 0.0 {
                    row.ours.1 / value
                } else {
                    0.0
                };
                let _ = writeln!(out, "| {name} | {ours} | {peer} | {text} | {ratio:.2} |");
            }
        }
        if let Some((idle, mux, h2)) = &self.mixed {
            let _ = writeln!(
                out,
                "\nHead-of-line check: 64 B call p99 idle {}, beside a bulk upload {} ({:.2}× idle; bar ≤ 2×); h2 (16 MiB windows) beside a bulk upload: p99 {}.",
                ms(*idle),
                ms(mux.p99),
                mux.p99.as_secs_f64() / idle.as_secs_f64().max(1e-9),
                ms(h2.p99)
            );
        }
        if let Some((conns, per_conn, streams, per_stream)) = self.memory {
            let _ = writeln!(
                out,
                "\nMemory (server RSS growth): {:.1} KiB per idle connection ({conns} connections), {:.0} bytes per idle stream ({streams} streams, each with its server-side request state).",
                per_conn / 1024.0,
                per_stream
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "\nNote: {note}");
        }
        out
    }

    /// A bar chart of mux / peer ratios (1.0 marked), one bar per comparison.
    fn svg(&self) -> String {
        let bars: Vec<(String, f64)> = self
            .rows
            .iter()
            .flat_map(|row| {
                row.peers.iter().map(move |(peer, _, value)| {
                    let ratio = if *value > 0.0 {
                        row.ours.1 / value
                    } else {
                        0.0
                    };
                    (format!("{} — vs {peer}", row.name), ratio)
                })
            })
            .collect();
        let max = bars
            .iter()
            .map(|(_, r)| *r)
            .fold(2.0f64, f64::max)
            .min(20.0);
        let (left, width, bar_h, gap) = (460.0, 420.0, 18.0, 6.0);
        let height = 60.0 + bars.len() as f64 * (bar_h + gap);
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n<text x=\"10\" y=\"20\" font-size=\"14\">mux / peer (higher is better for mux; line at 1.0)</text>\n",
            left + width + 60.0
        );
        for (n, (label, ratio)) in bars.iter().enumerate() {
            let y = 40.0 + n as f64 * (bar_h + gap);
            let w = (ratio.min(max) / max) * width;
            let color = if *ratio >= 1.0 { "#2b8a3e" } else { "#c92a2a" };
            let label = label.replace('&', "&amp;").replace('<', "&lt;");
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>",
                left - 6.0,
                y + 13.0
            );
            let _ = writeln!(svg, "<rect x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"{bar_h}\" fill=\"{color}\"/>");
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\">{ratio:.2}</text>",
                left + w + 4.0,
                y + 13.0
            );
        }
        let one = left + width / max;
        let _ = writeln!(svg, "<line x1=\"{one:.1}\" y1=\"30\" x2=\"{one:.1}\" y2=\"{height}\" stroke=\"#333\" stroke-dasharray=\"4\"/>\n</svg>");
        svg
    }

    pub(crate) fn write(&self, dir: &Path, markdown: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("bench.md"), markdown)?;
        std::fs::write(dir.join("bench.svg"), self.svg())
    }
}
