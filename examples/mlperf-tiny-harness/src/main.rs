//! MLPerf Tiny's submitter API on kiln-runtime: firmware that the official EEMBC/MLCommons
//! runner (mlcommons/tiny `benchmark/runner`) drives over a UART, as it drives the reference
//! submissions.
//!
//! - protocol.rs: the benchmark's own side (`internally_implemented.cpp`): commands ending in
//!   `%`, `name`, `profile`, `db load N`, `db HEX`, `db print`, `infer N W`, `results`, each
//!   answered by its lines and `m-ready`.
//! - this file: the submitter's side (`submitter_implemented.h`, followed in the reference
//!   submissions' `submitter_implemented.cpp`): `th_final_initialize` loads the baked model,
//!   `th_load_tensor` turns the `db` bytes into the int8 input, `th_infer` runs the network,
//!   `th_results` prints the scores.
//! - board.rs: the UART and the microsecond timer.
//!
//! The model is `src/generated/model.rs` (`kiln bake --rust`) and `src/generated/harness.rs`
//! (the MLPerf model id and the input and score formats), both written by
//! `cargo xtask tiny-harness`. The panic handler calls an undefined symbol, so the firmware
//! links only if no panic path is reachable anywhere in it.

#![no_std]
#![no_main]

mod board;
mod out;
mod protocol;

// Generated (`kiln bake --rust`, `cargo xtask tiny-harness`): formatted by their writers. A
// large model's blob is a large const array, which the generated code copies once into its
// aligned static.
#[rustfmt::skip]
#[allow(clippy::large_const_arrays)]
#[path = "generated/model.rs"]
mod model;

#[rustfmt::skip]
#[path = "generated/harness.rs"]
mod config;

use core::ptr::addr_of_mut;
use protocol::{Monitor, Submitter};

/// What the `db` bytes are (generated/harness.rs picks one).
#[allow(dead_code)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// The model's raw input values, one byte each, HWC: pixels 0..=255 as the runner sends
    /// them for image classification and visual wake words. kiln's input stage
    /// (`Model::quantize_bytes`) maps them to the int8 input, so the model sees what it was
    /// trained on.
    RawBytes,
    /// The int8 input itself, already at the model's input scale and zero point
    /// (`INPUT_SCALE`, `INPUT_ZERO_POINT` in model.rs): what the runner sends for keyword
    /// spotting, where the data set holds the quantized features.
    Int8,
}

/// What `m-results-[...]` holds (generated/harness.rs picks one).
#[allow(dead_code)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scores {
    /// The softmax of the dequantized logits: probabilities, as the reference models' Softmax
    /// outputs are. The runner divides the scores by their sum and computes AUC from them, so
    /// it needs non-negative scores.
    Softmax,
    /// The dequantized logits (`Model::dequantize`): kiln's output as it is.
    Logits,
}

extern "C" {
    /// Defined nowhere: referencing it fails the link, which is the point.
    fn kiln_tiny_harness_has_a_reachable_panic() -> !;
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    unsafe { kiln_tiny_harness_has_a_reachable_panic() }
}

/// The submitter's state: the model and its buffers.
struct Kiln {
    model: Option<model::Model>,
    /// The int8 input tensor `th_load_tensor` fills.
    input: [i8; model::N_INPUTS],
    /// The arena plus the room the Cortex-M4 kernels widen into (`FAST_SCRATCH_LEN`).
    scratch: [i8; model::FAST_SCRATCH_LEN],
    logits: [i8; model::N_OUTPUTS],
    scores: [f32; model::N_OUTPUTS],
}

impl Kiln {
    /// `th_final_initialize`: parse the blob and run it once, so that an inference can fail
    /// only here (kiln-runtime refuses wrong buffer lengths and an int16 blob up front; after
    /// one success the same call cannot fail).
    fn final_initialize(&mut self) {
        let Ok(model) = model::model() else {
            out::text(b"e-[the model blob does not load]\r\n");
            return;
        };
        if model
            .run_quantized(&self.input, &mut self.scratch, &mut self.logits)
            .is_err()
        {
            out::text(b"e-[the model does not run on int8 buffers]\r\n");
            return;
        }
        self.model = Some(model);
    }

    fn no_model() {
        out::text(b"e-[no model]\r\n");
    }
}

impl Submitter for Kiln {
    fn load_tensor(&mut self, db: &[u8]) {
        // ee_get_buffer: at most the tensor's size of what has been loaded.
        let bytes = db.len().min(model::N_INPUTS);
        let Some(db) = db.get(..bytes).filter(|_| bytes == model::N_INPUTS) else {
            out::text(b"Input db has ");
            out::decimal(bytes as u64);
            out::text(b" elemented, expected ");
            out::decimal(model::N_INPUTS as u64);
            out::text(b"\n");
            return;
        };
        match config::INPUT {
            InputFormat::RawBytes => {
                let Some(model) = &self.model else {
                    return Self::no_model();
                };
                if model.quantize_bytes(db, &mut self.input).is_err() {
                    out::text(b"e-[the input stage refused the bytes]\r\n");
                }
            }
            InputFormat::Int8 => {
                for (q, &byte) in self.input.iter_mut().zip(db) {
                    *q = byte as i8;
                }
            }
        }
    }

    fn infer(&mut self) {
        if let Some(model) = &self.model {
            // Cannot fail: the same buffers ran in final_initialize.
            let _ = model.run_quantized(&self.input, &mut self.scratch, &mut self.logits);
        }
    }

    fn results(&mut self) {
        let Some(model) = &self.model else {
            return Self::no_model();
        };
        if model.dequantize(&self.logits, &mut self.scores).is_err() {
            return Self::no_model();
        }
        if config::SCORES == Scores::Softmax {
            softmax(&mut self.scores);
        }
        out::text(b"m-results-[");
        for (idx, &score) in self.scores.iter().enumerate() {
            if idx > 0 {
                out::text(b",");
            }
            out::fixed3(score);
        }
        out::text(b"]\r\n");
    }
}

/// In place, in f32: `exp(x - max) / sum`.
fn softmax(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        *v = libm::expf(*v - max);
        sum += *v;
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

struct State {
    monitor: Monitor<{ model::N_INPUTS }>,
    kiln: Kiln,
}

/// In static RAM: the buffers are the model's size, not the stack's.
static mut STATE: State = State {
    monitor: Monitor::new(),
    kiln: Kiln {
        model: None,
        input: [0; model::N_INPUTS],
        scratch: [0; model::FAST_SCRATCH_LEN],
        logits: [0; model::N_OUTPUTS],
        scores: [0.0; model::N_OUTPUTS],
    },
};

/// `ee_benchmark_initialize`, then the main loop: every received character to the monitor.
#[cortex_m_rt::entry]
fn main() -> ! {
    // Safety: the only reference to STATE; no interrupt touches it.
    let state = unsafe { &mut *addr_of_mut!(STATE) };
    board::serial_initialize();
    protocol::timestamp_initialize();
    state.kiln.final_initialize();
    out::text(b"m-init-done\r\nm-ready\r\n");
    loop {
        let c = board::serial_read();
        state.monitor.receive(c, &mut state.kiln);
    }
}
