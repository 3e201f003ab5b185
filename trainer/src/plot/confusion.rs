//! `confusion.png`/`confusion.svg`: true class against predicted class.

use super::{draw_fitted_text, font, palette, Figure};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// A confusion matrix: `counts[true_class][predicted_class]`. A cell's shade is its share of
/// the row (the recall of the diagonal), so rare classes are as visible as common ones, on a
/// square-root scale, so one mistake among fifty still shows.
#[derive(Debug, Clone)]
pub struct ConfusionFigure<'a> {
    pub title: String,
    pub counts: &'a [Vec<usize>],
}

impl ConfusionFigure<'_> {
    pub const WIDTH: u32 = 820;
    pub const HEIGHT: u32 = 860;
    const LEFT: i32 = 110;
    const TOP: i32 = 122;
    const RIGHT: i32 = 40;
    const BOTTOM: i32 = 90;
}

/// White for 0, the heat colour for 1, on a square-root scale.
fn shade(fraction: f64) -> RGBColor {
    let f = fraction.clamp(0.0, 1.0).sqrt();
    let mix = |full: u8| (255.0 + (f64::from(full) - 255.0) * f).round() as u8;
    RGBColor(
        mix(palette::HEAT.0),
        mix(palette::HEAT.1),
        mix(palette::HEAT.2),
    )
}

impl Figure for ConfusionFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (Self::WIDTH, Self::HEIGHT)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let (width, height) = (Self::WIDTH as i32, Self::HEIGHT as i32);
        let centered = |size, color| font(size, color).pos(Pos::new(HPos::Center, VPos::Center));
        draw_fitted_text(
            root,
            &self.title,
            (width / 2, 24),
            20.0,
            palette::INK,
            Self::WIDTH - 40,
        )?;
        root.draw(&Text::new(
            "rows: true class, columns: predicted class; shade: share of the row (square root)",
            (width / 2, 52),
            centered(15.0, palette::MUTED),
        ))?;

        let n_classes = self.counts.len().max(1) as i32;
        let span = (width - Self::LEFT - Self::RIGHT).min(height - Self::TOP - Self::BOTTOM);
        let cell = (span / n_classes).max(1);
        let (x0, y0) = (Self::LEFT + (span - cell * n_classes) / 2, Self::TOP);
        let grid = cell * n_classes;
        // Counts are written while they fit in their cell.
        let count_size = (f64::from(cell) * 0.36).min(16.0);
        let label_size = (f64::from(cell) * 0.5).clamp(7.0, 15.0);
        let label_every = (12.0 / f64::from(cell)).ceil().max(1.0) as usize;

        for (true_class, row) in self.counts.iter().enumerate() {
            let row_total: usize = row.iter().sum();
            for (predicted, &count) in row.iter().enumerate() {
                let fraction = if row_total == 0 {
                    0.0
                } else {
                    count as f64 / row_total as f64
                };
                let (x, y) = (x0 + predicted as i32 * cell, y0 + true_class as i32 * cell);
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    shade(fraction).filled(),
                ))?;
                if count > 0 && count_size >= 7.0 {
                    let ink = if fraction > 0.3 { WHITE } else { palette::INK };
                    root.draw(&Text::new(
                        count.to_string(),
                        (x + cell / 2, y + cell / 2),
                        centered(count_size, ink),
                    ))?;
                }
            }
        }
        root.draw(&Rectangle::new(
            [(x0, y0), (x0 + grid, y0 + grid)],
            palette::MUTED.stroke_width(1),
        ))?;

        // Class labels: predicted along the top, true down the left.
        for class in (0..n_classes as usize).step_by(label_every) {
            let center = class as i32 * cell + cell / 2;
            root.draw(&Text::new(
                class.to_string(),
                (x0 + center, y0 - 14),
                centered(label_size, palette::INK),
            ))?;
            root.draw(&Text::new(
                class.to_string(),
                (x0 - 16, y0 + center),
                centered(label_size, palette::INK),
            ))?;
        }
        root.draw(&Text::new(
            "predicted class",
            (x0 + grid / 2, y0 - 38),
            centered(16.0, palette::INK),
        ))?;
        root.draw(&Text::new(
            "true class",
            (x0 - 56, y0 + grid / 2),
            font(16.0, palette::INK)
                .transform(FontTransform::Rotate270)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;

        // The shade scale under the grid.
        let (bar_x, bar_y, bar_w) = (x0 + grid / 2 - 150, y0 + grid + 18, 300);
        for step in 0..bar_w {
            root.draw(&Rectangle::new(
                [(bar_x + step, bar_y), (bar_x + step + 1, bar_y + 14)],
                shade(f64::from(step) / f64::from(bar_w - 1)).filled(),
            ))?;
        }
        root.draw(&Rectangle::new(
            [(bar_x, bar_y), (bar_x + bar_w, bar_y + 14)],
            palette::MUTED.stroke_width(1),
        ))?;
        for (fraction, text) in [(0.0, "0"), (0.1, "0.1"), (0.5, "0.5"), (1.0, "1")] {
            let x = bar_x + (fraction * f64::from(bar_w - 1)).round() as i32;
            root.draw(&PathElement::new(
                vec![(x, bar_y + 14), (x, bar_y + 19)],
                palette::MUTED.stroke_width(1),
            ))?;
            root.draw(&Text::new(
                text,
                (x, bar_y + 28),
                centered(13.0, palette::INK),
            ))?;
        }
        root.draw(&Text::new(
            "share of the true class",
            (bar_x + bar_w / 2, bar_y + 48),
            centered(14.0, palette::MUTED),
        ))?;
        Ok(())
    }
}
