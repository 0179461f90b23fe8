//! The benchmark's output: per workload, every system's figure over the
//! repetitions (min/median/max), mux's ratio to each peer measured round
//! by round, CPU per unit of work on each side, and latency percentiles;
//! as Markdown and as an SVG chart of the median ratios.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::measure::{Series, Spread};

/// One workload's measurements.
#[derive(Debug)]
pub(crate) struct Workload {
    pub(crate) name: String,
    /// What the figure counts, e.g. "GB/s".
    pub(crate) unit: &'static str,
    /// What CPU is charged per: "GB" (shown in CPU-seconds) or "1,000
    /// calls" (shown in CPU-milliseconds).
    pub(crate) per: &'static str,
    /// mux's series (ratios are taken against each of them).
    pub(crate) ours: Vec<Series>,
    pub(crate) peers: Vec<Series>,
    /// Whether the CPU figures mean anything (not with a busy process).
    pub(crate) cpu: bool,
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.3}")
    }
}

fn figure(value: f64) -> String {
    if value >= 1000.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn spread(s: Spread) -> String {
    format!(
        "{} / {} / {}",
        figure(s.min),
        figure(s.median),
        figure(s.max)
    )
}

impl Workload {
    fn cpu_text(&self, seconds: f64) -> String {
        if !self.cpu {
            return "–".to_owned();
        }
        if self.per == "GB" {
            format!("{seconds:.2} s")
        } else {
            format!("{:.1} ms", seconds * 1e3)
        }
    }

    fn markdown(&self, out: &mut String) {
        let _ = writeln!(out, "\n### {}\n", self.name);
        let _ = writeln!(
            out,
            "| system | {} min / median / max | mux / system, median (min–max) | CPU per {} client / server | p50 / p99 / p99.9 ms (samples) |\n|---|---|---|---|---|",
            self.unit, self.per
        );
        let ours = self.ours.iter().map(|series| (series, true));
        let peers = self.peers.iter().map(|series| (series, false));
        for (series, is_ours) in ours.chain(peers) {
            let ratio = if is_ours {
                "–".to_owned()
            } else {
                self.ours
                    .iter()
                    .map(|ours| {
                        let r = ours.ratio_to(series);
                        format!("{:.2} ({:.2}–{:.2})", r.median, r.min, r.max)
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let latency = series
                .latency()
                .map(|l| {
                    format!(
                        "{} / {} / {} ({})",
                        ms(l.p50),
                        ms(l.p99),
                        ms(l.p999),
                        l.samples
                    )
                })
                .unwrap_or_else(|| "–".to_owned());
            let system = match series.beside() {
                Some(upload) => format!(
                    "{} (the upload beside it: {} GB/s)",
                    series.system,
                    spread(upload)
                ),
                None => series.system.clone(),
            };
            let _ = writeln!(
                out,
                "| {system} | {} | {ratio} | {} / {} | {latency} |",
                spread(series.value()),
                self.cpu_text(series.client_cpu()),
                self.cpu_text(series.server_cpu()),
            );
        }
    }
}

/// Everything measured.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) workloads: Vec<Workload>,
    pub(crate) notes: Vec<String>,
}

impl Report {
    pub(crate) fn markdown(&self, quick: bool, header: &str) -> String {
        let mut out = String::new();
        if quick {
            out.push_str("**--quick run: tiny sizes; these figures prove the program works and mean nothing.**\n\n");
        }
        out.push_str(header);
        out.push('\n');
        for workload in &self.workloads {
            workload.markdown(&mut out);
        }
        for note in &self.notes {
            let _ = writeln!(out, "\n{note}");
        }
        out
    }

    /// A bar chart of the median ratio of mux's first series to each peer.
    fn svg(&self) -> String {
        let bars: Vec<(String, f64)> = self
            .workloads
            .iter()
            .flat_map(|w| {
                let ours = w.ours.first();
                w.peers.iter().filter_map(move |peer| {
                    let ours = ours?;
                    Some((
                        format!("{} — {} vs {}", w.name, ours.system, peer.system),
                        ours.ratio_to(peer).median,
                    ))
                })
            })
            .collect();
        let max = bars
            .iter()
            .map(|(_, r)| *r)
            .fold(2.0f64, f64::max)
            .min(20.0);
        let (left, width, bar_h, gap) = (620.0, 380.0, 18.0, 6.0);
        let height = 60.0 + bars.len() as f64 * (bar_h + gap);
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n<text x=\"10\" y=\"20\" font-size=\"14\">mux / peer, median of the rounds (higher is better for mux; line at 1.0)</text>\n",
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
