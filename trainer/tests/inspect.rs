//! `kiln inspect`, `kiln completions` and the `--help` examples, through the `kiln` binary:
//! a tiny digits model (64-16-10) trained and quantized once, then inspected as its
//! model file, float ONNX, QDQ ONNX and blob.

mod common;
use common::*;

use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;

/// Parses stdout as JSON; the exit code is checked by the caller.
fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            stdout(output),
            stderr(output)
        )
    })
}

/// One trained and quantized model shared by the tests of this file.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = s(dir.path()).to_owned();
        let trained = kiln(&[
            "train", "--hidden", "16", "--epochs", "1", "--quiet", "-o", &out,
        ]);
        assert!(trained.status.success(), "{}", stderr(&trained));
        let model = dir.path().join("model.json");
        let quantized = kiln(&["quantize", s(&model), "-o", &out, "--quiet"]);
        assert!(quantized.status.success(), "{}", stderr(&quantized));
        Fixture { dir }
    })
}

const ALL_FILES: [&str; 4] = ["model.json", "model.onnx", "model.qdq.onnx", "model.kiln"];

/// The fixture's int8 blob and buffers (scratch 80 + raw input 256 + logits 10).
const BLOB_BYTES: u64 = 1848;
/// Scratch 64 + 16, the raw input as 64 bytes (`Model::run_bytes`: a byte-table input
/// stage), 10 logits.
const BUFFER_BYTES: u64 = 80 + 64 + 10;

/// The packed dense kernel's workspace for 64 inputs: `(64 / 8) * 16 + 3` bytes, counted on
/// the cores whose kernel takes it.
const WORKSPACE_BYTES: u64 = 131;

/// The workspace a core counts (`dense_workspace` in device_figures.json).
fn workspace_of(core: &serde_json::Value) -> u64 {
    if core["dense_workspace"].as_bool().unwrap() {
        WORKSPACE_BYTES
    } else {
        0
    }
}

