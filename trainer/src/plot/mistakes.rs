//! `mistakes.png`/`mistakes.svg`: the test images the model got wrong most confidently.

use super::{draw_fitted_text, font, palette, Figure};
use crate::data::{read_images, DataSpec};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One wrong prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Mistake {
    /// The sample's row in the test set.
    pub row_idx: usize,
    pub true_class: usize,
    pub predicted_class: usize,
    /// The model's probability for the class it predicted (softmax of the logits).
    pub confidence: f64,
}

/// A grid of mistakes, each drawn as its image with the true and predicted classes.
#[derive(Debug, Clone)]
pub struct MistakesFigure<'a> {
    pub title: String,
    /// `(rows, cols)` of one image.
    pub image_shape: (usize, usize),
    /// The raw features of every test sample, row-major.
    pub features: &'a [f32],
    /// At most [`MistakesFigure::MAX_SHOWN`], the most confident first.
    pub mistakes: &'a [Mistake],
}

/// The shape of one image if the data is made of images: IDX images (their header's two
/// dimensions), or any data whose feature count is a square (MNIST's 784, the digits' 64).
pub fn image_shape(spec: &DataSpec, n_features: usize) -> Option<(usize, usize)> {
    let side = (n_features as f64).sqrt().round() as usize;
    if side >= 2 && side * side == n_features {
        return Some((side, side));
    }
    if let DataSpec::Idx { train_images, .. } = spec {
        let images = read_images(train_images).ok()?;
        if let [rows, cols] = images.image_dims[..] {
            let (rows, cols) = (rows as usize, cols as usize);
            if rows * cols == n_features && rows >= 2 && cols >= 2 {
                return Some((rows, cols));
            }
        }
    }
    None
}

impl MistakesFigure<'_> {
    pub const COLUMNS: usize = 6;
    pub const ROWS: usize = 4;
    pub const MAX_SHOWN: usize = Self::COLUMNS * Self::ROWS;
    const TILE_WIDTH: i32 = 156;
    const TILE_HEIGHT: i32 = 178;
    /// The largest side an image is drawn at.
    const IMAGE_BOX: i32 = 120;
    const HEADER: i32 = 70;
    pub const WIDTH: u32 = (Self::COLUMNS as i32 * Self::TILE_WIDTH + 20) as u32;

    /// The height for `n_mistakes`: one row of tiles per six shown, at least one row.
    pub fn height_for(n_mistakes: usize) -> u32 {
        let rows = n_mistakes
            .min(Self::MAX_SHOWN)
            .div_ceil(Self::COLUMNS)
            .max(1);
        (Self::HEADER + rows as i32 * Self::TILE_HEIGHT + 10) as u32
    }

    /// The range of the raw values, so every image is drawn on the same grey scale.
    fn value_range(&self) -> (f32, f32) {
        let (lo, hi) = self
            .features
            .iter()
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        if lo < hi {
            (lo, hi)
        } else {
            (0.0, 1.0)
        }
    }
}

impl Figure for MistakesFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (Self::WIDTH, Self::height_for(self.mistakes.len()))
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let centered = |size, color| font(size, color).pos(Pos::new(HPos::Center, VPos::Center));
        let width = Self::WIDTH as i32;
        draw_fitted_text(
            root,
            &self.title,
            (width / 2, 24),
            20.0,
            palette::INK,
            Self::WIDTH - 40,
        )?;
        root.draw(&Text::new(
            "the most confident mistakes on the test set (#: test sample), most confident first",
            (width / 2, 50),
            centered(15.0, palette::MUTED),
        ))?;
        if self.mistakes.is_empty() {
            root.draw(&Text::new(
                "no mistakes: every test sample is classified correctly",
                (width / 2, Self::HEADER + Self::TILE_HEIGHT / 2),
                centered(18.0, palette::INK),
            ))?;
            return Ok(());
        }

        let (rows, cols) = self.image_shape;
        let n_features = rows * cols;
        let pixel = (Self::IMAGE_BOX / rows.max(cols) as i32).max(1);
        let (image_w, image_h) = (pixel * cols as i32, pixel * rows as i32);
        let (lo, hi) = self.value_range();
        for (slot, mistake) in self.mistakes.iter().take(Self::MAX_SHOWN).enumerate() {
            let tile_x = 10 + (slot % Self::COLUMNS) as i32 * Self::TILE_WIDTH;
            let tile_y = Self::HEADER + (slot / Self::COLUMNS) as i32 * Self::TILE_HEIGHT;
            let x0 = tile_x + (Self::TILE_WIDTH - image_w) / 2;
            let y0 = tile_y + 4 + (Self::IMAGE_BOX - image_h) / 2;
            let start = mistake.row_idx * n_features;
            let Some(image) = self.features.get(start..start + n_features) else {
                continue;
            };
            // Dark ink on white paper; white pixels are not drawn, which keeps the SVG small.
            for (idx, &value) in image.iter().enumerate() {
                let ink = ((value - lo) / (hi - lo)).clamp(0.0, 1.0);
                let grey = (255.0 * (1.0 - ink)).round() as u8;
                if grey == 255 {
                    continue;
                }
                let (r, c) = ((idx / cols) as i32, (idx % cols) as i32);
                let (x, y) = (x0 + c * pixel, y0 + r * pixel);
                root.draw(&Rectangle::new(
                    [(x, y), (x + pixel, y + pixel)],
                    RGBColor(grey, grey, grey).filled(),
                ))?;
            }
            root.draw(&Rectangle::new(
                [(x0 - 1, y0 - 1), (x0 + image_w + 1, y0 + image_h + 1)],
                palette::MUTED.stroke_width(1),
            ))?;
            let text_x = tile_x + Self::TILE_WIDTH / 2;
            let text_y = tile_y + Self::IMAGE_BOX + 18;
            root.draw(&Text::new(
                format!(
                    "true {}, predicted {}",
                    mistake.true_class, mistake.predicted_class
                ),
                (text_x, text_y),
                centered(13.0, palette::WRONG),
            ))?;
            root.draw(&Text::new(
                format!(
                    "p({}) = {:.3}, #{}",
                    mistake.predicted_class, mistake.confidence, mistake.row_idx
                ),
                (text_x, text_y + 19),
                centered(12.0, palette::MUTED),
            ))?;
        }
        Ok(())
    }
}
