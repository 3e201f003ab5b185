//! Every subcommand on mismatched models and data (task, feature count, output count, file
//! types) fails with exit 1 or 2 and one clear error line: never a panic (101) or a signal.

mod common;

use common::{kiln, s, stderr};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

/// Rows of `n_features` real values (negative, with fractions) and nothing else.
fn real_rows(n_rows: usize, n_features: usize) -> String {
    let mut text = String::new();
    for row in 0..n_rows {
        let fields: Vec<String> = (0..n_features)
            .map(|col| format!("{:.3}", -40.0 + ((row * 7 + col * 13) % 29) as f64 * 0.731))
            .collect();
        let _ = writeln!(text, "{}", fields.join(","));
    }
    text
}

fn run_ok(args: &[&str]) {
    let output = kiln(args);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
}

/// A digits classifier (64 integer features, 10 classes) and an autoencoder over 9 real
/// values, each with its ONNX file and int8 blob, and data files that fit neither.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let p = |name: &str| root.join(name);
        std::fs::write(p("real.csv"), real_rows(120, 9)).unwrap();
        std::fs::write(p("narrow.csv"), "1,2,3,0\n4,5,6,1\n".repeat(20)).unwrap();
        std::fs::write(p("text.csv"), "a,b\nx,y\n").unwrap();
        std::fs::write(p("empty.csv"), "").unwrap();
        let real = format!("csv:{}", s(&p("real.csv")));
        run_ok(&[
            "train",
            "--hidden",
            "8",
            "--epochs",
            "1",
            "-q",
            "-o",
            s(&p("cls")),
        ]);
        run_ok(&[
            "train",
            "--data",
            &real,
            "--autoencoder",
            "--hidden",
            "4",
            "--epochs",
            "1",
            "-q",
            "-o",
            s(&p("reg")),
        ]);
        run_ok(&["bake", s(&p("cls/model.json")), "--blob", s(&p("cls.kiln"))]);
        run_ok(&["bake", s(&p("reg/model.json")), "--blob", s(&p("reg.kiln"))]);
        Fixture { _dir: dir, root }
    })
}

fn path(name: &str) -> String {
    s(&fixture().root.join(name)).to_owned()
}

fn csv(name: &str) -> String {
    format!("csv:{}", path(name))
}

/// Exit 1 or 2, one `error:` line on stderr, and no sign of a panic.
fn assert_clean_failure(args: &[String], root: &Path) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(&args)
        .current_dir(root)
        .output()
        .unwrap();
    let message = stderr(&output);
    assert!(
        matches!(output.status.code(), Some(1 | 2)),
        "{args:?}: exit {:?}, stderr: {message}",
        output.status.code()
    );
    assert!(!message.contains("panicked"), "{args:?}: {message}");
    let errors: Vec<&str> = message.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: {message}");
    assert!(
        errors[0].len() > 20,
        "{args:?}: too short to be clear: {message}"
    );
    // Shown with --nocapture: what a user reads.
    eprintln!("{}", errors[0]);
}

