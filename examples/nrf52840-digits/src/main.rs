//! The digits model on a Nordic nRF52840-DK (PCA10056). kiln-runtime classifies ten held-out
//! 8x8 digits embedded in flash, prints each prediction with its label and timing over
//! defmt/RTT, and shows the outcome on the board's LEDs (active low):
//!
//! - LED1 (P0.13) on: every prediction matches its label and every int8 logit the host's;
//! - LED4 (P0.16) on: something did not (a wrong class, a logit that differs from the host's,
//!   or a model that does not load).

#![no_std]
#![no_main]

#[path = "../../digits-model/classify.rs"]
mod classify;
#[path = "../../digits-model/samples.rs"]
mod samples;

use cortex_m_rt::entry;
use defmt_rtt as _;
use nrf52840_hal::clocks::Clocks;
use nrf52840_hal::gpio::{p0, Level};
use nrf52840_hal::{pac, Timer};
use panic_probe as _;

/// Aligns the bytes it wraps to 4. The blob starts every section at a multiple of 4 from its
/// first byte, so an aligned start keeps the int32 fields word-aligned in flash.
#[repr(C, align(4))]
struct Aligned<Bytes: ?Sized>(Bytes);

/// The model blob, baked by `kiln bake --blob`; see ../digits-model/README.md.
static MODEL_BLOB: &Aligned<[u8]> = &Aligned(*include_bytes!("../../digits-model/model.kiln"));

#[entry]
fn main() -> ! {
    // Taken once, at reset: nothing else can have taken them.
    let Some(peripherals) = pac::Peripherals::take() else {
        panic!("peripherals already taken")
    };
    // The 64 MHz crystal, so that the timings below are exact rather than the RC oscillator's.
    let _clocks = Clocks::new(peripherals.CLOCK).enable_ext_hfosc();
    let port0 = p0::Parts::new(peripherals.P0);
    // A free-running 1 MHz counter: started once for its full 32-bit range (71 minutes).
    let mut timer = Timer::new(peripherals.TIMER0);
    timer.start(u32::MAX);

    defmt::info!("kiln digits on nRF52840 (Cortex-M4F, 64 MHz)");
    let all_match = match classify::classify_samples(&MODEL_BLOB.0, || timer.read()) {
        Ok(summary) => summary.all_match(),
        Err(error) => {
            defmt::error!(
                "the model does not load or run: {}",
                defmt::Display2Format(&error)
            );
            false
        }
    };
    let (led1, led4) = if all_match {
        (Level::Low, Level::High)
    } else {
        (Level::High, Level::Low)
    };
    let _led1 = port0.p0_13.into_push_pull_output(led1);
    let _led4 = port0.p0_16.into_push_pull_output(led4);
    defmt::info!(
        "done: LED{=u8} is on; the LEDs keep their state (Ctrl-C ends probe-rs)",
        if all_match { 1 } else { 4 }
    );
    loop {
        cortex_m::asm::wfi();
    }
}
