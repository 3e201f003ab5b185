//! Pictures: the training curves, the confusion matrix and the most confident mistakes,
//! drawn with plotters as PNG and SVG. The font is bundled (DejaVu Sans, rendered with
//! ab_glyph), so a machine without fonts, fontconfig or a browser draws the same pixels.

mod confusion;
mod mistakes;
mod pareto;
mod training;

pub use confusion::ConfusionFigure;
pub use mistakes::{image_shape, Mistake, MistakesFigure};
pub use pareto::{ParetoFigure, ParetoPoint};
pub use training::TrainingFigure;

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The family name the figures ask for; it is registered with the bundled font.
const FONT: &str = "sans-serif";

/// DejaVu Sans (Bitstream Vera license, see `assets/DejaVuSans-LICENSE.txt`).
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// A picture could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("the bundled font cannot be loaded")]
    Font,
    #[error("{path}: cannot draw the picture: {detail}")]
    Draw { path: PathBuf, detail: String },
    #[error("{path}: cannot write the picture: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A picture that can be drawn on any plotters backend.
pub trait Figure {
    /// Width and height in pixels (SVG user units).
    fn size(&self) -> (u32, u32);

    /// Draws the whole picture on `root`, which is `size()` large.
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>;
}

fn register_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

fn draw_error(path: &Path, detail: impl std::fmt::Display) -> PlotError {
    PlotError::Draw {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

/// The figure as PNG bytes (8-bit RGB). `path` only names the picture in errors.
pub fn png_bytes(figure: &impl Figure, path: &Path) -> Result<Vec<u8>, PlotError> {
    register_font()?;
    let (width, height) = figure.size();
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        figure.draw(&root).map_err(|e| draw_error(path, e))?;
        root.present().map_err(|e| draw_error(path, e))?;
    }
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| draw_error(path, e))?;
    writer
        .write_image_data(&rgb)
        .map_err(|e| draw_error(path, e))?;
    writer.finish().map_err(|e| draw_error(path, e))?;
    Ok(bytes)
}

/// The figure as SVG text. `path` only names the picture in errors.
pub fn svg_text(figure: &impl Figure, path: &Path) -> Result<String, PlotError> {
    register_font()?;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, figure.size()).into_drawing_area();
        figure.draw(&root).map_err(|e| draw_error(path, e))?;
        root.present().map_err(|e| draw_error(path, e))?;
    }
    Ok(text)
}

/// Writes `STEM.png` and `STEM.svg` into `dir`, each atomically, and returns their paths.
pub fn write_png_and_svg(
    figure: &impl Figure,
    dir: &Path,
    stem: &str,
) -> Result<[PathBuf; 2], PlotError> {
    let png_path = dir.join(format!("{stem}.png"));
    let svg_path = dir.join(format!("{stem}.svg"));
    let png = png_bytes(figure, &png_path)?;
    let svg = svg_text(figure, &svg_path)?;
    for (path, bytes) in [(&png_path, png.as_slice()), (&svg_path, svg.as_bytes())] {
        crate::fsutil::write_atomic(path, bytes).map_err(|source| PlotError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok([png_path, svg_path])
}

/// A font of `size` pixels in `color`.
fn font(size: f64, color: RGBColor) -> TextStyle<'static> {
    (FONT, size).into_font().color(&color)
}

/// Draws `text` centred on `center`, in a smaller font (down to 70% of `size`) if it is
/// wider than `max_width`, and with its middle elided if even that is too wide, so a long
/// path in a title never runs off the picture.
fn draw_fitted_text<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    text: &str,
    center: (i32, i32),
    size: f64,
    color: RGBColor,
    max_width: u32,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let style_of = |size: f64| font(size, color).pos(Pos::new(HPos::Center, VPos::Center));
    let fits = |text: &str, size: f64| -> Result<bool, DrawingAreaErrorKind<DB::ErrorType>> {
        Ok(root.estimate_text_size(text, &style_of(size))?.0 <= max_width)
    };
    let mut chosen = (text.to_owned(), size * 0.7);
    let mut trial = size;
    let mut fitted = false;
    while trial >= size * 0.7 {
        if fits(text, trial)? {
            chosen = (text.to_owned(), trial);
            fitted = true;
            break;
        }
        trial -= 0.5;
    }
    if !fitted {
        let chars: Vec<char> = text.chars().collect();
        for keep in (8..chars.len()).rev() {
            let head: String = chars[..keep / 2].iter().collect();
            let tail: String = chars[chars.len() - (keep - keep / 2)..].iter().collect();
            let elided = format!("{head}…{tail}");
            if fits(&elided, chosen.1)? {
                chosen.0 = elided;
                break;
            }
        }
    }
    root.draw(&Text::new(chosen.0, center, style_of(chosen.1)))
}

/// Four significant digits at most, without a trailing exponent for ordinary values.
pub fn short_number(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&magnitude) {
        format!("{value:.1e}")
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        trim_zeros(format!("{value:.2}"))
    } else {
        trim_zeros(format!("{value:.3}"))
    }
}

fn trim_zeros(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Colours shared by the figures.
mod palette {
    use plotters::style::RGBColor;
    pub const TRAIN: RGBColor = RGBColor(31, 119, 180);
    pub const VALIDATION: RGBColor = RGBColor(230, 110, 0);
    pub const INK: RGBColor = RGBColor(20, 20, 20);
    pub const MUTED: RGBColor = RGBColor(90, 90, 90);
    pub const WRONG: RGBColor = RGBColor(200, 30, 30);
    /// The darkest cell of the confusion matrix.
    pub const HEAT: RGBColor = RGBColor(8, 48, 107);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers_stay_short() {
        assert_eq!(short_number(0.0), "0");
        assert_eq!(short_number(0.0123), "0.012");
        assert_eq!(short_number(1.5), "1.5");
        assert_eq!(short_number(250.4), "250");
        assert_eq!(short_number(0.00001), "1.0e-5");
    }
}
