//! Line charts of a sweep, as PNG and SVG.
//!
//! A chart is plain data ([`LineChart`]): the experiment says what to draw,
//! this module decides how. Text is laid out and rasterised only with the
//! DejaVu Sans bytes embedded in the binary (the `dejavu` crate), registered
//! with plotters' `ab_glyph` text backend, which never looks for system
//! fonts, so charts render the same on a machine with no fonts installed.
//! The SVG names the same family, with generic fallbacks
//! ([`SVG_FONT_FAMILY`]): plotters writes SVG text as `<text>`, not glyph
//! outlines, so a viewer without DejaVu Sans draws a sans-serif of its own
//! (spacing may differ slightly from the PNG).

use plotters::coord::ranged1d::Ranged;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::OnceLock;

/// The family every text element uses.
pub const FONT_FAMILY: &str = "DejaVu Sans";
/// The `font-family` of the SVGs' text: the embedded family first, then
/// fonts a viewer is likely to have with similar metrics.
pub const SVG_FONT_FAMILY: &str = "DejaVu Sans, Verdana, Bitstream Vera Sans, sans-serif";
/// Size of every chart, in pixels (PNG) and user units (SVG).
pub const CHART_WIDTH_PX: u32 = 1200;
pub const CHART_HEIGHT_PX: u32 = 750;

/// Okabe–Ito colours: distinguishable with the common colour-vision
/// deficiencies. Series take them in order.
const PALETTE: [RGBColor; 7] = [
    RGBColor(213, 94, 0),
    RGBColor(0, 114, 178),
    RGBColor(0, 158, 115),
    RGBColor(230, 159, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// How the y axis maps values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// For series that differ by orders of magnitude; values must be > 0.
    Log,
}

/// Corner of the plot the legend is drawn in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Legend {
    UpperLeft,
    /// Centred at the top: for time series whose ends are both busy.
    UpperMiddle,
    UpperRight,
    LowerRight,
}

/// One point of a series, with an optional band (e.g. a 95 % CI; NaN = none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChartPoint {
    pub x: f64,
    pub y: f64,
    pub y_low: f64,
    pub y_high: f64,
}

/// One line, named in the legend.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<ChartPoint>,
    /// Points only, no line between them (a scatter of unordered points).
    pub dots: bool,
}

/// A chart: written as `<name>.png` and `<name>.svg`.
#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    pub name: String,
    pub description: String,
    pub title: String,
    /// Axis labels, with units, e.g. `completion time (ms)`.
    pub x_label: String,
    pub y_label: String,
    /// For parameters swept over orders of magnitude (10, 100, 1000).
    pub x_scale: Scale,
    pub y_scale: Scale,
    /// A dot at every point; off for dense time series, where the dots
    /// would hide the line.
    pub markers: bool,
    /// Where the legend sits: the corner the data leave free.
    pub legend: Legend,
    pub series: Vec<Series>,
    /// An x range drawn as a grey band behind the lines (e.g. an outage).
    pub shade: Option<Shade>,
}

/// A marked stretch of the x axis, named in the legend.
#[derive(Clone, Debug, PartialEq)]
pub struct Shade {
    pub from: f64,
    pub to: f64,
    pub label: String,
}

/// A chart that could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("chart `{chart}`: {reason}")]
pub struct ChartError {
    pub chart: String,
    pub reason: String,
}

/// One image drawn on any plotters backend: the PNG and SVG writers and
/// the error naming the chart are written once, here.
pub trait Figure {
    /// The chart's name, for errors.
    fn name(&self) -> &str;
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), ChartError>;

    fn error(&self, reason: impl ToString) -> ChartError {
        ChartError {
            chart: self.name().to_string(),
            reason: reason.to_string(),
        }
    }

    /// Draws the figure into a PNG file at `path`.
    fn write_png(&self, path: &Path) -> Result<(), ChartError> {
        register_fonts().map_err(|reason| self.error(reason))?;
        let root = BitMapBackend::new(path, self.size()).into_drawing_area();
        self.draw(&root)?;
        root.present().map_err(|e| self.error(e))
    }

    /// The figure as SVG text, naming fonts a browser without DejaVu has.
    fn to_svg(&self) -> Result<String, ChartError> {
        register_fonts().map_err(|reason| self.error(reason))?;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, self.size()).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(|e| self.error(e))?;
        }
        let named = format!("font-family=\"{FONT_FAMILY}\"");
        Ok(svg.replace(&named, &format!("font-family=\"{SVG_FONT_FAMILY}\"")))
    }
}

