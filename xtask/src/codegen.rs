//! `cargo xtask codegen`: regenerates the committed ONNX protobuf bindings.
//!
//! protox parses `onnx/proto/onnx.proto` into a descriptor set and prost-build
//! turns it into Rust, so no `protoc` is needed. prost-build formats its output
//! with prettyplease rather than rustfmt, which keeps the result identical on
//! every machine regardless of the installed toolchain components.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use prost_build::Module;

/// Directory holding the vendored schema, relative to the workspace root.
const PROTO_DIR: &str = "onnx/proto";
/// Schema file name inside [`PROTO_DIR`].
const PROTO_FILE: &str = "onnx.proto";
/// Committed output, relative to the workspace root.
pub const GENERATED_PATH: &str = "onnx/src/generated/onnx.rs";

/// Prepended to prost-build's output so readers know how to refresh the file.
const HEADER: &str = "\
// Generated from onnx/proto/onnx.proto by `cargo xtask codegen`. Do not edit by hand.
";

/// Runs the subcommand with the arguments that follow `codegen`.
pub fn run(args: &[String]) -> Result<()> {
    let check = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        _ => bail!("usage: cargo xtask codegen [--check]"),
    };
    let root = workspace_root();
    let target = root.join(GENERATED_PATH);
    if check {
        let fresh = generate(&root)?;
        ensure!(is_up_to_date(&target, &fresh)?, "{}", stale_message());
        println!("{GENERATED_PATH} is up to date");
    } else {
        write_generated(&root, &target)?;
        println!("wrote {}", target.display());
    }
    Ok(())
}

/// The workspace root, found from this crate's manifest so the command works
/// from any current directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Compiles the schema under `root` and returns the Rust source for the
/// `onnx` package.
pub fn generate(root: &Path) -> Result<String> {
    let proto_dir = root.join(PROTO_DIR);
    let fds = protox::compile([PROTO_FILE], [&proto_dir])
        .with_context(|| format!("failed to parse {}", proto_dir.join(PROTO_FILE).display()))?;
    let requests: Vec<(Module, _)> = fds
        .file
        .into_iter()
        .map(|file| (Module::from_protobuf_package_name(file.package()), file))
        .collect();

    let mut modules = prost_build::Config::new()
        .format(true)
        .generate(requests)
        .context("prost-build failed to generate code")?;
    let onnx = Module::from_protobuf_package_name("onnx");
    let code = modules
        .remove(&onnx)
        .context("prost-build produced no `onnx` module")?;
    // A second package would silently be dropped from the committed file.
    ensure!(
        modules.is_empty(),
        "onnx.proto unexpectedly produced extra packages: {:?}",
        modules.keys().collect::<Vec<_>>()
    );
    Ok(format!("{HEADER}{code}"))
}

/// Generates the bindings from the schema under `root` and writes them to
/// `target`, creating its directory if needed.
pub fn write_generated(root: &Path, target: &Path) -> Result<()> {
    let code = generate(root)?;
    if let Some(dir) = target.parent() {
        fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    }
    fs::write(target, code).with_context(|| format!("failed to write {}", target.display()))
}

/// Whether `target` holds exactly `fresh`. Line endings are normalised so a
/// checkout with `core.autocrlf` does not read as stale.
pub fn is_up_to_date(target: &Path, fresh: &str) -> Result<bool> {
    let committed = fs::read_to_string(target)
        .with_context(|| format!("failed to read {}", target.display()))?;
    Ok(committed.replace("\r\n", "\n") == fresh)
}

/// The message shown whenever the committed bindings disagree with the schema.
pub fn stale_message() -> String {
    format!("{GENERATED_PATH} is stale: run `cargo xtask codegen`")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regenerates into a scratch directory, never touching the committed
    /// file, and compares the two byte for byte.
    #[test]
    fn committed_bindings_are_fresh() {
        let root = workspace_root();
        let scratch = std::env::temp_dir().join(format!(
            "kiln-xtask-codegen-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let regenerated_path = scratch.join("onnx.rs");
        let outcome = write_generated(&root, &regenerated_path)
            .and_then(|()| {
                fs::read_to_string(&regenerated_path).context("failed to read regenerated file")
            })
            .and_then(|regenerated| is_up_to_date(&root.join(GENERATED_PATH), &regenerated));
        // Clean up before asserting so a failure leaves nothing behind.
        let _ = fs::remove_dir_all(&scratch);
        assert!(outcome.expect("codegen failed"), "{}", stale_message());
    }

    /// Two runs must agree, otherwise the freshness test would be flaky.
    #[test]
    fn generation_is_deterministic() {
        let root = workspace_root();
        let first = generate(&root).expect("codegen failed");
        let second = generate(&root).expect("codegen failed");
        assert_eq!(first, second);
    }
}
