//! The pictures, through the `kiln` binary: `train` draws training.png/.svg (not with
//! `--no-plot`), `eval` measures a model file and a blob and draws the confusion matrix and
//! the most confident mistakes, `demo` draws all three. Every picture is a valid PNG of the
//! expected size with a white margin (nothing drawn off the edge), its SVG twin has the same
//! size, and two different runs never give the same picture.

mod common;
use common::*;

use std::path::{Path, PathBuf};

fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A decoded PNG: width, height and 8-bit RGB pixels.
struct Picture {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

fn decode_png(path: &Path) -> Picture {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap_or_else(|e| panic!("{}: not a PNG: {e}", path.display()));
    let mut rgb = vec![0; reader.output_buffer_size().expect("a sane PNG size")];
    let info = reader.next_frame(&mut rgb).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "{}", path.display());
    rgb.truncate(info.buffer_size());
    Picture {
        width: info.width,
        height: info.height,
        rgb,
    }
}

impl Picture {
    /// The pixel rows from `top` down: the body of a picture, below its title.
    fn rows_from(&self, top: u32) -> &[u8] {
        &self.rgb[3 * (top * self.width) as usize..]
    }
}

/// Asserts `STEM.png` and `STEM.svg` in `dir` are valid pictures of `width` x `height` with
/// real content and a white outer margin; returns the decoded PNG.
fn assert_picture(dir: &Path, stem: &str, width: u32, height: u32) -> Picture {
    let png_path = dir.join(format!("{stem}.png"));
    let picture = decode_png(&png_path);
    assert_eq!(
        (picture.width, picture.height),
        (width, height),
        "{}",
        png_path.display()
    );
    let pixel = |x: u32, y: u32| {
        let at = 3 * (y * width + x) as usize;
        &picture.rgb[at..at + 3]
    };
    // Nothing is drawn in the outer 3 pixels: no label or line runs off the edge.
    for y in 0..height {
        for x in 0..width {
            if x < 3 || y < 3 || x >= width - 3 || y >= height - 3 {
                assert_eq!(
                    pixel(x, y),
                    [255, 255, 255],
                    "{}: ink at the edge ({x}, {y})",
                    png_path.display()
                );
            }
        }
    }
    let inked = picture.rgb.chunks_exact(3).filter(|p| p[0] < 128).count();
    assert!(
        inked > 500,
        "{}: only {inked} dark pixels",
        png_path.display()
    );

    let svg_path = dir.join(format!("{stem}.svg"));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(
        svg.starts_with(&format!("<svg width=\"{width}\" height=\"{height}\"")),
        "{}: {}",
        svg_path.display(),
        &svg[..svg.len().min(120)]
    );
    assert!(svg.trim_end().ends_with("</svg>"), "{}", svg_path.display());
    assert!(svg.contains("<text"), "{}", svg_path.display());
    picture
}

fn train(out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "train",
        "--hidden",
        "16",
        "--epochs",
        "4",
        "--val-split",
        "0.2",
        "--quiet",
        "--json",
        "--no-check",
        "-o",
        s(out),
    ];
    args.extend_from_slice(extra);
    json(&kiln(&args))
}

fn names(report: &serde_json::Value, key: &str) -> Vec<String> {
    let list = report.pointer(key).and_then(|v| v.as_array());
    list.map_or_else(Vec::new, |paths| {
        paths
            .iter()
            .map(|p| {
                let path = PathBuf::from(p.as_str().unwrap());
                path.file_name().unwrap().to_string_lossy().into_owned()
            })
            .collect()
    })
}

