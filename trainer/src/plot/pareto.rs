//! `pareto.png`/`pareto.svg`: int8 accuracy against flash for the candidates of `kiln fit`.

use super::{draw_fitted_text, font, palette, short_number, Figure, FONT};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;

/// One candidate network of a `kiln fit` search.
#[derive(Debug, Clone)]
pub struct ParetoPoint {
    /// e.g. "784-32-10"
    pub label: String,
    /// Flash the candidate needs on the core (model blob + runtime code), bytes.
    pub flash_bytes: u64,
    /// int8 accuracy on the selection (validation) set, 0..=1; None when not trained (rejected before training) -> not drawn.
    pub accuracy: Option<f64>,
    /// Whether it fits every budget.
    pub fits: bool,
    /// The chosen model.
    pub winner: bool,
}

/// Accuracy against flash, one marker per trained candidate, with the Pareto frontier of
/// the fitting candidates and the flash budget.
#[derive(Debug, Clone)]
pub struct ParetoFigure<'a> {
    /// One line above the chart (data, core, budgets).
    pub title: String,
    pub points: &'a [ParetoPoint],
    /// The flash budget, drawn as a vertical dashed line labelled "flash budget".
    pub flash_budget: Option<u64>,
}

impl ParetoPoint {
    /// The accuracy of a trained candidate, if it is a number; only those are drawn.
    fn drawn_accuracy(&self) -> Option<f64> {
        self.accuracy.filter(|accuracy| accuracy.is_finite())
    }

    fn flash_kib(&self) -> f64 {
        self.flash_bytes as f64 / 1024.0
    }
}

/// The indices of the fitting, drawn candidates that no other fitting candidate dominates
/// (as small or smaller and as accurate or more, better in one), sorted by flash. Equal
/// candidates do not dominate each other, so all of them stay on the frontier.
pub fn pareto_frontier(points: &[ParetoPoint]) -> Vec<usize> {
    let candidates: Vec<(usize, u64, f64)> = points
        .iter()
        .enumerate()
        .filter(|(_, point)| point.fits)
        .filter_map(|(index, point)| {
            point
                .drawn_accuracy()
                .map(|accuracy| (index, point.flash_bytes, accuracy))
        })
        .collect();
    // Quadratic: a search has at most a few hundred candidates, and this reads as the definition.
    let is_dominated = |&(_, flash, accuracy): &(usize, u64, f64)| {
        candidates.iter().any(|&(_, other_flash, other_accuracy)| {
            other_flash <= flash
                && other_accuracy >= accuracy
                && (other_flash < flash || other_accuracy > accuracy)
        })
    };
    let mut frontier: Vec<(u64, usize)> = candidates
        .iter()
        .filter(|candidate| !is_dominated(candidate))
        .map(|&(index, flash, _)| (flash, index))
        .collect();
    frontier.sort_unstable();
    frontier.into_iter().map(|(_, index)| index).collect()
}

/// The smallest and largest of `values`, or None when there are none.
fn min_max(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values.into_iter().fold(None, |range, value| match range {
        None => Some((value, value)),
        Some((lo, hi)) => Some((lo.min(value), hi.max(value))),
    })
}

/// The flash axis in KiB: from 0 when the smallest value is no farther from 0 than the
/// values are spread (so sizes compare by length), else from a bit below it; to a bit beyond
/// the largest.
fn flash_range(kibs: impl IntoIterator<Item = f64>) -> Range<f64> {
    let Some((lo, hi)) = min_max(kibs) else {
        return 0.0..1.0;
    };
    let spread = hi - lo;
    if spread <= 0.0 {
        // One size (or all equal): only 0 gives it a scale.
        return 0.0..(hi * 1.1).max(0.5);
    }
    let pad = spread * 0.08;
    let start = if lo <= spread || lo - pad <= 0.0 {
        0.0
    } else {
        lo - pad
    };
    start..hi + pad
}