/// The committed per-core figures: the expectations follow them, so a re-measurement
/// (`cargo xtask firmware --update-figures`) does not break these tests.
fn figures() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/cli/device_figures.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// One core's figures by its name in the figures file.
fn core_figures(core: &str) -> serde_json::Value {
    figures()["cores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["core"] == core)
        .unwrap_or_else(|| panic!("no {core} in device_figures.json"))
        .clone()
}

/// The fixture's dense layers: 64 -> 16 -> 10.
const FIXTURE_LAYERS: [(u64, u64); 2] = [(64, 16), (16, 10)];

/// A core's estimate for dense `layers` and `n_inputs` features through the input-stage loop
/// `stage` (its key in the figures: "byte_table", "per_feature", ...), from the core's committed
/// per-layer model, rounded as inspect rounds: `(network, input stage, total)`.
fn expected_estimate(
    core: &str,
    layers: &[(u64, u64)],
    n_inputs: u64,
    stage: &str,
) -> (u64, u64, u64) {
    let model = &core_figures(core)["estimate"];
    let f = |key: &str| {
        model[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{core}: no {key}"))
    };
    let multiple = model["block_inputs_multiple"].as_u64().unwrap();
    let mut network = f("inference");
    for &(n_in, n_out) in layers {
        let block_rows = if n_in % multiple == 0 {
            n_out - n_out % 4
        } else {
            0
        };
        network += (n_in * block_rows) as f64 * f("block_mac")
            + (n_in * (n_out - block_rows)) as f64 * f("tail_mac")
            + n_out as f64 * f("row")
            + ((n_in % 8) * n_out) as f64 * f("ragged_input")
            + f("layer");
    }
    let pair = &model[stage];
    let input = pair[0].as_f64().unwrap() * n_inputs as f64 + pair[1].as_f64().unwrap();
    let (network, input) = (network.round() as u64, input.round() as u64);
    (network, input, network + input)
}

/// A core's flash and RAM for the fixture (a dense model: the mlp firmware).
fn fixture_totals(core: &serde_json::Value) -> (u64, u64) {
    let text = core["runtime_text_bytes"]["mlp"].as_u64().unwrap();
    let model = core["model_struct_bytes"].as_u64().unwrap();
    let stack = core["inference_stack_bytes"]["mlp"].as_u64().unwrap();
    (
        BLOB_BYTES + text,
        BUFFER_BYTES + workspace_of(core) + model + stack,
    )
}

const CORES: [&str; 5] = [
    "Cortex-M0",
    "Cortex-M3",
    "Cortex-M4F",
    "Cortex-M7",
    "RISC-V rv32imc",
];

#[test]
fn every_representation_gives_the_same_layers_and_costs() {
    let fx = fixture();
    let blob_len = std::fs::metadata(fx.file("model.kiln")).unwrap().len();
    for (name, format) in ALL_FILES
        .into_iter()
        .zip(["kiln-model", "onnx", "onnx-qdq", "kiln-blob"])
    {
        let path = fx.file(name);
        let output = kiln(&["inspect", s(&path), "--json"]);
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        let report = json(&output);
        for key in [
            "command",
            "file",
            "format",
            "n_inputs",
            "n_outputs",
            "architecture",
            "normalization",
            "layers",
            "totals",
            "notes",
        ] {
            assert!(report.get(key).is_some(), "{name}: no {key:?} in {report}");
        }
        assert!(report.get("fit").is_none(), "{name}: fit without a budget");
        assert_eq!(report["format"], format, "{name}");
        assert_eq!(report["architecture"], "64-16-10", "{name}");

        let layers = report["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2, "{name}");
        let expected = [
            (64, 16, "relu", 1024, 16, 1040, 1024),
            (16, 10, "identity", 160, 10, 170, 160),
        ];
        for (layer, (n_in, n_out, activation, weights, biases, params, macs)) in
            layers.iter().zip(expected)
        {
            assert_eq!(layer["n_inputs"], n_in, "{name}: {layer}");
            assert_eq!(layer["n_outputs"], n_out, "{name}: {layer}");
            assert_eq!(layer["shape"], format!("{n_in} -> {n_out}"), "{name}");
            assert_eq!(layer["activation"], activation, "{name}: {layer}");
            assert_eq!(layer["weights"], weights, "{name}: {layer}");
            assert_eq!(layer["biases"], biases, "{name}: {layer}");
            assert_eq!(layer["parameters"], params, "{name}: {layer}");
            assert_eq!(layer["macs"], macs, "{name}: {layer}");
            assert_eq!(layer["f32_bytes"], params * 4, "{name}: {layer}");
            for key in ["index", "int8_bytes"] {
                assert!(layer.get(key).is_some(), "{name}: no {key:?} in {layer}");
            }
        }
        // The blob sections of docs/blob-format.md: 24 + 4*16 + 16 + 0 + 4*16 + 1024 + 0, and
        // 24 + 4*10 + 10 + 2 + 4*10 + 160 + 0.
        assert_eq!(layers[0]["int8_bytes"], 1192, "{name}");
        assert_eq!(layers[1]["int8_bytes"], 276, "{name}");

        let totals = &report["totals"];
        assert_eq!(totals["parameters"], 1210, "{name}");
        assert_eq!(totals["macs"], 1184, "{name}");
        // Scale normalization: one f32 value.
        assert_eq!(totals["flash"]["f32_bytes"], 1210 * 4 + 4, "{name}");
        // The estimate is the blob layout, so it matches the blob kiln wrote.
        assert_eq!(totals["flash"]["int8_bytes"], blob_len, "{name}");
        let source = if name == "model.kiln" {
            "blob length"
        } else {
            "estimate"
        };
        assert_eq!(totals["flash"]["int8_source"], source, "{name}");
        assert_eq!(totals["ram"]["int8_scratch_bytes"], 64 + 16, "{name}");
        assert_eq!(totals["ram"]["f32_scratch_bytes"], (64 + 16) * 4, "{name}");
        assert_eq!(totals["ram"]["int8_input_bytes"], 64, "{name}");
        assert_eq!(
            totals["ram"]["int8_input_type"], "u8 (Model::run_bytes)",
            "{name}"
        );
        assert_eq!(
            totals["ram"]["int8_workspace_bytes"], WORKSPACE_BYTES,
            "{name}"
        );
        assert_eq!(totals["ram"]["int8_logits_bytes"], 10, "{name}");
        assert_eq!(totals["ram"]["int8_total_bytes"], BUFFER_BYTES, "{name}");
        // The inference stack of the dense-only firmware, the largest over the cores.
        let stacks: Vec<u64> = CORES
            .iter()
            .map(|c| {
                core_figures(c)["inference_stack_bytes"]["mlp"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        let stack = *stacks.iter().max().unwrap();
        assert_eq!(totals["peak_stack_bytes"], stack, "{name}");
        assert!(
            totals["peak_stack"]
                .as_str()
                .unwrap()
                .contains("(one inference, the dense-only firmware)"),
            "{name}: {totals}"
        );

        // Per core: flash = blob + the runtime's .text exactly, RAM = buffers + Model + stack.
        let device = &report["device"];
        assert_eq!(device["runtime_build"], "mlp", "{name}");
        assert!(
            device["note"].as_str().unwrap().contains("vector table"),
            "{name}: {device}"
        );
        assert!(
            device["source"].as_str().unwrap().contains("QEMU"),
            "{name}"
        );
        let rows = device["cores"].as_array().unwrap();
        let row_cores: Vec<&str> = rows.iter().map(|r| r["core"].as_str().unwrap()).collect();
        assert_eq!(row_cores, CORES, "{name}");
        for row in rows {
            let figures = core_figures(row["core"].as_str().unwrap());
            let text = &figures["runtime_text_bytes"];
            let (flash, ram) = fixture_totals(&figures);
            assert_eq!(row["model_blob_bytes"], BLOB_BYTES, "{name}: {row}");
            assert_eq!(row["runtime_text_bytes"], text["mlp"], "{name}: {row}");
            assert_eq!(row["flash_total_bytes"], flash, "{name}: {row}");
            assert_eq!(
                row["flash_total_bytes"].as_u64(),
                Some(row["model_blob_bytes"].as_u64().unwrap() + text["mlp"].as_u64().unwrap()),
                "{name}: {row}"
            );
            assert_eq!(row["runtime_text_small_bytes"], text["mlp_small"], "{name}");
            assert_eq!(
                row["flash_total_small_bytes"],
                BLOB_BYTES + text["mlp_small"].as_u64().unwrap(),
                "{name}: {row}"
            );
            assert_eq!(
                row["workspace_bytes"],
                workspace_of(&figures),
                "{name}: {row}"
            );
            assert_eq!(
                row["int8_buffers_bytes"],
                BUFFER_BYTES + workspace_of(&figures),
                "{name}: {row}"
            );
            assert_eq!(row["model_struct_bytes"], figures["model_struct_bytes"]);
            assert_eq!(
                row["inference_stack_bytes"],
                figures["inference_stack_bytes"]["mlp"]
            );
            assert_eq!(row["ram_total_bytes"], ram, "{name}: {row}");
            assert_eq!(row["target"], figures["target"], "{name}: {row}");
        }

        let estimate = &report["instructions_per_inference"];
        assert_estimate_follows_the_model(estimate, &FIXTURE_LAYERS, 64, "byte_table", name);
        assert_estimate_notes(estimate, name, &[]);
        assert!(
            estimate["basis"]
                .as_str()
                .unwrap()
                .contains("estimated per layer"),
            "{name}: {estimate}"
        );
        let cores: Vec<&str> = estimate["cores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["core"].as_str().unwrap())
            .collect();
        assert_eq!(
            cores,
            [
                "Cortex-M0",
                "Cortex-M3",
                "Cortex-M4F",
                "Cortex-M7",
                "RISC-V rv32imc"
            ],
            "{name}"
        );
        // The committed per-layer model itself, applied to the fixture's layers and 64 features
        // (`expected_estimate` reads it from device_figures.json).
        let core = |name: &str| {
            estimate["cores"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["core"] == name)
                .unwrap()
                .clone()
        };
        for core_name in ["Cortex-M0", "Cortex-M4F"] {
            let (network, input_stage, total) =
                expected_estimate(core_name, &FIXTURE_LAYERS, 64, "byte_table");
            let row = core(core_name);
            assert_eq!(row["network_insns"], network, "{name}: {row}");
            assert_eq!(row["input_stage_insns"], input_stage, "{name}: {row}");
            assert_eq!(row["total_insns"], total, "{name}: {row}");
        }
    }
}

/// Every core's estimate is its measured rates times this model's MACs and input features.
fn assert_estimate_follows_the_model(
    estimate: &serde_json::Value,
    layers: &[(u64, u64)],
    n_inputs: u64,
    stage: &str,
    name: &str,
) {
    let cores = estimate["cores"].as_array().unwrap();
    assert_eq!(cores.len(), 5, "{name}: {estimate}");
    assert_eq!(
        estimate["input_stage"],
        stage.replace('_', " "),
        "{name}: {estimate}"
    );
    let macs: u64 = layers.iter().map(|(a, b)| a * b).sum();
    for core in cores {
        let (network, input_stage, total) =
            expected_estimate(core["core"].as_str().unwrap(), layers, n_inputs, stage);
        assert_eq!(core["network_insns"], network, "{name}: {core}");
        assert_eq!(core["input_stage_insns"], input_stage, "{name}: {core}");
        assert_eq!(core["total_insns"], total, "{name}: {core}");
        let per_mac = core["insns_per_mac"].as_f64().unwrap();
        assert!(
            (per_mac - network as f64 / macs as f64).abs() < 1e-9,
            "{name}: {core}"
        );
        let per_input = core["insns_per_input"].as_f64().unwrap();
        assert!(
            (per_input - input_stage as f64 / n_inputs as f64).abs() < 1e-9,
            "{name}: {core}"
        );
        for key in ["qemu_machine", "target", "kernel"] {
            assert!(core[key].is_string(), "{name}: no {key:?} in {core}");
        }
    }
}

/// The notes an estimate carries: a file other than a blob says which input loop it assumes.
fn assert_estimate_notes(estimate: &serde_json::Value, name: &str, others: &[&str]) {
    let notes: Vec<&str> = estimate["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let unquantized = usize::from(!name.ends_with(".kiln"));
    assert_eq!(notes.len(), unquantized + others.len(), "{name}: {notes:?}");
    if unquantized == 1 {
        assert!(notes[0].contains("not a .kiln blob"), "{name}: {notes:?}");
    }
    for (note, expected) in notes[unquantized..].iter().zip(others) {
        assert!(note.contains(expected), "{name}: {notes:?}");
    }
}

#[test]
fn the_table_shows_the_rows_and_totals() {
    let fx = fixture();
    for name in ALL_FILES {
        let path = fx.file(name);
        let output = kiln(&["inspect", s(&path)]);
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        let text = stdout(&output);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let has_row = |cells: &[&str]| rows.iter().any(|r| r.as_slice() == cells);
        assert!(
            has_row(&["0", "64", "->", "16", "relu", "1040", "1024", "4160", "1192"]),
            "{name}: {text}"
        );
        assert!(
            has_row(&["1", "16", "->", "10", "identity", "170", "160", "680", "276"]),
            "{name}: {text}"
        );
        assert!(
            has_row(&["total", "1210", "1184", "4840", "1468"]),
            "{name}: {text}"
        );
        assert!(
            text.contains(
                "80 bytes (the buffer plan: for a chain, max over layers of n_in + n_out)"
            ),
            "{text}"
        );
        assert!(
            text.contains("peak stack     ") && !text.contains("unknown"),
            "{text}"
        );
        // The device table: a row per core with its .text, flash, small flash, Model, stack
        // and RAM.
        assert!(
            text.contains("on a device (bytes; kiln-runtime built for dense layers)"),
            "{name}: {text}"
        );
        for core in CORES {
            let figures = core_figures(core);
            let (flash, ram) = fixture_totals(&figures);
            let small = BLOB_BYTES + figures["runtime_text_bytes"]["mlp_small"].as_u64().unwrap();
            let mut cells: Vec<String> = core.split(' ').map(str::to_owned).collect();
            cells.extend(
                [
                    figures["runtime_text_bytes"]["mlp"].as_u64().unwrap(),
                    flash,
                    small,
                    workspace_of(&figures),
                    figures["model_struct_bytes"].as_u64().unwrap(),
                    figures["inference_stack_bytes"]["mlp"].as_u64().unwrap(),
                    ram,
                ]
                .map(|n| n.to_string()),
            );
            let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
            assert!(has_row(&cells), "{name}: no {cells:?} in {text}");
        }
        assert!(
            text.contains("stack beyond inference are not included"),
            "{name}: {text}"
        );
        let flash = if name == "model.kiln" {
            "flash int8     1848 bytes (the blob's length)"
        } else {
            "flash int8     1848 bytes (estimate)"
        };
        assert!(text.contains(flash), "{name}: {text}");
        assert!(!text.contains("fit int8"), "{name}: {text}");

        // The estimate table: its header, one row per core, and the line that says what
        // it rests on directly under the table.
        assert!(
            text.contains("instructions per inference (estimate)"),
            "{name}: {text}"
        );
        assert!(
            has_row(&[
                "core",
                "kernel",
                "insns/MAC",
                "network",
                "insns/input",
                "input",
                "stage",
                "total"
            ]),
            "{name}: {text}"
        );
        // The rows carry the committed rates and what they give for 1,184 MACs and 64 features.
        for (core_name, words) in [
            ("Cortex-M4F", &["Cortex-M4F", "packed", "SMLAD"][..]),
            (
                "RISC-V rv32imc",
                &["RISC-V", "rv32imc", "four-row,", "RV32IM", "asm"][..],
            ),
        ] {
            let (network, input_stage, total) =
                expected_estimate(core_name, &FIXTURE_LAYERS, 64, "byte_table");
            let (per_mac, per_input) = (network as f64 / 1184.0, input_stage as f64 / 64.0);
            let figures = [
                format!("{per_mac:.2}"),
                network.to_string(),
                format!("{per_input:.1}"),
                input_stage.to_string(),
                total.to_string(),
            ];
            let row: Vec<&str> = words
                .iter()
                .copied()
                .chain(figures.iter().map(String::as_str))
                .collect();
            assert!(has_row(&row), "{name}: {row:?} in {text}");
        }
        let lines: Vec<&str> = text.lines().collect();
        // The device table has a RISC-V row too; the estimate table is the last.
        let last_core = lines
            .iter()
            .rposition(|l| l.trim_start().starts_with("RISC-V rv32imc"))
            .unwrap();
        assert_eq!(
            lines[last_core + 1],
            "  input stage: the byte table loop",
            "{name}: {text}"
        );
        assert!(
            lines[last_core + 2]
                .starts_with("  note: estimated per layer (whole blocks of four rows"),
            "{name}: {text}"
        );
    }
}

#[test]
fn a_budget_is_checked_for_the_int8_model_on_every_core() {
    let fx = fixture();
    let m0 = core_figures("Cortex-M0");
    let (m0_flash, m0_ram) = fixture_totals(&m0);
    let m0_text = m0["runtime_text_bytes"]["mlp"].as_u64().unwrap();
    for name in ALL_FILES {
        let path = fx.file(name);
        let fits = kiln(&["inspect", s(&path), "--flash", "64K", "--ram", "16K"]);
        assert_eq!(fits.status.code(), Some(0), "{name}: {}", stderr(&fits));
        let text = stdout(&fits);
        // Each core's verdict on its own totals.
        for core in CORES {
            let (flash, ram) = fixture_totals(&core_figures(core));
            for line in [
                format!(
                    "fit int8       {core}: flash {flash} of 65536 bytes: fits: yes, {} bytes",
                    65536 - flash
                ),
                format!(
                    "fit int8       {core}: RAM {ram} of 16384 bytes: fits: yes, {} bytes",
                    16384 - ram
                ),
            ] {
                assert!(text.contains(&line), "{name}: no {line:?} in {text}");
            }
        }
        assert!(
            text.contains("fit int8       fits on every core"),
            "{name}: {text}"
        );

        let too_small = kiln(&["inspect", s(&path), "--flash", "1K"]);
        let m0_reason = format!(
            "Cortex-M0: flash needs {m0_flash} bytes (model blob {BLOB_BYTES} + kiln-runtime \
             .text {m0_text}), budget 1024 ({} bytes over)",
            m0_flash - 1024
        );
        assert_fails(
            &too_small,
            1,
            &[
                s(&path),
                "the int8 model does not fit on Cortex-M0, Cortex-M3, Cortex-M4F, Cortex-M7, \
                 RISC-V rv32imc: ",
                &m0_reason,
            ],
        );
        let over = format!(
            "Cortex-M0: flash {m0_flash} of 1024 bytes: fits: no, {} bytes",
            m0_flash - 1024
        );
        assert!(
            stdout(&too_small).contains(&over),
            "{name}: {}",
            stdout(&too_small)
        );
    }

    // One core: its flash exactly, and its RAM one byte short.
    let blob = fx.file("model.kiln");
    let (flash_flag, ram_flag) = (m0_flash.to_string(), (m0_ram - 1).to_string());
    let report = kiln(&[
        "inspect",
        s(&blob),
        "--json",
        "--core",
        "cortex-m0",
        "--flash",
        &flash_flag,
        "--ram",
        &ram_flag,
    ]);
    assert_eq!(report.status.code(), Some(1), "{}", stderr(&report));
    let report = json(&report);
    let fit = &report["fit"];
    assert_eq!(fit["representation"], "int8");
    assert_eq!(fit["core"], "Cortex-M0");
    assert_eq!(fit["fits"], false);
    assert_eq!(
        fit["cores_that_do_not_fit"],
        serde_json::json!(["Cortex-M0"])
    );
    assert_eq!(fit["cores"].as_array().unwrap().len(), 1, "{fit}");
    assert_eq!(fit["flash"]["fits"], true);
    assert_eq!(fit["flash"]["used_bytes"], m0_flash);
    assert_eq!(fit["flash"]["margin_bytes"], 0);
    assert_eq!(fit["ram"]["fits"], false);
    assert_eq!(fit["ram"]["used_bytes"], m0_ram);
    assert_eq!(fit["ram"]["budget_bytes"], m0_ram - 1);
    assert_eq!(fit["ram"]["margin_bytes"], -1);
    assert_eq!(fit["cores"][0]["ram"], fit["ram"]);

    // Sizes: plain bytes, K/KiB, M/MiB.
    for (flag, bytes) in [
        ("2000", 2000),
        ("2k", 2048),
        ("2KiB", 2048),
        ("1M", 1 << 20),
        ("1MiB", 1 << 20),
    ] {
        let output = kiln(&["inspect", s(&blob), "--json", "--ram", flag]);
        assert!(
            matches!(output.status.code(), Some(0 | 1)),
            "{flag}: {}",
            stderr(&output)
        );
        assert_eq!(json(&output)["fit"]["ram"]["budget_bytes"], bytes, "{flag}");
    }
}

/// A digits-sized model whose blob fits the flash alone: the runtime's code is what does not.
#[test]
fn a_blob_that_fits_alone_does_not_fit_with_the_runtime() {
    let fx = fixture();
    let blob = fx.file("model.kiln");
    let m0 = core_figures("Cortex-M0");
    let text = m0["runtime_text_bytes"]["mlp"].as_u64().unwrap();
    let budget = BLOB_BYTES + text - 1;
    assert!(BLOB_BYTES < budget);
    let budget_flag = budget.to_string();
    let output = kiln(&[
        "inspect",
        s(&blob),
        "--core",
        "cortex-m0",
        "--flash",
        &budget_flag,
    ]);
    let reason = format!(
        "the int8 model does not fit on Cortex-M0: flash needs {} bytes (model blob \
         {BLOB_BYTES} + kiln-runtime .text {text}), budget {budget} (1 bytes over)",
        BLOB_BYTES + text
    );
    assert_fails(&output, 1, &[s(&blob), &reason]);
    // The dense model's remedy is named when it is one.
    let small = BLOB_BYTES + m0["runtime_text_bytes"]["mlp_small"].as_u64().unwrap();
    if small <= budget {
        assert_fails(
            &output,
            1,
            &[&format!(
                "kiln-runtime's `small` feature would make it {small} bytes"
            )],
        );
    }
    assert!(
        stdout(&output).contains("fit int8       does not fit on Cortex-M0"),
        "{}",
        stdout(&output)
    );
}

/// `--core` checks that core's figures; without it every core must fit, and the failure names
/// the cores that do not.
#[test]
fn one_core_or_every_core() {
    let fx = fixture();
    let path = fx.file("model.json");
    let (m0_flash, _) = fixture_totals(&core_figures("Cortex-M0"));
    let flag = m0_flash.to_string();

    let one = kiln(&["inspect", s(&path), "--core", "Cortex-M0", "--flash", &flag]);
    assert_eq!(one.status.code(), Some(0), "{}", stderr(&one));
    let text = stdout(&one);
    assert!(text.contains("fit int8       Cortex-M0: flash"), "{text}");
    assert!(text.contains("fit int8       fits on Cortex-M0"), "{text}");
    assert!(!text.contains("fit int8       Cortex-M3"), "{text}");
    let stack = core_figures("Cortex-M0")["inference_stack_bytes"]["mlp"]
        .as_u64()
        .unwrap();
    assert!(
        text.contains(&format!("peak stack     {stack} bytes on Cortex-M0")),
        "{text}"
    );

    let too_big: Vec<&str> = CORES
        .into_iter()
        .filter(|core| fixture_totals(&core_figures(core)).0 > m0_flash)
        .collect();
    let every = kiln(&["inspect", s(&path), "--json", "--flash", &flag]);
    let report = json(&every);
    let fit = &report["fit"];
    assert!(fit["core"].is_null(), "{fit}");
    assert_eq!(fit["cores"].as_array().unwrap().len(), 5, "{fit}");
    assert_eq!(fit["cores_that_do_not_fit"], serde_json::json!(too_big));
    if too_big.is_empty() {
        assert_eq!(every.status.code(), Some(0), "{}", stderr(&every));
    } else {
        let named = format!("does not fit on {}: ", too_big.join(", "));
        assert_fails(&every, 1, &[s(&path), &named]);
        // The tightest core is the top-level verdict.
        assert_eq!(fit["flash"]["fits"], false, "{fit}");
    }
    let every_text = stdout(&kiln(&["inspect", s(&path), "--flash", &flag]));
    for core in CORES {
        assert!(
            every_text.contains(&format!("fit int8       {core}: flash ")),
            "{core}: {every_text}"
        );
    }
}

#[test]
fn an_unknown_core_is_one_line_listing_the_names() {
    let fx = fixture();
    for name in ["cortex-m33", "", "m0"] {
        let output = kiln(&["inspect", s(&fx.file("model.kiln")), "--core", name]);
        assert_fails(
            &output,
            2,
            &[
                &format!("--core: unknown core '{name}'"),
                "expected one of cortex-m0, cortex-m3, cortex-m4f, cortex-m7, rv32imc",
            ],
        );
    }
    // The flag is checked before the file.
    assert_fails(
        &kiln(&["inspect", "missing.kiln", "--core", "cortex-m99"]),
        2,
        &["--core: unknown core 'cortex-m99'"],
    );
}

#[test]
fn bad_files_and_sizes_get_one_line_naming_them() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();

    let garbage = dir.path().join("garbage.bin");
    std::fs::write(&garbage, b"hello, this is not a model\n").unwrap();
    assert_fails(
        &kiln(&["inspect", s(&garbage)]),
        2,
        &[s(&garbage), "expected a kiln model file"],
    );

    let blob = std::fs::read(fx.file("model.kiln")).unwrap();
    let truncated = dir.path().join("truncated.kiln");
    std::fs::write(&truncated, &blob[..blob.len() / 2]).unwrap();
    assert_fails(
        &kiln(&["inspect", s(&truncated)]),
        2,
        &[s(&truncated), "not a valid .kiln model blob", "truncated"],
    );

    let onnx = std::fs::read(fx.file("model.onnx")).unwrap();
    let truncated_onnx = dir.path().join("truncated.onnx");
    std::fs::write(&truncated_onnx, &onnx[..onnx.len() / 2]).unwrap();
    assert_fails(
        &kiln(&["inspect", s(&truncated_onnx)]),
        2,
        &[s(&truncated_onnx), "expected a kiln model file"],
    );

    let other_json = dir.path().join("other.json");
    std::fs::write(&other_json, br#"{"format": "something-else"}"#).unwrap();
    assert_fails(
        &kiln(&["inspect", s(&other_json)]),
        2,
        &[s(&other_json), "something-else", "kiln-model"],
    );

    let missing = dir.path().join("missing.onnx");
    assert_fails(
        &kiln(&["inspect", s(&missing)]),
        2,
        &[s(&missing), "cannot read"],
    );

    let model = fx.file("model.json");
    for (flag, value) in [
        ("--flash", "lots"),
        ("--flash", "1.5K"),
        ("--ram", "16Q"),
        ("--ram", "0"),
    ] {
        assert_fails(
            &kiln(&["inspect", s(&model), flag, value]),
            2,
            &[flag, value],
        );
    }
}

/// A standardized model (one input entry per feature) with tanh: the same estimate from every
/// file, with the per-feature input loop, and the note on what the calibration does not cover.
#[test]
fn a_per_feature_input_stage_is_estimated_per_feature() {
    let dir = tempfile::tempdir().unwrap();
    let out = s(dir.path()).to_owned();
    let trained = kiln(&[
        "train",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--normalize",
        "standardize",
        "--activation",
        "tanh",
        "--quiet",
        "-o",
        &out,
    ]);
    assert!(trained.status.success(), "{}", stderr(&trained));
    let quantized = kiln(&[
        "quantize",
        s(&dir.path().join("model.json")),
        "-o",
        &out,
        "--quiet",
    ]);
    assert!(quantized.status.success(), "{}", stderr(&quantized));
    // 64 x 8 + 8 x 10 MACs.
    let macs = 64 * 8 + 8 * 10;
    let layers = [(64, 8), (8, 10)];
    for name in ALL_FILES {
        let path = dir.path().join(name);
        let output = kiln(&["inspect", s(&path), "--json"]);
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        let report = json(&output);
        assert_eq!(report["totals"]["macs"], macs, "{name}");
        let estimate = &report["instructions_per_inference"];
        assert_estimate_follows_the_model(estimate, &layers, 64, "per_feature", name);
        assert_estimate_notes(estimate, name, &["table activation"]);

        let text = stdout(&kiln(&["inspect", s(&path)]));
        assert!(
            text.contains("  input stage: the per feature loop"),
            "{name}: {text}"
        );
        assert!(
            text.contains("  note: the calibration networks have relu and identity layers"),
            "{name}: {text}"
        );
    }
}

/// One wide layer (1000 inputs, 2 outputs: no whole block of four rows), from an ONNX file:
/// the per-layer model's rows-after-the-blocks rate, and the byte table assumed.
#[test]
fn a_wide_layer_gets_the_per_layer_estimate() {
    use kiln_onnx::builder::{attr_int, Dim, GraphBuilder, Producer};
    let mut graph = GraphBuilder::new("wide");
    graph.input_f32("x", &[Dim::Param("N".into()), Dim::Fixed(1000)]);
    graph
        .initializer_f32("w", &[2, 1000], &[0.01; 2000])
        .unwrap()
        .initializer_f32("b", &[2], &[0.0; 2])
        .unwrap();
    graph.node(
        "Gemm",
        "g",
        &["x", "w", "b"],
        &["y"],
        vec![attr_int("transB", 1)],
    );
    graph.output_f32("y", &[Dim::Param("N".into()), Dim::Fixed(2)]);
    let producer = Producer {
        name: "hand".into(),
        version: "1".into(),
    };
    let model = graph.build(13, &producer, "").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.onnx");
    std::fs::write(&path, kiln_onnx::mlp::encode_model(&model)).unwrap();

    let output = kiln(&["inspect", s(&path), "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["totals"]["macs"], 2000);
    let estimate = &report["instructions_per_inference"];
    assert_estimate_follows_the_model(estimate, &[(1000, 2)], 1000, "byte_table", "wide.onnx");
    assert_estimate_notes(estimate, "wide.onnx", &[]);
    // The M3's committed model: 2,000 MACs in rows after the (absent) blocks.
    let m3 = &estimate["cores"][1];
    assert_eq!(m3["core"], "Cortex-M3");
    let model = &core_figures("Cortex-M3")["estimate"];
    let f = |key: &str| model[key].as_f64().unwrap();
    let network = 2000.0 * f("tail_mac") + 2.0 * f("row") + f("layer") + f("inference");
    assert_eq!(m3["network_insns"], network.round() as u64, "{m3}");
}

/// A float ONNX graph kiln does not write: Gemm with transB = 0 (weights `[n_in, n_out]`),
/// no bias, and a Tanh.
#[test]
fn other_onnx_layouts_are_read_too() {
    use kiln_onnx::builder::{attr_int, Dim, GraphBuilder, Producer};
    let mut graph = GraphBuilder::new("hand_made");
    graph.input_f32("x", &[Dim::Param("N".into()), Dim::Fixed(3)]);
    graph
        .initializer_f32("w0", &[3, 5], &[0.1; 15])
        .unwrap()
        .initializer_f32("b0", &[5], &[0.0; 5])
        .unwrap()
        .initializer_f32("w1", &[5, 2], &[0.1; 10])
        .unwrap();
    graph.node("Gemm", "g0", &["x", "w0", "b0"], &["h0"], vec![]);
    graph.node("Tanh", "t0", &["h0"], &["a0"], vec![]);
    graph.node(
        "Gemm",
        "g1",
        &["a0", "w1"],
        &["y"],
        vec![attr_int("transB", 0)],
    );
    graph.output_f32("y", &[Dim::Param("N".into()), Dim::Fixed(2)]);
    let producer = Producer {
        name: "hand".into(),
        version: "1".into(),
    };
    let model = graph.build(13, &producer, "").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hand.model");
    std::fs::write(&path, kiln_onnx::mlp::encode_model(&model)).unwrap();

    let output = kiln(&["inspect", s(&path), "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["format"], "onnx");
    assert_eq!(report["architecture"], "3-5-2");
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers[0]["activation"], "tanh");
    assert_eq!(layers[0]["parameters"], 20);
    assert_eq!(layers[1]["activation"], "identity");
    assert_eq!(layers[1]["biases"], 0);
    assert_eq!(layers[1]["parameters"], 10);
    // A table layer carries its 256-byte table: 24 + 20 + 5 + 3 + 20 + 15 + 1 + 256.
    assert_eq!(layers[0]["int8_bytes"], 344);
    assert_eq!(report["totals"]["ram"]["int8_scratch_bytes"], 8);
}

const SUBCOMMANDS: [&str; 9] = [
    "train",
    "export",
    "check",
    "demo",
    "quantize",
    "bake",
    "run",
    "inspect",
    "completions",
];

#[test]
fn completions_cover_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let output = kiln(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        let script = stdout(&output);
        assert!(script.contains("kiln"), "{shell}: {script}");
        for subcommand in SUBCOMMANDS {
            assert!(
                script.contains(subcommand),
                "{shell}: no {subcommand} in the script"
            );
        }
    }
    let bash = stdout(&kiln(&["completions", "bash"]));
    assert!(bash.contains("complete -F _kiln"), "{bash}");
    assert!(bash.contains("--flash"), "inspect's flags are completed");

    assert_eq!(kiln(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn every_subcommand_help_ends_with_an_example() {
    use clap::CommandFactory;
    let cli = kiln_trainer::cli::Cli::command();
    let names: Vec<String> = cli
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    for expected in SUBCOMMANDS {
        assert!(names.iter().any(|n| n == expected), "{expected} missing");
    }
    for name in &names {
        let output = kiln(&[name, "--help"]);
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        let help = stdout(&output);
        let last = help.trim_end().lines().last().unwrap_or_default();
        assert!(
            last.starts_with("Example: kiln "),
            "{name} --help does not end with an example: {help}"
        );
    }
}
