//! `training.png`/`training.svg`: loss and accuracy per epoch, train and validation.

use super::{draw_fitted_text, font, palette, short_number, Figure, FONT};
use crate::model::EpochRecord;
use plotters::coord::Shift;
use plotters::prelude::*;

/// The training curves of one run. Loss is drawn on a log scale, where the late epochs'
/// small differences stay visible next to the first epoch's large loss.
#[derive(Debug, Clone)]
pub struct TrainingFigure<'a> {
    /// One line above the panels (data, architecture, test accuracy).
    pub title: String,
    pub history: &'a [EpochRecord],
}

/// One curve of a panel.
struct Curve {
    label: &'static str,
    color: RGBColor,
    points: Vec<(i32, f64)>,
}

impl TrainingFigure<'_> {
    pub const WIDTH: u32 = 1200;
    pub const HEIGHT: u32 = 520;

    fn curves(&self, value: impl Fn(&EpochRecord) -> (f64, Option<f64>)) -> Vec<Curve> {
        let mut train = Vec::new();
        let mut validation = Vec::new();
        for record in self.history {
            let (train_value, validation_value) = value(record);
            let epoch = record.epoch as i32;
            if train_value.is_finite() {
                train.push((epoch, train_value));
            }
            if let Some(v) = validation_value.filter(|v| v.is_finite()) {
                validation.push((epoch, v));
            }
        }
        [
            ("train", palette::TRAIN, train),
            ("validation", palette::VALIDATION, validation),
        ]
        .into_iter()
        .filter(|(_, _, points)| !points.is_empty())
        .map(|(label, color, points)| Curve {
            label,
            color,
            points,
        })
        .collect()
    }

    fn loss_curves(&self) -> Vec<Curve> {
        self.curves(|r| (r.train_loss, r.val_loss))
    }

    fn accuracy_curves(&self) -> Vec<Curve> {
        self.curves(|r| (r.train_accuracy.unwrap_or(f64::NAN), r.val_accuracy))
    }

    /// The epoch axis: the run's epochs, widened by one on each side for a single epoch.
    fn epoch_range(&self) -> std::ops::Range<i32> {
        let first = self.history.first().map_or(1, |r| r.epoch as i32);
        let last = self.history.last().map_or(1, |r| r.epoch as i32);
        if last > first {
            first..last
        } else {
            (first - 1)..(last + 1)
        }
    }
}

impl Figure for TrainingFigure<'_> {
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
            21.0,
            palette::INK,
            Self::WIDTH - 40,
        )?;
        let (_, body) = root.split_vertically(46);
        let accuracy = self.accuracy_curves();
        let loss = self.loss_curves();
        if accuracy.is_empty() {
            // Regression: no accuracy, the loss takes the whole width.
            draw_loss(&body, &loss, self.epoch_range())?;
        } else {
            let panels = body.split_evenly((1, 2));
            draw_loss(&panels[0], &loss, self.epoch_range())?;
            draw_accuracy(&panels[1], &accuracy, self.epoch_range())?;
        }
        Ok(())
    }
}

/// Ticks for a log axis from `lo` to `hi`: the powers of ten when the range spans more than
/// three decades, else 1, 2 and 5 times them, else every digit; a range narrower than that
/// (a loss that barely moves) gets evenly spaced round values instead.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let at = |multiples: &[f64]| -> Vec<f64> {
        (first..=last)
            .flat_map(|exponent| multiples.iter().map(move |m| m * 10f64.powi(exponent)))
            .filter(|tick| (lo..=hi).contains(tick))
            .collect()
    };
    if last - first > 3 {
        return at(&[1.0]);
    }
    let ticks = at(&[1.0, 2.0, 5.0]);
    if ticks.len() >= 4 {
        return ticks;
    }
    let ticks = at(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    if ticks.len() >= 4 {
        return ticks;
    }
    // A round step giving about five ticks.
    let rough = (hi - lo) / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|step| *step >= rough)
        .unwrap_or(10.0 * power);
    let mut ticks = Vec::new();
    let mut tick = (lo / step).ceil() * step;
    while tick <= hi {
        ticks.push(tick);
        tick += step;
    }
    ticks
}