#[test]
fn train_draws_the_training_curves_and_no_plot_turns_them_off() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second, quiet) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let report = train(&first, &[]);
    assert_eq!(
        names(&report, "/files/pictures"),
        ["training.png", "training.svg"]
    );
    let a = assert_picture(&first, "training", 1200, 520);

    // Another seed trains other weights: other curves, another picture.
    train(&second, &["--seed", "7"]);
    let b = assert_picture(&second, "training", 1200, 520);
    // The curves differ, not just the title (which names the test accuracy).
    assert_ne!(
        a.rows_from(50),
        b.rows_from(50),
        "two different runs drew the same curves"
    );
    assert_ne!(
        std::fs::read(first.join("training.svg")).unwrap(),
        std::fs::read(second.join("training.svg")).unwrap()
    );

    let report = train(&quiet, &["--no-plot"]);
    assert!(names(&report, "/files/pictures").is_empty());
    assert!(quiet.join("model.json").exists());
    for name in ["training.png", "training.svg"] {
        assert!(!quiet.join(name).exists(), "--no-plot wrote {name}");
    }
    // No temp file is left behind by the atomic writes.
    for entry in std::fs::read_dir(&first).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "temp file {name} left behind");
    }
}

#[test]
fn a_regression_run_draws_the_loss_alone() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("house.csv");
    let rows: String = (0..80)
        .map(|i| {
            let (a, b) = (i % 9, (i * 7) % 11);
            format!("{a},{b},{}\n", 2 * a + b)
        })
        .collect();
    std::fs::write(&csv, rows).unwrap();
    let out = dir.path().join("out");
    let data = format!("csv:{}", s(&csv));
    train(&out, &["--data", &data, "--loss", "mse"]);
    assert_picture(&out, "training", 1200, 520);
}

/// The mistakes picture's height for `n` mistakes: a row of six per six shown (at most 24),
/// at least one row (70 + 178 per row + 10).
fn mistakes_height(n: u64) -> u32 {
    let rows = n.min(24).div_ceil(6).max(1) as u32;
    70 + 178 * rows + 10
}

#[test]
fn eval_measures_a_model_file_and_a_blob() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("m");
    let trained = train(&model_dir, &[]);
    let model = model_dir.join("model.json");
    let blob = model_dir.join("model.kiln");
    assert!(kiln(&["bake", s(&model), "--blob", s(&blob)])
        .status
        .success());

    // The float model, by default on its own data, pictures beside it.
    let float = json(&kiln(&["eval", s(&model), "--json"]));
    assert_eq!(float["kind"], "float");
    let accuracy = float["accuracy"].as_f64().unwrap();
    let expected = trained["test_accuracy"].as_f64().unwrap();
    assert!(
        (accuracy - expected).abs() < 1e-12,
        "eval {accuracy} vs train {expected}"
    );
    let samples = float["samples"].as_u64().unwrap();
    assert_eq!(samples, 449);
    let classes = float["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 10);
    let confusion = float["confusion"].as_array().unwrap();
    let mut correct = 0;
    let mut total = 0;
    for (class, metrics) in classes.iter().enumerate() {
        let row: Vec<u64> = confusion[class]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let column: u64 = confusion.iter().map(|r| r[class].as_u64().unwrap()).sum();
        let support: u64 = row.iter().sum();
        assert_eq!(metrics["support"], support);
        assert_eq!(metrics["predicted"], column);
        let recall = metrics["recall"].as_f64().unwrap();
        assert!((recall - row[class] as f64 / support as f64).abs() < 1e-12);
        if column > 0 {
            let precision = metrics["precision"].as_f64().unwrap();
            assert!((precision - row[class] as f64 / column as f64).abs() < 1e-12);
        }
        correct += row[class];
        total += support;
    }
    assert_eq!(total, samples);
    assert_eq!(
        float["mistakes"].as_u64().unwrap(),
        samples - correct,
        "mistakes are the off-diagonal counts"
    );
    assert_eq!(
        names(&float, "/pictures"),
        [
            "confusion.png",
            "confusion.svg",
            "mistakes.png",
            "mistakes.svg"
        ]
    );
    let float_confusion = assert_picture(&model_dir, "confusion", 820, 860);
    let float_mistakes = float["mistakes"].as_u64().unwrap();
    assert!(
        float_mistakes > 0,
        "4 epochs of a 16-unit model make mistakes"
    );
    let float_grid = assert_picture(&model_dir, "mistakes", 956, mistakes_height(float_mistakes));

    // The blob, with the runtime, on the digits (its default), into another folder.
    let blob_out = dir.path().join("int8");
    let int8 = json(&kiln(&[
        "eval",
        s(&blob),
        "--data",
        "digits",
        "-o",
        s(&blob_out),
        "--json",
    ]));
    assert_eq!(int8["kind"], "int8");
    let run = json(&kiln(&["run", s(&blob), "--json"]));
    assert_eq!(
        int8["accuracy"], run["int8_accuracy"],
        "eval agrees with run"
    );
    let int8_confusion = assert_picture(&blob_out, "confusion", 820, 860);
    let int8_mistakes = int8["mistakes"].as_u64().unwrap();
    let int8_grid = assert_picture(&blob_out, "mistakes", 956, mistakes_height(int8_mistakes));
    // Another model, other pictures: the titles differ at least, and usually the counts.
    assert_ne!(float_confusion.rgb, int8_confusion.rgb);
    assert_ne!(float_grid.rgb, int8_grid.rgb);

    // Another seed makes other mistakes: the image grid itself (below the 70-pixel header)
    // differs, not just the title.
    let other_dir = dir.path().join("other");
    train(&other_dir, &["--seed", "7"]);
    let other = json(&kiln(&["eval", s(&other_dir.join("model.json")), "--json"]));
    let other_grid = assert_picture(
        &other_dir,
        "mistakes",
        956,
        mistakes_height(other["mistakes"].as_u64().unwrap()),
    );
    assert_ne!(
        float_grid.rows_from(70),
        other_grid.rows_from(70),
        "two models drew the same mistakes"
    );

    // The human-readable report: accuracy, a row per class, the pictures.
    let text = stdout(&kiln(&["eval", s(&model), "-o", s(&blob_out)]));
    assert!(text.contains("accuracy"), "{text}");
    assert!(
        text.contains("precision") && text.contains("recall"),
        "{text}"
    );
    assert_eq!(text.lines().filter(|l| l.contains("picture")).count(), 4);
}

