//! `--plot FILE.svg`: startup and footprint per path as two bar charts
//! (log scales: a Linux boot here is four orders of magnitude slower than
//! the tiny guest), drawn with the `plotters` crate's SVG backend.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::paths::PathId;
use super::results::Report;

/// A short label for the x axis.
fn short(id: PathId) -> &'static str {
    match id {
        PathId::TinyvmmTiny => "tinyvmm+tiny",
        PathId::TinyvmmLinux => "tinyvmm+Linux",
        PathId::TinyvmmDisk => "tinyvmm+Linux (disk)",
        PathId::QemuLinux => "QEMU+Linux",
        PathId::Crun => "crun",
        PathId::Runc => "runc",
        PathId::TinyvmmTinyRestored => "tinyvmm+tiny (restored)",
        PathId::TinyvmmLinuxRestored => "tinyvmm+Linux (restored)",
        PathId::Firecracker => "Firecracker+Linux",
        PathId::CloudHypervisor => "CH+Linux",
        PathId::TinyvmmBundle => "tinyvmm --bundle",
        PathId::QemuBundle => "QEMU, bundle",
    }
}

/// One bar: label, value.
type Bar = (&'static str, f64);

/// Writes the chart; an error when no path has figures to draw.
pub fn write_svg(path: &Path, report: &Report) -> Result<(), String> {
    let startup: Vec<Bar> = report
        .paths
        .iter()
        .filter_map(|p| Some((short(p.path), p.startup.as_ref()?.marker_ms.median)))
        .collect();
    let memory: Vec<Bar> = report
        .paths
        .iter()
        .filter_map(|p| {
            Some((
                short(p.path),
                p.footprint.as_ref()?.total_kib.median / 1024.0,
            ))
        })
        .collect();
    if startup.is_empty() && memory.is_empty() {
        return Err("no path has figures to plot".into());
    }
    let root = SVGBackend::new(path, (1100, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(550);
    panel(
        &left,
        "Startup: spawn → marker, median (ms)",
        &startup,
        "ms",
    )?;
    panel(&right, "Memory per instance, median (MiB)", &memory, "MiB")?;
    root.present().map_err(|e| e.to_string())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    bars: &[Bar],
    unit: &str,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    if bars.is_empty() {
        return Ok(());
    }
    let positive = |v: f64| v.max(1e-3);
    let min = bars.iter().map(|b| positive(b.1)).fold(f64::MAX, f64::min);
    let max = bars.iter().map(|b| positive(b.1)).fold(f64::MIN, f64::max);
    // A decade below the smallest bar unless it is at least twice that decade.
    let lo = 10f64.powf((min * 0.5).log10().floor());
    let hi = 10f64.powf((max * 3.0).log10().ceil());
    let n = bars.len();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        // `a..b` segmented has a segment for b too; one bar still needs a range.
        .build_cartesian_2d((0..(n - 1).max(1)).into_segmented(), (lo..hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => bars.get(*i).map_or(String::new(), |b| b.0.to_string()),
            _ => String::new(),
        })
        .y_desc(unit)
        .draw()
        .map_err(err)?;
    let colour = |i: usize| Palette99::pick(i).to_rgba();
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let mut r = Rectangle::new(
                [
                    (SegmentValue::Exact(i), lo),
                    (SegmentValue::Exact(i + 1), positive(b.1)),
                ],
                colour(i).filled(),
            );
            r.set_margin(0, 0, 12, 12);
            r
        }))
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            Text::new(
                super::markdown::time_or_size(b.1, unit),
                (SegmentValue::CenterOf(i), positive(b.1) * 1.05),
                TextStyle::from(("sans-serif", 13).into_font())
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        }))
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::compare::host::Host;
    use crate::lab::compare::paths::Workload;
    use crate::lab::compare::results::{Footprint, PathResult, SCHEMA_VERSION, Startup};
    use crate::lab::measure::Summary;

    #[test]
    fn svg_has_one_bar_label_per_path() {
        let s = |v: f64| Summary::of(&[v]).unwrap();
        let mut tiny = PathResult::absent(PathId::TinyvmmTiny, String::new());
        tiny.absent = None;
        tiny.startup = Some(Startup {
            marker_ms: s(2.5),
            exit_ms: s(3.0),
            vmm_boot_timer_ms: None,
        });
        tiny.footprint = Some(Footprint {
            launcher_peak_kib: s(2000.0),
            guest_touched_kib: Some(s(900.0)),
            workload_peak_kib: None,
            charged_kib: None,
            total_kib: s(2900.0),
            pss_kib: s(2500.0),
            processes: 1,
        });
        let mut crun = tiny.clone();
        crun.path = PathId::Crun;
        crun.startup = Some(Startup {
            marker_ms: s(9.0),
            exit_ms: s(10.0),
            vmm_boot_timer_ms: None,
        });
        let report = Report {
            schema_version: SCHEMA_VERSION,
            host: Host::detect(),
            workload: Workload::default(),
            paths: vec![
                tiny,
                crun,
                PathResult::absent(PathId::Runc, "missing".into()),
            ],
        };
        let file = std::env::temp_dir().join(format!("tinyvmm-plot-{}.svg", std::process::id()));
        write_svg(&file, &report).unwrap();
        let svg = std::fs::read_to_string(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        assert!(svg.starts_with("<svg") || svg.contains("<svg"));
        assert!(svg.contains("tinyvmm+tiny") && svg.contains("crun") && !svg.contains("runc"));
        assert!(svg.contains("<rect"));
    }
}
