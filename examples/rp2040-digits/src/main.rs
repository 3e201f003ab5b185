//! The digits model on a Raspberry Pi Pico (RP2040). kiln-runtime classifies ten held-out 8x8
//! digits embedded in flash, prints each prediction with its label and timing over defmt/RTT,
//! and shows the outcome on the board's LED (GPIO25): steady on when every prediction matches
//! its label and every int8 logit the host's, blinking fast when something did not (a wrong
//! class, a logit that differs from the host's, or a model that does not load).

#![no_std]
#![no_main]

#[path = "../../digits-model/classify.rs"]
mod classify;
#[path = "../../digits-model/samples.rs"]
mod samples;

use defmt_rtt as _;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use panic_probe as _;
use rp2040_hal::clocks::{init_clocks_and_plls, Clock};
use rp2040_hal::gpio::Pins;
use rp2040_hal::{entry, pac, Sio, Timer, Watchdog};

/// The second-stage bootloader for the Pico's W25Q080 flash, placed by memory.x in the first
/// 256 bytes of flash.
#[link_section = ".boot2"]
#[used]
pub static BOOT2_FIRMWARE: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

/// The Pico's crystal.
const XOSC_CRYSTAL_HZ: u32 = 12_000_000;

/// Aligns the bytes it wraps to 4. The blob starts every section at a multiple of 4 from its
/// first byte, so an aligned start keeps the int32 fields word-aligned in flash.
#[repr(C, align(4))]
struct Aligned<Bytes: ?Sized>(Bytes);

/// The model blob, baked by `kiln bake --blob`; see ../digits-model/README.md.
static MODEL_BLOB: &Aligned<[u8]> = &Aligned(*include_bytes!("../../digits-model/model.kiln"));

#[entry]
fn main() -> ! {
    // Taken once, at reset: nothing else can have taken them.
    let Some(mut peripherals) = pac::Peripherals::take() else {
        panic!("peripherals already taken")
    };
    let mut watchdog = Watchdog::new(peripherals.WATCHDOG);
    // 125 MHz from the crystal; the watchdog's tick also drives the microsecond timer.
    let Ok(clocks) = init_clocks_and_plls(
        XOSC_CRYSTAL_HZ,
        peripherals.XOSC,
        peripherals.CLOCKS,
        peripherals.PLL_SYS,
        peripherals.PLL_USB,
        &mut peripherals.RESETS,
        &mut watchdog,
    ) else {
        panic!("the clocks did not start")
    };
    let sio = Sio::new(peripherals.SIO);
    let pins = Pins::new(
        peripherals.IO_BANK0,
        peripherals.PADS_BANK0,
        sio.gpio_bank0,
        &mut peripherals.RESETS,
    );
    let mut led = pins.gpio25.into_push_pull_output();
    let mut timer = Timer::new(peripherals.TIMER, &mut peripherals.RESETS, &clocks);

    defmt::info!(
        "kiln digits on RP2040 (Cortex-M0+, {=u32} MHz)",
        clocks.system_clock.freq().to_MHz()
    );
    let all_match = match classify::classify_samples(&MODEL_BLOB.0, || timer.get_counter_low()) {
        Ok(summary) => summary.all_match(),
        Err(error) => {
            defmt::error!(
                "the model does not load or run: {}",
                defmt::Display2Format(&error)
            );
            false
        }
    };
    defmt::info!(
        "done: the LED is {=str} (Ctrl-C ends probe-rs)",
        if all_match { "on" } else { "blinking" }
    );
    // Setting a pin of the SIO cannot fail: its error type is Infallible.
    loop {
        let _ = led.set_high();
        if all_match {
            cortex_m::asm::wfi();
        } else {
            timer.delay_ms(100);
            let _ = led.set_low();
            timer.delay_ms(100);
        }
    }
}