/// The range of every finite value of `curves`.
fn value_range(curves: &[Curve]) -> Option<(f64, f64)> {
    let values = curves.iter().flat_map(|c| c.points.iter().map(|p| p.1));
    values.fold(None, |range, v| match range {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

fn draw_loss<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    curves: &[Curve],
    epochs: std::ops::Range<i32>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    // A log axis needs positive bounds; a loss of exactly 0 sits on the floor.
    let (lo, hi) = value_range(curves).unwrap_or((0.1, 1.0));
    let floor = if lo > 0.0 { lo } else { hi.max(1e-6) * 1e-3 }.max(1e-12);
    let (lo, hi) = (floor / 1.3, hi.max(floor * 1.01) * 1.3);
    let mut chart = ChartBuilder::on(area)
        .caption("Loss per epoch (log scale)", font(18.0, palette::INK))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(74)
        .build_cartesian_2d(
            epochs,
            (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
        )?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .x_labels(12)
        .y_label_formatter(&|v| short_number(*v))
        .label_style(font(14.0, palette::INK))
        .axis_desc_style(font(16.0, palette::INK))
        .light_line_style(RGBColor(244, 244, 244))
        .draw()?;
    for curve in curves {
        draw_curve(&mut chart, curve)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn draw_accuracy<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    curves: &[Curve],
    epochs: std::ops::Range<i32>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    // From a round value below the lowest accuracy up to 1, so the top is always "all right".
    let (lo, _) = value_range(curves).unwrap_or((0.0, 1.0));
    let bottom = ((lo - 0.02).max(0.0) * 20.0).floor() / 20.0;
    let mut chart = ChartBuilder::on(area)
        .caption("Accuracy per epoch", font(18.0, palette::INK))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(74)
        .build_cartesian_2d(epochs, bottom..1.0)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("accuracy")
        .x_labels(12)
        .y_labels(10)
        .y_label_formatter(&|v| format!("{v:.2}"))
        .label_style(font(14.0, palette::INK))
        .axis_desc_style(font(16.0, palette::INK))
        .light_line_style(RGBColor(244, 244, 244))
        .draw()?;
    for curve in curves {
        draw_curve(&mut chart, curve)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
}

fn draw_curve<'a, DB: DrawingBackend + 'a, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    curve: &Curve,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    X: Ranged<ValueType = i32>,
    Y: Ranged<ValueType = f64>,
{
    let color = curve.color;
    chart
        .draw_series(LineSeries::new(
            curve.points.iter().copied(),
            color.stroke_width(2),
        ))?
        .label(curve.label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
    // Dots mark the epochs while they are far enough apart to tell.
    if curve.points.len() <= 60 {
        chart.draw_series(
            curve
                .points
                .iter()
                .map(|&point| Circle::new(point, 3, color.filled())),
        )?;
    }
    Ok(())
}

fn draw_legend<'a, DB: DrawingBackend + 'a, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    X: Ranged<ValueType = i32>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(position)
        .margin(12)
        .label_font((FONT, 15).into_font())
        .background_style(WHITE.mix(0.9))
        .border_style(palette::MUTED)
        .draw()
}

#[cfg(test)]
mod tests {
    use super::log_ticks;

    #[test]
    fn log_ticks_are_round_and_inside_the_range() {
        assert_eq!(log_ticks(0.03, 2.5), vec![0.05, 0.1, 0.2, 0.5, 1.0, 2.0]);
        assert_eq!(
            log_ticks(1e-5, 10.0),
            vec![1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
        );
        let narrow = log_ticks(180.0, 380.0);
        assert_eq!(narrow, vec![200.0, 250.0, 300.0, 350.0]);
        let narrower = log_ticks(101.0, 109.0);
        assert!(narrower.len() >= 4, "{narrower:?}");
        assert!(narrower.iter().all(|t| (101.0..=109.0).contains(t)));
    }
}
