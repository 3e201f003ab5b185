//! `cargo xtask bench-kernels`: each convolution and pooling kernel alone, optimized and
//! reference, on the CMSIS-NN bench shapes, under QEMU with the qemu-insncount plugin
//! (Cortex-M4F on mps2-an386, Cortex-M0 on microbit).
//!
//! It cross-builds `examples/kernel-bench-qemu` per board, boots it, requires every optimized
//! output to have the reference's CRC-32 (the firmware checks it and prints both), and prints
//! instructions per MAC next to CMSIS-NN's figures from `../shared/tools/cmsis-nn-bench/README.md`
//! (the same shapes, counted the same way: the kernel call's instructions over outputs x kernel
//! area x input channels per group).

use crate::ci::workspace_root;
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Board {
    name: &'static str,
    machine: &'static str,
    core: &'static str,
    target: &'static str,
    /// CMSIS-NN's column in the cmsis-nn-bench README table.
    cmsis_column: usize,
}

const BOARDS: [Board; 2] = [
    Board {
        name: "mps2-an386",
        machine: "mps2-an386",
        core: "Cortex-M4F",
        target: "thumbv7em-none-eabihf",
        cmsis_column: 0,
    },
    Board {
        name: "microbit",
        machine: "microbit",
        core: "Cortex-M0",
        target: "thumbv6m-none-eabi",
        cmsis_column: 1,
    },
];

/// Guest instructions of an empty `bench_start`/`bench_stop` pair on Arm.
const MARKER_OVERHEAD: u64 = 5;

/// The firmware's shape names, their description, and CMSIS-NN's instructions per MAC
/// (M4F, M0) from ../shared/tools/cmsis-nn-bench/README.md (CMSIS-NN 99f736a, gcc 12.2.1 -O2).
const SHAPES: [(&str, &str, Option<[f64; 2]>); 16] = [
    (
        "kws_conv1",
        "KWS conv1 49x10x1, 10x4 s2 -> 25x5x64 same",
        Some([3.494, 9.432]),
    ),
    (
        "kws_depthwise",
        "KWS depthwise 3x3 on 25x5x64",
        Some([7.791, 35.711]),
    ),
    (
        "kws_pointwise",
        "KWS pointwise 1x1 64 -> 64 on 25x5",
        Some([2.088, 7.567]),
    ),
    (
        "mnist_conv1",
        "MNIST conv1 28x28x1, 3x3 -> 16 same",
        Some([10.402, 21.389]),
    ),
    (
        "mnist_conv2",
        "MNIST conv2 14x14x16, 3x3 -> 32 same",
        Some([2.138, 7.134]),
    ),
    (
        "conv1d",
        "1-D 1x128x3, 1x5 -> 16 valid",
        Some([6.385, 14.887]),
    ),
    (
        "odd_conv",
        "conv 9x7x5, 3x3 s2 -> 5x4x7 same (bit-exactness)",
        None,
    ),
    (
        "odd_depthwise",
        "depthwise 9x7x6, 3x3 s2 same (bit-exactness)",
        None,
    ),
    ("mnist_maxpool", "max pool 2x2 s2 on 28x28x16", None),
    ("kws_avgpool", "global average pool on 25x5x64", None),
    (
        "ties_depthwise",
        "depthwise 1x1 on 1x64x4, rounding ties (bit-exactness)",
        None,
    ),
    (
        "ties_conv",
        "conv 1x1 4 -> 4 on 1x64, rounding ties (bit-exactness)",
        None,
    ),
    (
        "ties_dense",
        "fully connected 8 -> 128, rounding ties (bit-exactness)",
        None,
    ),
    (
        "ic_add",
        "residual add 16x16x32 (IC ResNet-8's second; per element)",
        None,
    ),
    (
        "ties_add",
        "residual add of 256, rounding ties (bit-exactness)",
        None,
    ),
    (
        "dense_784_128",
        "fully connected 784 -> 128 (the dense kernel, for scale)",
        Some([1.939, 6.159]),
    ),
];

struct Options {
    only: Vec<String>,
    insncount: PathBuf,
}

