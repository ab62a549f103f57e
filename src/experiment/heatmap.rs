//! Heatmaps with a boundary line, as PNG and SVG: a map's share of seeds
//! that recover at each point, one panel per variant, side by side.
//!
//! Like [`super::chart::LineChart`], a heatmap is plain data; fonts and
//! colours are the line charts' (the embedded DejaVu Sans, colours that
//! stay apart under the common colour-vision deficiencies).

use super::chart::{format_tick, ChartError, Figure, FONT_FAMILY};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Width of one panel, in pixels; the height is fixed.
const PANEL_WIDTH_PX: u32 = 700;
const HEIGHT_PX: u32 = 700;
/// Width of the colour key at the right.
const KEY_WIDTH_PX: u32 = 170;
/// Most panels in one picture.
pub const PANELS_MAX: usize = 16;

/// The colours at value 0 (stays down), 1/2 and 1 (recovers).
const LOW: RGBColor = RGBColor(213, 94, 0);
const MIDDLE: RGBColor = RGBColor(247, 247, 247);
const HIGH: RGBColor = RGBColor(0, 114, 178);
/// Cells without a value (nothing judged there).
const NONE: RGBColor = RGBColor(190, 190, 190);

/// One rectangle of colour: `value` in [0, 1], or NaN for none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeatCell {
    pub x: (f64, f64),
    pub y: (f64, f64),
    pub value: f64,
}

/// One panel: its cells, the points actually evaluated, and the boundary
/// as polylines (broken where a column has no crossing).
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub title: String,
    pub cells: Vec<HeatCell>,
    pub points: Vec<(f64, f64)>,
    pub boundary: Vec<Vec<(f64, f64)>>,
}

/// A picture of panels sharing axes and colour key.
#[derive(Clone, Debug, PartialEq)]
pub struct Heatmap {
    pub name: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// What the colour says, e.g. `share of seeds that recover` (`\n` breaks
    /// a line).
    pub key_label: String,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    pub panels: Vec<Panel>,
}

impl Figure for Heatmap {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> (u32, u32) {
        let panels = self.panels.len().clamp(1, PANELS_MAX) as u32;
        (panels * PANEL_WIDTH_PX + KEY_WIDTH_PX, HEIGHT_PX)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), ChartError> {
        if self.panels.is_empty() || self.panels.len() > PANELS_MAX {
            return Err(self.error(format!("1 to {PANELS_MAX} panels")));
        }
        root.fill(&WHITE).map_err(|e| self.error(e))?;
        let root = root
            .titled(&self.title, (FONT_FAMILY, 28))
            .map_err(|e| self.error(e))?;
        let (width, _) = root.dim_in_pixel();
        let (panels, key) = root.split_horizontally(width.saturating_sub(KEY_WIDTH_PX));
        let areas = panels.split_evenly((1, self.panels.len()));
        for (panel, area) in self.panels.iter().zip(&areas) {
            self.draw_panel(panel, area)?;
        }
        self.draw_key(&key)
    }
}