#[test]
fn eval_of_data_that_are_not_images_draws_no_mistakes_grid() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sensors.csv");
    let rows: String = (0..120)
        .map(|i| {
            let label = i % 3;
            format!(
                "{},{},{},{label}\n",
                label * 10 + i % 4,
                i % 5,
                20 - label * 5
            )
        })
        .collect();
    std::fs::write(&csv, rows).unwrap();
    let out = dir.path().join("out");
    let data = format!("csv:{}", s(&csv));
    train(&out, &["--data", &data]);
    let report = json(&kiln(&["eval", s(&out.join("model.json")), "--json"]));
    assert_eq!(report["classes"].as_array().unwrap().len(), 3);
    assert_eq!(
        names(&report, "/pictures"),
        ["confusion.png", "confusion.svg"],
        "3 features are not an image"
    );
    assert_picture(&out, "confusion", 820, 860);
    assert!(!out.join("mistakes.png").exists());
}

#[test]
fn demo_draws_every_picture_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let output = kiln(&["demo", "-o", s(dir.path()), "--quiet"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for stem in ["training", "confusion", "mistakes"] {
        for ext in ["png", "svg"] {
            let name = format!("{stem}.{ext}");
            assert!(
                text.lines()
                    .any(|l| l.contains("picture") && l.ends_with(&name)),
                "the summary does not name {name}: {text}"
            );
        }
    }
    assert_picture(dir.path(), "training", 1200, 520);
    assert_picture(dir.path(), "confusion", 820, 860);
    let report = json(&kiln(&[
        "eval",
        s(&dir.path().join("model.json")),
        "--json",
    ]));
    let mistakes = report["mistakes"].as_u64().unwrap();
    assert_picture(dir.path(), "mistakes", 956, mistakes_height(mistakes));
}