/// The corner of the chart with the fewest markers near it, the upper left (where small,
/// accurate networks would be and rarely are) on a tie. The winner counts more: its label
/// must stay readable.
fn legend_corner(
    places: impl IntoIterator<Item = ((f64, f64), bool)>,
    x_range: &Range<f64>,
    y_range: &Range<f64>,
) -> SeriesLabelPosition {
    let corners = [
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let mut crowding = [0usize; 4];
    for ((x, y), winner) in places {
        let across = (x - x_range.start) / (x_range.end - x_range.start);
        let up = (y - y_range.start) / (y_range.end - y_range.start);
        for (count, (_, right, top)) in crowding.iter_mut().zip(&corners) {
            let near_x = if *right { across > 0.6 } else { across < 0.4 };
            let near_y = if *top { up > 0.6 } else { up < 0.4 };
            if near_x && near_y {
                *count += if winner { 10 } else { 1 };
            }
        }
    }
    let quietest = (0..corners.len())
        .min_by_key(|&corner| crowding[corner])
        .unwrap_or(0);
    corners[quietest].0.clone()
}

/// The accuracy axis: a bit below the lowest to a bit above the highest, within [0, 1], and
/// at least a few points wide so one candidate or equal ones still get a readable axis.
fn accuracy_range(accuracies: impl IntoIterator<Item = f64>) -> Range<f64> {
    let Some((lo, hi)) = min_max(accuracies.into_iter().map(|a| a.clamp(0.0, 1.0))) else {
        return 0.0..1.0;
    };
    let pad = ((hi - lo) * 0.1).max(0.02);
    (lo - pad).max(0.0)..(hi + pad).min(1.0)
}

/// Enough decimals for about ten ticks over `range` to read differently.
fn accuracy_decimals(range: &Range<f64>) -> usize {
    let rough_step = (range.end - range.start) / 10.0;
    (-rough_step.log10()).ceil().clamp(2.0, 4.0) as usize
}

impl ParetoFigure<'_> {
    pub const WIDTH: u32 = 900;
    pub const HEIGHT: u32 = 600;
    /// How far the winner's label and the budget's label sit from their mark, in pixels.
    const LABEL_GAP: i32 = 14;
}