impl Heatmap {
    fn draw_panel<DB: DrawingBackend>(
        &self,
        panel: &Panel,
        area: &DrawingArea<DB, Shift>,
    ) -> Result<(), ChartError> {
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, (FONT_FAMILY, 22))
            .margin(16)
            .x_label_area_size(60)
            .y_label_area_size(80)
            .build_cartesian_2d(
                self.x_range.0..self.x_range.1,
                self.y_range.0..self.y_range.1,
            )
            .map_err(|e| self.error(e))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .axis_desc_style((FONT_FAMILY, 18))
            .label_style((FONT_FAMILY, 15))
            .x_label_formatter(&|v| format_tick(*v))
            .y_label_formatter(&|v| format_tick(*v))
            .draw()
            .map_err(|e| self.error(e))?;
        let cells = panel
            .cells
            .iter()
            .map(|c| Rectangle::new([(c.x.0, c.y.0), (c.x.1, c.y.1)], colour(c.value).filled()));
        chart.draw_series(cells).map_err(|e| self.error(e))?;
        let dots = panel
            .points
            .iter()
            .map(|&p| Circle::new(p, 2, BLACK.mix(0.45).filled()));
        chart.draw_series(dots).map_err(|e| self.error(e))?;
        for piece in &panel.boundary {
            let line = LineSeries::new(piece.iter().copied(), BLACK.stroke_width(3));
            chart.draw_series(line).map_err(|e| self.error(e))?;
            let ends = piece.iter().map(|&p| Circle::new(p, 5, BLACK.filled()));
            chart.draw_series(ends).map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// The colour key: a bar from 0 to 1, and what the boundary line is.
    fn draw_key<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> Result<(), ChartError> {
        let (_, height) = area.dim_in_pixel();
        let (top, bottom) = (90_i32, height as i32 - 140);
        let steps = 50;
        for i in 0..steps {
            let v = 1.0 - f64::from(i) / f64::from(steps);
            let y0 = top + (bottom - top) * i / steps;
            let y1 = top + (bottom - top) * (i + 1) / steps;
            area.draw(&Rectangle::new([(20, y0), (50, y1)], colour(v).filled()))
                .map_err(|e| self.error(e))?;
        }
        let font = (FONT_FAMILY, 15).into_font();
        let labels = [
            (top, "1: all recover"),
            ((top + bottom) / 2, "0.5"),
            (bottom, "0: all stay down"),
        ];
        for (y, text) in labels {
            area.draw(&Text::new(text, (56, y - 7), font.clone()))
                .map_err(|e| self.error(e))?;
        }
        for (n, words) in self.key_label.split('\n').enumerate() {
            let y = top - 60 + 20 * n as i32;
            area.draw(&Text::new(words.to_string(), (10, y), font.clone()))
                .map_err(|e| self.error(e))?;
        }
        let line_y = bottom + 40;
        area.draw(&PathElement::new(
            vec![(20, line_y), (50, line_y)],
            BLACK.stroke_width(3),
        ))
        .map_err(|e| self.error(e))?;
        area.draw(&Text::new("share = 1/2", (56, line_y - 7), font.clone()))
            .map_err(|e| self.error(e))?;
        area.draw(&Circle::new((35, line_y + 30), 2, BLACK.mix(0.45).filled()))
            .map_err(|e| self.error(e))?;
        area.draw(&Text::new("point run", (56, line_y + 23), font))
            .map_err(|e| self.error(e))
    }
}

/// Vermillion through near-white to blue: 0, 1/2, 1.
fn colour(value: f64) -> RGBColor {
    if !value.is_finite() {
        return NONE;
    }
    let v = value.clamp(0.0, 1.0);
    let (from, to, t) = if v < 0.5 {
        (LOW, MIDDLE, v * 2.0)
    } else {
        (MIDDLE, HIGH, v * 2.0 - 1.0)
    };
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * t).round() as u8;
    RGBColor(mix(from.0, to.0), mix(from.1, to.1), mix(from.2, to.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> Heatmap {
        let cell = |x: f64, y: f64, value| HeatCell {
            x: (x, x + 1.0),
            y: (y, y + 1.0),
            value,
        };
        let panel = |title: &str, edge: f64| Panel {
            title: title.to_string(),
            cells: (0..4)
                .flat_map(|x| (0..4).map(move |y| (x, y)))
                .map(|(x, y)| {
                    cell(
                        f64::from(x),
                        f64::from(y),
                        if f64::from(y) < edge { 1.0 } else { 0.0 },
                    )
                })
                .collect(),
            points: vec![(0.5, 0.5)],
            boundary: vec![vec![(0.5, edge), (3.5, edge)]],
        };
        Heatmap {
            name: "t".into(),
            title: "a map".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            key_label: "share".into(),
            x_range: (0.0, 4.0),
            y_range: (0.0, 4.0),
            panels: vec![panel("one", 2.0), panel("two", 3.0)],
        }
    }

    #[test]
    fn colours_run_from_down_to_recovered() {
        assert_eq!(colour(0.0), LOW);
        assert_eq!(colour(0.5), MIDDLE);
        assert_eq!(colour(1.0), HIGH);
        assert_eq!(colour(f64::NAN), NONE);
    }

    #[test]
    fn an_svg_has_every_panel_and_the_same_bytes_twice() {
        let m = map();
        let svg = m.to_svg().expect("draws");
        assert!(
            svg.contains("\none\n") && svg.contains("\ntwo\n"),
            "panel titles"
        );
        assert_eq!(svg, m.to_svg().expect("draws"));
        let mut none = m.clone();
        none.panels.clear();
        assert!(none.to_svg().is_err());
    }
}
