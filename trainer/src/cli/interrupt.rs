//! Ctrl-C handling for training. The first SIGINT or SIGTERM during training asks the
//! training loop to stop after the current mini-batch and save a checkpoint. A signal
//! outside the training loop (loading data, exporting, checking), or a second signal,
//! exits at once with code 130: every file is written atomically, so nothing on disk is
//! torn; at worst a hidden temp file (`.model.json.tmp-<pid>`) remains, which the next
//! `kiln train` into that folder removes. `kiln fit` stops every candidate in flight the
//! same way.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

static SIGNALS: AtomicUsize = AtomicUsize::new(0);
static TRAINING: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// The test hook: `KILN_INTERRUPT_AFTER_BATCHES=N` makes `kiln train` and `kiln fit` behave exactly as
/// if SIGINT arrived while the N-th mini-batch of this process was running, so tests
/// can interrupt at a precise point without timing races. Not a user-facing setting.
pub const HOOK_VAR: &str = "KILN_INTERRUPT_AFTER_BATCHES";

/// Installs the handler (once per process). If the platform refuses, Ctrl-C keeps its
/// default behaviour, which is still safe because every write is atomic.
pub fn install() {
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            let count = SIGNALS.fetch_add(1, Ordering::SeqCst) + 1;
            if count >= 2 || !TRAINING.load(Ordering::SeqCst) {
                eprintln!("interrupted");
                std::process::exit(130);
            }
        });
    });
}

/// Marks whether the training loop is running (and so will save a checkpoint).
pub fn set_training(training: bool) {
    TRAINING.store(training, Ordering::SeqCst);
}

/// Whether a signal has arrived.
pub fn signalled() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}

/// The batch count of the test hook, if set.
pub fn hook() -> anyhow::Result<Option<usize>> {
    match std::env::var(HOOK_VAR) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{HOOK_VAR}: expected a batch count, got {text:?}")),
        Err(_) => Ok(None),
    }
}