fn parse(args: &[String]) -> Result<Options> {
    let root = workspace_root();
    let mut options = Options {
        only: Vec::new(),
        insncount: root.join("../shared/tools/qemu-insncount"),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().context("missing value");
        match arg.as_str() {
            "--board" => options.only.push(value()?),
            "--insncount" => options.insncount = value()?.into(),
            other => anyhow::bail!(
                "bench-kernels: unknown option `{other}` (expected --board mps2-an386|microbit, \
                 --insncount DIR)"
            ),
        }
    }
    Ok(options)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn build(board: &Board) -> Result<PathBuf> {
    let crate_dir = workspace_root().join("examples/kernel-bench-qemu");
    let target_dir = target_dir().join("kernel-bench");
    println!(
        "$ cargo build --release --target {} --features board-{}   (in examples/kernel-bench-qemu)",
        board.target, board.name
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The crate's own .cargo/config.toml applies only when cargo runs in its directory.
    let status = Command::new(cargo)
        .current_dir(&crate_dir)
        .stdin(std::process::Stdio::null())
        .env_remove("KILN_KERNEL")
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["build", "--release", "--quiet", "--target", board.target])
        .arg("--features")
        .arg(format!("board-{}", board.name))
        .status()
        .context("cannot run cargo")?;
    ensure!(
        status.success(),
        "the kernel bench for {} does not build (a reachable panic shows as an undefined \
         `kiln_kernel_bench_has_a_reachable_panic`)",
        board.name
    );
    Ok(target_dir
        .join(board.target)
        .join("release/kiln-kernel-bench-qemu"))
}

fn run_qemu(board: &Board, elf: &Path, plugin: &Path) -> Result<(bool, String)> {
    let output = Command::new("timeout")
        .args([
            "300",
            "qemu-system-arm",
            "-machine",
            board.machine,
            "-nographic",
        ])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-icount", "shift=0", "-plugin"])
        .arg(plugin)
        .args(["-d", "plugin", "-kernel"])
        .arg(elf)
        .output()
        .context("cannot run qemu-system-arm (apt-get install qemu-system-arm)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

/// One shape's result on one board.
struct Measured {
    name: String,
    macs: u64,
    reference: u64,
    optimized: u64,
}

/// Pairs the plugin's regions (reference, then optimized, per shape, in order; the plugin
/// writes to stderr, the firmware to stdout) with the firmware's `KERNEL` lines, and requires
/// every line to say `ok`.
fn parse_output(board: &Board, output: &str) -> Result<Vec<Measured>> {
    let counts: Vec<u64> = output
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("insncount: region ")?;
            let (_, count) = rest.split_once(": ")?;
            count.strip_suffix(" instructions")?.trim().parse().ok()
        })
        .map(|c: u64| c.saturating_sub(MARKER_OVERHEAD))
        .collect();
    let mut rows = Vec::new();
    for line in output.lines() {
        let Some(rest) = line.strip_prefix("KERNEL ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ensure!(
            fields.last() == Some(&"ok"),
            "{}: the optimized kernel's output differs from the reference: `{line}`",
            board.name
        );
        let macs = fields
            .iter()
            .find_map(|f| f.strip_prefix("macs="))
            .and_then(|m| m.parse().ok())
            .with_context(|| format!("bad line `{line}`"))?;
        let i = 2 * rows.len();
        let (Some(&reference), Some(&optimized)) = (counts.get(i), counts.get(i + 1)) else {
            anyhow::bail!("{}: no counted regions for `{line}`", board.name);
        };
        rows.push(Measured {
            name: fields.first().copied().unwrap_or("?").to_string(),
            macs,
            reference,
            optimized,
        });
    }
    ensure!(
        output.contains("KILN-KERNELS ok") && counts.len() == 2 * rows.len(),
        "{}: the kernel bench did not finish with every output identical:\n{output}",
        board.name
    );
    Ok(rows)
}

pub fn run(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    let plugin = crate::firmware::build_plugin(&options.insncount, &target_dir().join("qemu"))?;
    let mut lines = Vec::new();
    for board in BOARDS
        .iter()
        .filter(|b| options.only.is_empty() || options.only.iter().any(|n| n == b.name))
    {
        println!("\n== {} ({}) ==", board.name, board.core);
        let elf = build(board)?;
        let (success, output) = run_qemu(board, &elf, &plugin)?;
        ensure!(
            success,
            "{}: the kernel bench failed:\n{output}",
            board.name
        );
        for m in parse_output(board, &output)? {
            let (description, cmsis) = SHAPES
                .iter()
                .find(|(name, _, _)| *name == m.name)
                .map(|(_, d, c)| (*d, c.map(|c| c[board.cmsis_column])))
                .unwrap_or((m.name.as_str(), None));
            let per_mac = |insns: u64| insns as f64 / m.macs as f64;
            let (cmsis_text, ratio_text) = match cmsis {
                Some(c) => (
                    format!("{c:.3}"),
                    format!("{:.2}", per_mac(m.optimized) / c),
                ),
                None => ("-".to_string(), "-".to_string()),
            };
            lines.push(format!(
                "| {} | {} | {} | {:.3} | {:.3} | {:.1}x | {} | {} |",
                board.core,
                description,
                m.macs,
                per_mac(m.optimized),
                per_mac(m.reference),
                m.reference as f64 / m.optimized as f64,
                cmsis_text,
                ratio_text,
            ));
        }
    }
    println!(
        "\ncargo xtask bench-kernels: one kernel call per row, exact guest instructions from the\n\
         qemu-insncount plugin (markers subtracted) over MACs (outputs x kernel area x input\n\
         channels per group; for pooling, outputs x window). Every optimized output had the\n\
         reference's CRC-32. CMSIS-NN: ../shared/tools/cmsis-nn-bench/README.md (99f736a, gcc -O2).\n"
    );
    println!(
        "| core | shape | MACs | Kiln insns/MAC | reference insns/MAC | speed-up | CMSIS-NN insns/MAC | Kiln / CMSIS-NN |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
