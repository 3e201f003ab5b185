//! What both board examples do with the model, whatever the board: run kiln-runtime on every
//! held-out image in samples.rs, print each prediction with its label over defmt, and compare
//! the int8 logits with the host's. Each board crate includes this file with `#[path]` and
//! supplies a microsecond clock from its HAL.

use crate::samples::{MODEL_CRC32, N_CLASSES, N_PIXELS, SAMPLES};
use kiln_runtime::Model;

/// Scratch RAM for the activations; the digits model needs 192 bytes. A bigger model that
/// needs more gets `Error::BufferTooSmall` from `run`, printed, and this constant is the fix.
const SCRATCH_LEN: usize = 512;

/// What the run over the samples found.
pub struct Summary {
    pub n_images: u32,
    /// Predictions equal to their label.
    pub n_correct: u32,
    /// Logit vectors equal to the host's, or `None` when the embedded model is not the one
    /// samples.rs was written for (a swapped-in model) and there is nothing to compare with.
    pub n_host_equal: Option<u32>,
    /// The slowest inference, input quantization included.
    pub max_inference_us: u32,
}

impl Summary {
    /// Every prediction matches its label and every logit the host's (when comparable).
    pub fn all_match(&self) -> bool {
        self.n_correct == self.n_images && self.n_host_equal.is_none_or(|n| n == self.n_images)
    }
}

/// Loads the blob and classifies every sample. `now_us` reads a free-running microsecond
/// counter; wrapping differences time each inference.
pub fn classify_samples(
    blob: &[u8],
    mut now_us: impl FnMut() -> u32,
) -> Result<Summary, kiln_runtime::Error> {
    let model = Model::from_bytes(blob)?;
    defmt::info!(
        "model: {=usize} bytes, {=usize} inputs, {=usize} classes, {=usize} layers, {=usize} B scratch",
        blob.len(),
        model.n_inputs(),
        model.n_outputs(),
        model.n_layers(),
        model.scratch_len()
    );
    // A valid blob ends with the CRC-32 of all its other bytes, which identifies the model.
    let same_model =
        blob.last_chunk::<4>().map(|crc| u32::from_le_bytes(*crc)) == Some(MODEL_CRC32);
    if !same_model {
        defmt::warn!("not the model samples.rs was made for: logits not compared with the host's");
    }

    let mut raw = [0i32; N_PIXELS];
    let mut scratch = [0i8; SCRATCH_LEN];
    let mut logits = [0i8; N_CLASSES];
    let mut summary = Summary {
        n_images: 0,
        n_correct: 0,
        n_host_equal: same_model.then_some(0),
        max_inference_us: 0,
    };
    for sample in SAMPLES.iter() {
        for (value, &pixel) in raw.iter_mut().zip(sample.pixels.iter()) {
            *value = i32::from(pixel);
        }
        let start = now_us();
        let prediction = model.run(&raw, &mut scratch, &mut logits)?;
        let elapsed_us = now_us().wrapping_sub(start);

        let correct = prediction == usize::from(sample.label);
        let host_equal =
            logits == sample.host_logits && prediction == usize::from(sample.host_prediction);
        summary.n_images += 1;
        summary.n_correct += u32::from(correct);
        if let Some(n) = summary.n_host_equal.as_mut() {
            *n += u32::from(host_equal);
        }
        summary.max_inference_us = summary.max_inference_us.max(elapsed_us);
        defmt::info!(
            "row {=u32}: label {=u8}, prediction {=usize} ({=str}), logits {} ({=str}), {=u32} us",
            sample.row_idx,
            sample.label,
            prediction,
            if correct { "correct" } else { "WRONG" },
            logits,
            match (same_model, host_equal) {
                (false, _) => "host not compared",
                (true, true) => "= host",
                (true, false) => "DIFFER from host",
            },
            elapsed_us
        );
    }
    match summary.n_host_equal {
        Some(n_host_equal) => defmt::info!(
            "{=u32}/{=u32} predictions match their labels, {=u32}/{=u32} logit vectors equal the host's, slowest inference {=u32} us",
            summary.n_correct,
            summary.n_images,
            n_host_equal,
            summary.n_images,
            summary.max_inference_us
        ),
        None => defmt::info!(
            "{=u32}/{=u32} predictions match their labels, slowest inference {=u32} us",
            summary.n_correct,
            summary.n_images,
            summary.max_inference_us
        ),
    }
    Ok(summary)
}