impl Figure for ParetoFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (Self::WIDTH, Self::HEIGHT)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        draw_fitted_text(
            root,
            &self.title,
            (Self::WIDTH as i32 / 2, 24),
            20.0,
            palette::INK,
            Self::WIDTH - 40,
        )?;
        draw_fitted_text(
            root,
            "one marker per trained candidate; frontier: no other fitting candidate is both as small and as accurate",
            (Self::WIDTH as i32 / 2, 50),
            14.0,
            palette::MUTED,
            Self::WIDTH - 40,
        )?;
        let (_, body) = root.split_vertically(66);

        // Every trained candidate whose accuracy is a number, with its place on the chart.
        let drawn: Vec<(&ParetoPoint, (f64, f64))> = self
            .points
            .iter()
            .filter_map(|point| {
                let accuracy = point.drawn_accuracy()?;
                Some((point, (point.flash_kib(), accuracy.clamp(0.0, 1.0))))
            })
            .collect();
        let budget_kib = self.flash_budget.map(|bytes| bytes as f64 / 1024.0);
        let x_range = flash_range(drawn.iter().map(|(_, (x, _))| *x).chain(budget_kib));
        let y_range = accuracy_range(drawn.iter().map(|(_, (_, y))| *y));
        let y_decimals = accuracy_decimals(&y_range);
        let x_middle = (x_range.start + x_range.end) / 2.0;

        let mut chart = ChartBuilder::on(&body)
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(74)
            .build_cartesian_2d(x_range.clone(), y_range.clone())?;
        chart
            .configure_mesh()
            .x_desc("flash (KiB)")
            .y_desc("int8 accuracy")
            .x_labels(10)
            .y_labels(10)
            .x_label_formatter(&|v| short_number(*v))
            .y_label_formatter(&|v| format!("{v:.y_decimals$}"))
            .label_style(font(14.0, palette::INK))
            .axis_desc_style(font(16.0, palette::INK))
            .light_line_style(RGBColor(244, 244, 244))
            .draw()?;

        if drawn.is_empty() {
            chart.draw_series(std::iter::once(Text::new(
                "no trained candidate to show",
                (x_middle, (y_range.start + y_range.end) / 2.0),
                font(16.0, palette::MUTED).pos(Pos::new(HPos::Center, VPos::Center)),
            )))?;
        }

        if let Some(budget) = budget_kib {
            chart.draw_series(DashedLineSeries::new(
                [(budget, y_range.start), (budget, y_range.end)],
                8,
                6,
                palette::WRONG.stroke_width(2),
            ))?;
            // Beside the line on the side with more room: at the top left of a budget on the
            // right, else at the bottom right, away from the legend's usual upper left.
            let (anchor, offset, hpos) = if budget > x_middle {
                (
                    (budget, y_range.end),
                    (-Self::LABEL_GAP / 2, 12),
                    HPos::Right,
                )
            } else {
                (
                    (budget, y_range.start),
                    (Self::LABEL_GAP / 2, -12),
                    HPos::Left,
                )
            };
            chart.draw_series(std::iter::once(
                EmptyElement::at(anchor)
                    + Text::new(
                        "flash budget",
                        offset,
                        font(14.0, palette::WRONG).pos(Pos::new(hpos, VPos::Center)),
                    ),
            ))?;
        }

        let mut has_legend = false;
        let frontier: Vec<(f64, f64)> = pareto_frontier(self.points)
            .into_iter()
            .map(|index| {
                let point = &self.points[index];
                let accuracy = point.accuracy.unwrap_or(0.0).clamp(0.0, 1.0);
                (point.flash_kib(), accuracy)
            })
            .collect();
        // Drawn before the markers so they stay on top; one place (equal candidates) makes no line.
        if frontier.windows(2).any(|pair| pair[0] != pair[1]) {
            chart
                .draw_series(LineSeries::new(frontier, palette::INK.stroke_width(1)))?
                .label("Pareto frontier")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], palette::INK.stroke_width(1))
                });
            has_legend = true;
        }

        // The winner gets its own marker, so it is left out of the others.
        let (fitting, not_fitting): (Vec<_>, Vec<_>) = drawn
            .iter()
            .filter(|(point, _)| !point.winner)
            .partition(|(point, _)| point.fits);
        if !fitting.is_empty() {
            chart
                .draw_series(
                    fitting
                        .iter()
                        .map(|(_, place)| Circle::new(*place, 5, palette::TRAIN.filled())),
                )?
                .label("fits")
                .legend(|(x, y)| Circle::new((x + 12, y), 5, palette::TRAIN.filled()));
            has_legend = true;
        }
        if !not_fitting.is_empty() {
            chart
                .draw_series(
                    not_fitting
                        .iter()
                        .map(|(_, place)| Cross::new(*place, 5, palette::MUTED.stroke_width(2))),
                )?
                .label("does not fit")
                .legend(|(x, y)| Cross::new((x + 12, y), 5, palette::MUTED.stroke_width(2)));
            has_legend = true;
        }

        let winners: Vec<_> = drawn.iter().filter(|(point, _)| point.winner).collect();
        if !winners.is_empty() {
            chart
                .draw_series(winners.iter().map(|(point, place)| {
                    // The label goes left of a winner near the right edge, so it stays inside.
                    let near_right = place.0 > x_range.start + (x_range.end - x_range.start) * 0.7;
                    let (dx, hpos) = if near_right {
                        (-Self::LABEL_GAP, HPos::Right)
                    } else {
                        (Self::LABEL_GAP, HPos::Left)
                    };
                    EmptyElement::at(*place)
                        + Circle::new((0, 0), 9, palette::VALIDATION.filled())
                        + Circle::new((0, 0), 9, palette::INK.stroke_width(1))
                        + Text::new(
                            point.label.clone(),
                            (dx, 0),
                            font(15.0, palette::INK).pos(Pos::new(hpos, VPos::Center)),
                        )
                }))?
                .label("winner")
                .legend(|(x, y)| Circle::new((x + 12, y), 7, palette::VALIDATION.filled()));
            has_legend = true;
        }

        if has_legend {
            let places = drawn.iter().map(|(point, place)| (*place, point.winner));
            chart
                .configure_series_labels()
                .position(legend_corner(places, &x_range, &y_range))
                .margin(12)
                .label_font((FONT, 15).into_font())
                .background_style(WHITE.mix(0.9))
                .border_style(palette::MUTED)
                .draw()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::{png_bytes, svg_text};
    use std::path::Path;

    fn point(label: &str, flash_bytes: u64, accuracy: Option<f64>, fits: bool) -> ParetoPoint {
        ParetoPoint {
            label: label.into(),
            flash_bytes,
            accuracy,
            fits,
            winner: false,
        }
    }

    /// A search of ten candidates: the winner "784-64-10", two over budget, one untrained.
    fn search() -> Vec<ParetoPoint> {
        let mut points = vec![
            point("784-10", 9_000, Some(0.84), true),
            point("784-16-10", 14_000, Some(0.90), true),
            point("784-24-10", 20_000, Some(0.89), true),
            point("784-32-10", 26_000, Some(0.93), true),
            point("784-32-16-10", 27_500, Some(0.925), true),
            point("784-48-10", 38_000, Some(0.945), true),
            point("784-64-10", 50_000, Some(0.955), true),
            point("784-96-10", 76_000, Some(0.962), false),
            point("784-128-10", 101_000, Some(0.965), false),
            point("784-256-10", 201_000, None, false),
        ];
        points[6].winner = true;
        points
    }

    /// The RGB pixels of a PNG of the figure, after checking its signature and size.
    fn rendered_pixels(figure: &ParetoFigure<'_>) -> Vec<[u8; 3]> {
        let bytes = png_bytes(figure, Path::new("pareto.png")).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut rgb).unwrap();
        assert_eq!(
            (info.width, info.height),
            (ParetoFigure::WIDTH, ParetoFigure::HEIGHT)
        );
        assert_eq!(info.color_type, png::ColorType::Rgb);
        rgb[..info.buffer_size()]
            .chunks_exact(3)
            .map(|pixel| [pixel[0], pixel[1], pixel[2]])
            .collect()
    }

    fn count_of(pixels: &[[u8; 3]], color: RGBColor) -> usize {
        pixels
            .iter()
            .filter(|pixel| **pixel == [color.0, color.1, color.2])
            .count()
    }

    /// The texts of an SVG of the figure (the backend writes each on its own line), after
    /// checking the axis titles are among them.
    fn rendered_texts(figure: &ParetoFigure<'_>) -> Vec<String> {
        let svg = svg_text(figure, Path::new("pareto.svg")).unwrap();
        let texts: Vec<String> = svg
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('<'))
            .map(str::to_owned)
            .collect();
        assert!(texts.iter().any(|t| t == "flash (KiB)"), "no x axis title");
        assert!(
            texts.iter().any(|t| t == "int8 accuracy"),
            "no y axis title"
        );
        texts
    }

    fn has_text(texts: &[String], wanted: &str) -> bool {
        texts.iter().any(|text| text == wanted)
    }

    #[test]
    fn frontier_excludes_dominated_points_and_sorts_by_flash() {
        let points = search();
        // 784-24-10 is beaten by 784-16-10 and 784-32-16-10 by 784-32-10; the last
        // three do not fit.
        assert_eq!(pareto_frontier(&points), vec![0, 1, 3, 5, 6]);
        let mut shuffled = points.clone();
        shuffled.reverse();
        assert_eq!(pareto_frontier(&shuffled), vec![9, 8, 6, 4, 3]);
    }

    #[test]
    fn frontier_handles_ties() {
        let points = vec![
            // Same flash, less accurate: dominated.
            point("a", 1000, Some(0.8), true),
            point("b", 1000, Some(0.9), true),
            // Same accuracy, more flash: dominated.
            point("c", 2000, Some(0.9), true),
            // Identical candidates: neither is better, both stay.
            point("d", 3000, Some(0.95), true),
            point("e", 3000, Some(0.95), true),
        ];
        assert_eq!(pareto_frontier(&points), vec![1, 3, 4]);
    }

    #[test]
    fn frontier_ignores_non_fitting_untrained_and_nan_points() {
        let points = vec![
            point("fits", 2000, Some(0.8), true),
            // Would dominate everything, but is over a budget.
            point("too big", 100, Some(0.99), false),
            point("untrained", 100, None, true),
            point("nan", 100, Some(f64::NAN), true),
            point("infinite", 100, Some(f64::INFINITY), true),
            point("free", 0, Some(0.5), true),
        ];
        assert_eq!(pareto_frontier(&points), vec![5, 0]);
        assert!(pareto_frontier(&[]).is_empty());
        assert!(pareto_frontier(&points[1..5]).is_empty());
    }

    #[test]
    fn ranges_stay_sensible() {
        assert_eq!(flash_range([]), 0.0..1.0);
        assert_eq!(flash_range([0.0, 0.0]), 0.0..0.5);
        let single = flash_range([100.0]);
        assert!(
            single.start == 0.0 && (single.end - 110.0).abs() < 1e-9,
            "{single:?}"
        );
        assert_eq!(flash_range([10.0, 110.0]), 0.0..118.0);
        let narrow = flash_range([100.0, 110.0]);
        assert!(narrow.start > 90.0 && narrow.start < 100.0, "{narrow:?}");
        assert!(narrow.end > 110.0, "{narrow:?}");
        assert_eq!(accuracy_range([]), 0.0..1.0);
        let one = accuracy_range([0.9]);
        assert!(one.start < 0.9 && one.end > 0.9, "{one:?}");
        assert_eq!(accuracy_range([1.0, 1.0]).end, 1.0);
        assert_eq!(accuracy_range([0.0, 0.5]).start, 0.0);
        assert_eq!(accuracy_decimals(&(0.0..1.0)), 2);
        assert_eq!(accuracy_decimals(&(0.9..0.95)), 3);
    }

    #[test]
    fn legend_avoids_the_markers() {
        let (x_range, y_range) = (0.0..10.0, 0.0..1.0);
        let corner = |places: &[((f64, f64), bool)]| {
            legend_corner(places.iter().copied(), &x_range, &y_range)
        };
        assert!(matches!(corner(&[]), SeriesLabelPosition::UpperLeft));
        let upper_left_winner = [((0.5, 0.95), true), ((9.0, 0.1), false)];
        assert!(matches!(
            corner(&upper_left_winner),
            SeriesLabelPosition::UpperRight
        ));
    }

    #[test]
    fn draws_a_search_with_a_winner_and_a_budget() {
        let points = search();
        let figure = ParetoFigure {
            title: "mnist on cortex-m4: flash 64 KiB, RAM 16 KiB".into(),
            points: &points,
            flash_budget: Some(64 * 1024),
        };
        let pixels = rendered_pixels(&figure);
        assert!(
            count_of(&pixels, palette::VALIDATION) > 100,
            "no winner marker"
        );
        assert!(
            count_of(&pixels, palette::TRAIN) > 100,
            "no fitting markers"
        );
        assert!(count_of(&pixels, palette::WRONG) > 50, "no budget line");
        let texts = rendered_texts(&figure);
        assert!(has_text(&texts, "784-64-10"), "no winner label");
        // Only the winner is labelled.
        assert!(!has_text(&texts, "784-48-10"));
        assert!(has_text(&texts, "flash budget"));
        assert!(has_text(&texts, &figure.title));
        for entry in ["fits", "does not fit", "winner", "Pareto frontier"] {
            assert!(has_text(&texts, entry), "no legend entry {entry}");
        }
    }

    #[test]
    fn draws_no_points() {
        let figure = ParetoFigure {
            title: "nothing trained".into(),
            points: &[],
            flash_budget: None,
        };
        let pixels = rendered_pixels(&figure);
        assert_eq!(count_of(&pixels, palette::TRAIN), 0);
        assert_eq!(count_of(&pixels, palette::VALIDATION), 0);
        let texts = rendered_texts(&figure);
        assert!(has_text(&texts, "no trained candidate to show"));
        assert!(!has_text(&texts, "winner"));
    }

    #[test]
    fn draws_a_single_point() {
        let mut points = vec![point("784-10", 0, Some(0.7), true)];
        points[0].winner = true;
        let figure = ParetoFigure {
            title: "one candidate".into(),
            points: &points,
            flash_budget: Some(1024),
        };
        let pixels = rendered_pixels(&figure);
        assert!(
            count_of(&pixels, palette::VALIDATION) > 100,
            "no winner marker"
        );
        let texts = rendered_texts(&figure);
        assert!(has_text(&texts, "784-10"));
        assert!(!has_text(&texts, "no trained candidate to show"));
    }

    #[test]
    fn draws_equal_points_and_skips_untrained_and_nan_ones() {
        let mut points: Vec<ParetoPoint> = (0..4)
            .map(|i| point(&format!("784-{i}-10"), 30_000, Some(0.5), true))
            .collect();
        points.push(point("untrained", 90_000, None, true));
        points.push(point("diverged", 90_000, Some(f64::NAN), true));
        // A winner that cannot be drawn has no label.
        points[4].winner = true;
        points[5].winner = true;
        let figure = ParetoFigure {
            title: "all equal".into(),
            points: &points,
            flash_budget: None,
        };
        let pixels = rendered_pixels(&figure);
        assert!(count_of(&pixels, palette::TRAIN) > 50, "no fitting markers");
        assert_eq!(count_of(&pixels, palette::VALIDATION), 0);
        let texts = rendered_texts(&figure);
        assert!(!has_text(&texts, "untrained") && !has_text(&texts, "diverged"));
        assert!(has_text(&texts, "fits"));
        assert!(
            !has_text(&texts, "Pareto frontier"),
            "a frontier of one place"
        );
    }
}