impl Figure for LineChart {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> (u32, u32) {
        (CHART_WIDTH_PX, CHART_HEIGHT_PX)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), ChartError> {
        root.fill(&WHITE).map_err(|e| self.error(e))?;
        let (x_range, (y_low, y_high)) = self.bounds();
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(&self.title, (FONT_FAMILY, 30).into_font())
            .margin(24)
            .x_label_area_size(70)
            .y_label_area_size(100);
        let y_range = y_low..y_high;
        match (self.x_scale, self.y_scale) {
            (Scale::Linear, Scale::Linear) => self.plot(&mut builder, x_range, y_range),
            (Scale::Linear, Scale::Log) => self.plot(&mut builder, x_range, y_range.log_scale()),
            (Scale::Log, Scale::Linear) => self.plot(&mut builder, x_range.log_scale(), y_range),
            (Scale::Log, Scale::Log) => {
                self.plot(&mut builder, x_range.log_scale(), y_range.log_scale())
            }
        }
    }
}

impl LineChart {
    /// Draws mesh, bands, lines, markers and legend on coordinates `y`.
    fn plot<DB, X, Y>(
        &self,
        builder: &mut ChartBuilder<'_, '_, DB>,
        x: X,
        y: Y,
    ) -> Result<(), ChartError>
    where
        DB: DrawingBackend,
        X: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let mut chart = builder
            .build_cartesian_2d(x, y)
            .map_err(|e| self.error(e))?;
        let label_font = (FONT_FAMILY, 18).into_font();
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .axis_desc_style((FONT_FAMILY, 22))
            .label_style(label_font.clone())
            .x_label_formatter(&|v| format_tick(*v))
            .y_label_formatter(&|v| format_tick(*v))
            .light_line_style(RGBColor(0, 0, 0).mix(0.04))
            .draw()
            .map_err(|e| self.error(e))?;
        if let Some(shade) = &self.shade {
            self.draw_shade(&mut chart, shade)?;
        }
        for (index, series) in self.series.iter().enumerate() {
            self.draw_series(&mut chart, index, series)?;
        }
        chart
            .configure_series_labels()
            .label_font(label_font)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.5))
            .position(match self.legend {
                Legend::UpperLeft => SeriesLabelPosition::UpperLeft,
                Legend::UpperMiddle => SeriesLabelPosition::UpperMiddle,
                Legend::UpperRight => SeriesLabelPosition::UpperRight,
                Legend::LowerRight => SeriesLabelPosition::LowerRight,
            })
            .draw()
            .map_err(|e| self.error(e))
    }

    /// A grey band over the whole height between `shade.from` and `shade.to`,
    /// under the lines, named in the legend.
    fn draw_shade<DB, X, Y>(
        &self,
        chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
        shade: &Shade,
    ) -> Result<(), ChartError>
    where
        DB: DrawingBackend,
        X: Ranged<ValueType = f64>,
        Y: Ranged<ValueType = f64>,
    {
        let (_, (y_low, y_high)) = self.bounds();
        let (from, to) = (shade.from.min(shade.to), shade.from.max(shade.to));
        let grey = RGBColor(0, 0, 0).mix(0.10);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(from, y_low), (to, y_high)],
                grey.filled(),
            )))
            .map_err(|e| self.error(e))?
            .label(shade.label.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 24, y + 6)], grey.filled()));
        Ok(())
    }

    fn draw_series<DB, X, Y>(
        &self,
        chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
        index: usize,
        series: &Series,
    ) -> Result<(), ChartError>
    where
        DB: DrawingBackend,
        X: Ranged<ValueType = f64>,
        Y: Ranged<ValueType = f64>,
    {
        let color = PALETTE[index % PALETTE.len()];
        let band = band_polygon(&series.points);
        if !band.is_empty() {
            chart
                .draw_series(std::iter::once(Polygon::new(band, color.mix(0.15))))
                .map_err(|e| self.error(e))?;
        }
        if series.dots {
            let dots = series
                .points
                .iter()
                .map(|p| Circle::new((p.x, p.y), 5, color.filled()));
            chart
                .draw_series(dots)
                .map_err(|e| self.error(e))?
                .label(series.name.clone())
                .legend(move |(x, y)| Circle::new((x + 12, y), 5, color.filled()));
            return Ok(());
        }
        let line = series.points.iter().map(|p| (p.x, p.y));
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(3)))
            .map_err(|e| self.error(e))?
            .label(series.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        if self.markers {
            let markers = series
                .points
                .iter()
                .map(|p| Circle::new((p.x, p.y), 4, color.filled()));
            chart.draw_series(markers).map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// The x range padded a little each side, and the y range holding every
    /// value and band (from 0 on a linear axis).
    fn bounds(&self) -> (std::ops::Range<f64>, (f64, f64)) {
        let points = || self.series.iter().flat_map(|s| s.points.iter());
        let finite = |v: &f64| v.is_finite();
        let shaded = self.shade.iter().flat_map(|s| [s.from, s.to]);
        let xs = points()
            .map(|p| p.x)
            .chain(shaded)
            .filter(finite)
            .filter(|v| self.x_scale == Scale::Linear || *v > 0.0);
        let (x_min, x_max) = min_max(xs).unwrap_or((1.0, 10.0));
        let x = match self.x_scale {
            Scale::Linear => {
                let pad = ((x_max - x_min) * 0.03).max(0.5);
                (x_min - pad)..(x_max + pad)
            }
            Scale::Log => (x_min / 1.25)..(x_max * 1.25),
        };
        let ys = points()
            .flat_map(|p| [p.y, p.y_low, p.y_high])
            .filter(finite)
            .filter(|v| self.y_scale == Scale::Linear || *v > 0.0);
        let (y_min, y_max) = min_max(ys).unwrap_or((1.0, 10.0));
        let y = match self.y_scale {
            Scale::Linear => (0.0_f64.min(y_min), (y_max * 1.08).max(1.0)),
            // Down to the decade below the smallest value, so that some
            // labelled tick sits under every line.
            Scale::Log => (
                (y_min / 1.5).min(10f64.powf(y_min.log10().floor())),
                (y_max * 1.5).max(y_min * 10.0),
            ),
        };
        (x, y)
    }
}

/// Charts over one shared x axis, stacked top to bottom in one image
/// (e.g. calls and goodput over the same run): each keeps its own title,
/// y axis and legend.
#[derive(Clone, Debug, PartialEq)]
pub struct Stacked {
    pub name: String,
    pub panels: Vec<LineChart>,
}

/// Most panels one image holds (each keeps at least ~375 px of height).
pub const STACKED_PANELS_MAX: usize = 4;
/// Height of one panel of a [`Stacked`] image.
pub const STACKED_PANEL_HEIGHT_PX: u32 = 500;

impl Figure for Stacked {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> (u32, u32) {
        let n = self.panels.len().clamp(1, STACKED_PANELS_MAX) as u32;
        (CHART_WIDTH_PX, n * STACKED_PANEL_HEIGHT_PX)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), ChartError> {
        if self.panels.is_empty() || self.panels.len() > STACKED_PANELS_MAX {
            return Err(self.error(format!("1 to {STACKED_PANELS_MAX} panels")));
        }
        let areas = root.split_evenly((self.panels.len(), 1));
        for (panel, area) in self.panels.iter().zip(&areas) {
            panel.draw(area)?;
        }
        Ok(())
    }
}

/// The band around a series as one closed outline: upper edge left to
/// right, then lower edge back.
fn band_polygon(points: &[ChartPoint]) -> Vec<(f64, f64)> {
    let defined = |p: &&ChartPoint| p.y_low.is_finite() && p.y_high.is_finite();
    if points.iter().filter(defined).count() < 2 {
        return Vec::new();
    }
    let upper = points.iter().filter(defined).map(|p| (p.x, p.y_high));
    let lower = points.iter().filter(defined).rev().map(|p| (p.x, p.y_low));
    upper.chain(lower).collect()
}

fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// Tick labels without float noise: thousands separated by a thin space,
/// decimals only when the value has them.
pub(crate) fn format_tick(v: f64) -> String {
    let magnitude = v.abs();
    if magnitude >= 1000.0 || v == v.round() {
        group_thousands(v.round())
    } else if magnitude >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn group_thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// Registers the embedded DejaVu Sans once per process, under its own name
/// and under `sans-serif`, so that any text plotters draws with its default
/// family also uses the embedded font.
pub(crate) fn register_fonts() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            for family in [FONT_FAMILY, "sans-serif"] {
                register_font(family, FontStyle::Normal, dejavu::sans::regular())
                    .map_err(|_| format!("embedded font for `{family}` is invalid"))?;
                register_font(family, FontStyle::Bold, dejavu::sans::bold())
                    .map_err(|_| format!("embedded bold font for `{family}` is invalid"))?;
            }
            Ok(())
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(shade: Option<Shade>, legend: Legend) -> LineChart {
        let p = |x, y| ChartPoint {
            x,
            y,
            y_low: f64::NAN,
            y_high: f64::NAN,
        };
        LineChart {
            name: "t".to_string(),
            description: String::new(),
            title: "t".to_string(),
            x_label: "x".to_string(),
            y_label: "y".to_string(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            markers: false,
            legend,
            series: vec![Series {
                dots: false,
                name: "line".to_string(),
                points: vec![p(10.0, 1.0), p(20.0, 2.0)],
            }],
            shade,
        }
    }

    #[test]
    fn a_shaded_window_is_drawn_and_named_and_widens_the_x_range() {
        let plain = chart(None, Legend::UpperRight).to_svg().expect("svg");
        let shade = Shade {
            from: 0.0,
            to: 5.0,
            label: "downstream down".to_string(),
        };
        let shaded = chart(Some(shade), Legend::UpperRight);
        assert!(
            shaded.bounds().0.start < 0.0,
            "the band's start is on the axis"
        );
        let svg = shaded.to_svg().expect("svg");
        assert!(!plain.contains("downstream down"));
        assert!(svg.contains("downstream down"));
        assert!(svg.matches("<rect").count() > plain.matches("<rect").count());
    }

    #[test]
    fn svg_text_falls_back_to_a_generic_sans_serif() {
        let svg = chart(None, Legend::UpperRight).to_svg().expect("svg");
        let family = format!("font-family=\"{SVG_FONT_FAMILY}\"");
        assert!(svg.contains(&family), "{svg}");
        assert!(!svg.contains("font-family=\"DejaVu Sans\""));
    }

    #[test]
    fn the_legend_can_sit_at_the_top_middle() {
        let right = chart(None, Legend::UpperRight).to_svg().expect("svg");
        let middle = chart(None, Legend::UpperMiddle).to_svg().expect("svg");
        assert_ne!(right, middle);
    }

    #[test]
    fn stacked_panels_share_one_image_and_keep_their_legends() {
        let mut lower = chart(None, Legend::UpperRight);
        lower.series[0].name = "second line".to_string();
        let stacked = Stacked {
            name: "s".to_string(),
            panels: vec![chart(None, Legend::UpperRight), lower],
        };
        let svg = stacked.to_svg().expect("svg");
        let height = 2 * STACKED_PANEL_HEIGHT_PX;
        assert!(svg.contains(&format!("height=\"{height}\"")), "{svg}");
        for name in ["line", "second line"] {
            assert!(svg.contains(&format!(">\n{name}\n</text>")), "{name}");
        }
        let none = Stacked {
            name: "none".to_string(),
            panels: Vec::new(),
        };
        assert!(none.to_svg().is_err());
    }

    #[test]
    fn ticks_have_no_float_noise() {
        assert_eq!(format_tick(20.0), "20");
        assert_eq!(format_tick(12_500.0), "12\u{2009}500");
        assert_eq!(format_tick(2.5), "2.5");
        assert_eq!(format_tick(0.25), "0.25");
        assert_eq!(format_tick(-1500.0), "-1\u{2009}500");
    }

    #[test]
    fn band_goes_out_along_the_top_and_back_along_the_bottom() {
        let p = |x, lo, hi| ChartPoint {
            x,
            y: 0.0,
            y_low: lo,
            y_high: hi,
        };
        let band = band_polygon(&[p(1.0, 0.0, 2.0), p(2.0, 1.0, 3.0), p(3.0, f64::NAN, 1.0)]);
        assert_eq!(band, vec![(1.0, 2.0), (2.0, 3.0), (2.0, 1.0), (1.0, 0.0)]);
    }
}