#[test]
fn mismatched_models_and_data_fail_cleanly_in_every_subcommand() {
    let root = &fixture().root;
    let out = |name: &str| path(&format!("out-{name}"));
    let cases: Vec<Vec<String>> = vec![
        // eval: task, feature count, output count, file types
        vec![
            "eval".into(),
            path("cls/model.json"),
            "--data".into(),
            csv("real.csv"),
            "--autoencoder".into(),
        ],
        vec![
            "eval".into(),
            path("cls/model.json"),
            "--data".into(),
            csv("narrow.csv"),
        ],
        vec![
            "eval".into(),
            path("reg/model.json"),
            "--data".into(),
            csv("narrow.csv"),
            "--autoencoder".into(),
        ],
        vec![
            "eval".into(),
            path("reg/model.json"),
            "--data".into(),
            csv("real.csv"),
            "--targets".into(),
            "0-1".into(),
        ],
        vec![
            "eval".into(),
            path("cls.kiln"),
            "--data".into(),
            csv("real.csv"),
            "--autoencoder".into(),
        ],
        vec![
            "eval".into(),
            path("reg.kiln"),
            "--data".into(),
            csv("narrow.csv"),
        ],
        vec![
            "eval".into(),
            path("reg.kiln"),
            "--data".into(),
            csv("real.csv"),
            "--targets".into(),
            "0-1".into(),
        ],
        vec!["eval".into(), path("text.csv")],
        vec!["eval".into(), path("empty.csv")],
        vec!["eval".into(), path("cls/model.onnx")],
        // quantize and bake
        vec![
            "quantize".into(),
            path("cls/model.json"),
            "--data".into(),
            csv("narrow.csv"),
            "-o".into(),
            out("q1"),
        ],
        vec![
            "quantize".into(),
            path("cls/model.json"),
            "--data".into(),
            csv("real.csv"),
            "--autoencoder".into(),
            "-o".into(),
            out("q2"),
        ],
        vec![
            "quantize".into(),
            path("reg/model.json"),
            "--data".into(),
            csv("narrow.csv"),
            "--autoencoder".into(),
            "-o".into(),
            out("q3"),
        ],
        vec![
            "quantize".into(),
            path("reg/model.json"),
            "--data".into(),
            csv("narrow.csv"),
            "-o".into(),
            out("q4"),
        ],
        vec!["quantize".into(), path("cls.kiln"), "-o".into(), out("q5")],
        vec!["quantize".into(), path("text.csv"), "-o".into(), out("q6")],
        vec![
            "bake".into(),
            path("cls/model.json"),
            "--data".into(),
            csv("narrow.csv"),
            "--blob".into(),
            out("b1.kiln"),
        ],
        vec![
            "bake".into(),
            path("reg/model.json"),
            "--data".into(),
            csv("real.csv"),
            "--targets".into(),
            "0-1".into(),
            "--blob".into(),
            out("b2.kiln"),
        ],
        vec![
            "bake".into(),
            path("reg.kiln"),
            "--blob".into(),
            out("b3.kiln"),
        ],
        // run
        vec![
            "run".into(),
            path("cls.kiln"),
            "--data".into(),
            csv("narrow.csv"),
        ],
        vec![
            "run".into(),
            path("cls.kiln"),
            "--data".into(),
            csv("real.csv"),
            "--autoencoder".into(),
        ],
        vec![
            "run".into(),
            path("reg.kiln"),
            "--data".into(),
            csv("narrow.csv"),
            "--autoencoder".into(),
        ],
        vec![
            "run".into(),
            path("reg.kiln"),
            "--data".into(),
            csv("real.csv"),
            "--targets".into(),
            "0-1".into(),
        ],
        vec!["run".into(), path("reg.kiln")],
        vec!["run".into(), path("cls/model.json")],
        vec!["run".into(), path("cls/model.onnx")],
        // sim: refused before anything is built
        vec![
            "sim".into(),
            path("cls.kiln"),
            "--core".into(),
            "cortex-m4f".into(),
            "--data".into(),
            csv("narrow.csv"),
        ],
        vec![
            "sim".into(),
            path("reg.kiln"),
            "--core".into(),
            "rv32imc".into(),
            "--data".into(),
            csv("real.csv"),
            "--targets".into(),
            "0-1".into(),
        ],
        vec![
            "sim".into(),
            path("cls.kiln"),
            "--core".into(),
            "cortex-m33".into(),
        ],
        vec![
            "sim".into(),
            path("cls/model.json"),
            "--core".into(),
            "cortex-m0".into(),
        ],
        vec!["sim".into(), path("cls.kiln")],
        // check and export
        vec![
            "check".into(),
            path("cls/model.onnx"),
            "--model".into(),
            path("reg/model.json"),
        ],
        vec![
            "check".into(),
            path("reg/model.onnx"),
            "--model".into(),
            path("cls/model.json"),
        ],
        vec![
            "check".into(),
            path("text.csv"),
            "--model".into(),
            path("cls/model.json"),
        ],
        vec![
            "export".into(),
            path("cls.kiln"),
            "-o".into(),
            out("e1.onnx"),
        ],
        vec![
            "export".into(),
            path("empty.csv"),
            "-o".into(),
            out("e2.onnx"),
        ],
        // import
        vec![
            "import".into(),
            path("cls.kiln"),
            "--data".into(),
            "digits".into(),
            "-o".into(),
            out("i1.json"),
        ],
        vec![
            "import".into(),
            path("reg/model.onnx"),
            "--data".into(),
            csv("narrow.csv"),
            "--autoencoder".into(),
            "-o".into(),
            out("i2.json"),
        ],
        vec![
            "import".into(),
            path("cls/model.onnx"),
            "--data".into(),
            csv("real.csv"),
            "--autoencoder".into(),
            "-o".into(),
            out("i3.json"),
        ],
        vec![
            "import".into(),
            path("reg/model.onnx"),
            "--data".into(),
            csv("real.csv"),
            "--targets".into(),
            "0-1".into(),
            "-o".into(),
            out("i4.json"),
        ],
        vec![
            "import".into(),
            path("reg/model.onnx"),
            "--data".into(),
            csv("real.csv"),
            "-o".into(),
            out("i5.json"),
        ],
        // inspect
        vec!["inspect".into(), path("text.csv")],
        vec!["inspect".into(), path("empty.csv")],
        // train on data that cannot be used
        vec![
            "train".into(),
            "--data".into(),
            csv("text.csv"),
            "-o".into(),
            out("t1"),
        ],
        vec![
            "train".into(),
            "--data".into(),
            csv("empty.csv"),
            "-o".into(),
            out("t2"),
        ],
        vec![
            "train".into(),
            "--data".into(),
            csv("real.csv"),
            "--targets".into(),
            "0-99".into(),
            "-o".into(),
            out("t3"),
        ],
        vec![
            "train".into(),
            "--data".into(),
            csv("real.csv"),
            "--targets".into(),
            "0-8".into(),
            "-o".into(),
            out("t4"),
        ],
        vec![
            "train".into(),
            "--data".into(),
            csv("real.csv"),
            "--targets".into(),
            "5-2".into(),
            "-o".into(),
            out("t5"),
        ],
        vec![
            "train".into(),
            "--data".into(),
            csv("real.csv"),
            "--autoencoder".into(),
            "--loss".into(),
            "cross-entropy".into(),
            "-o".into(),
            out("t6"),
        ],
        vec![
            "train".into(),
            "--data".into(),
            csv("real.csv"),
            "--autoencoder".into(),
            "--anomaly-column".into(),
            "3".into(),
            "-o".into(),
            out("t7"),
        ],
        vec![
            "train".into(),
            "--data".into(),
            csv("real.csv"),
            "-o".into(),
            out("t8"),
        ],
        vec![
            "train".into(),
            "--anomaly-column".into(),
            "3".into(),
            "-o".into(),
            out("t9"),
        ],
    ];
    for case in &cases {
        assert_clean_failure(case, root);
    }
    // Nothing half-written: the failed commands left no outputs behind.
    for name in [
        "q1", "q2", "q3", "q4", "q5", "q6", "b1.kiln", "b2.kiln", "b3.kiln", "e1.onnx", "e2.onnx",
        "i1.json", "i2.json", "i3.json", "i4.json", "i5.json", "t1", "t2", "t3", "t4", "t5", "t6",
        "t7", "t8", "t9",
    ] {
        let leftover = fixture().root.join(format!("out-{name}"));
        let files: Vec<_> = std::fs::read_dir(&leftover)
            .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            !leftover.is_file() && files.is_empty(),
            "{name}: a failed command left {} {files:?}",
            leftover.display()
        );
    }
}

/// A reader that stops early (`kiln eval --json | head`) is no panic: the output stops, the
/// command finishes with the exit code of its work.
#[test]
fn a_closed_pipe_ends_the_output_without_a_panic() {
    use std::io::Read as _;
    let dir = tempfile::tempdir().unwrap();
    // 1,200 outputs: eval's JSON holds a record per output, far more than a pipe's buffer.
    let wide = dir.path().join("wide.csv");
    std::fs::write(&wide, real_rows(24, 1200)).unwrap();
    let model = dir.path().join("ae");
    let data = format!("csv:{}", s(&wide));
    run_ok(&[
        "train",
        "--data",
        &data,
        "--autoencoder",
        "--hidden",
        "2",
        "--epochs",
        "1",
        "--no-check",
        "--no-plot",
        "-q",
        "-o",
        s(&model),
    ]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["eval", s(&model.join("model.json")), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe's read end is dropped here, long before the JSON ends.
    let output = child.wait_with_output().unwrap();
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{message}");
    assert!(!message.contains("panicked"), "{message}");
    assert!(first.starts_with(b"{"), "{first:?}");
}
