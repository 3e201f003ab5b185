//! The board: the serial port and the microsecond timer, the only hardware the submitter API
//! needs (`th_serialport_initialize`, `th_getchar`, `th_printf`'s output, `th_timestamp`).
//!
//! This is the Arm MPS2 AN386 image (Cortex-M4F) as QEMU's `mps2-an386` models it: UART0 is
//! the CMSDK APB UART at 0x4000_4000, clocked like the core at 25 MHz (QEMU connects it to
//! `-serial`); the timer is SysTick on the core clock. Porting to a real board means replacing
//! this file (its UART and its clock) and memory.x.

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;

/// The core and peripheral clock (MPS2: SYSCLK, 25 MHz; QEMU's mps2 boards use the same).
const CLOCK_HZ: u32 = 25_000_000;
/// The runner's DUT speed in performance and accuracy modes (devices_kws_ic_vww.yaml). QEMU
/// ignores the rate (it logs a guest error if TX is enabled with BAUDDIV < 16).
const BAUD: u32 = 115_200;

/// CMSDK APB UART0 (Arm DDI 0479, QEMU hw/char/cmsdk-apb-uart.c).
const UART0: usize = 0x4000_4000;
const DATA: usize = UART0;
const STATE: usize = UART0 + 0x04;
const CTRL: usize = UART0 + 0x08;
const BAUDDIV: usize = UART0 + 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;

fn read(register: usize) -> u32 {
    // Safety: a documented, always-mapped register of the UART.
    unsafe { core::ptr::read_volatile(register as *const u32) }
}

fn write(register: usize, value: u32) {
    // Safety: as `read`; the UART has no other user.
    unsafe { core::ptr::write_volatile(register as *mut u32, value) }
}

/// `th_serialport_initialize`: 115200 baud, transmitter and receiver on, no interrupts (the
/// main loop polls, so a command is never parsed inside an interrupt).
pub fn serial_initialize() {
    write(BAUDDIV, CLOCK_HZ / BAUD);
    write(CTRL, CTRL_TX_EN | CTRL_RX_EN);
}

/// Sends bytes, waiting while the transmit buffer is full.
pub fn serial_write(bytes: &[u8]) {
    for &byte in bytes {
        while read(STATE) & STATE_TX_FULL != 0 {}
        write(DATA, u32::from(byte));
    }
}

/// `th_getchar`: waits for one received byte.
pub fn serial_read() -> u8 {
    while read(STATE) & STATE_RX_FULL == 0 {}
    (read(DATA) & 0xff) as u8
}

/// SysTick periods (2^24 core cycles each) elapsed since `timer_initialize`.
static PERIODS: AtomicU32 = AtomicU32::new(0);
const RELOAD: u32 = 0x00ff_ffff;

#[exception]
fn SysTick() {
    PERIODS.fetch_add(1, Ordering::Relaxed);
}

/// A fault must not look like silence to the runner: say so, then stop.
#[exception]
unsafe fn HardFault(_frame: &cortex_m_rt::ExceptionFrame) -> ! {
    serial_write(b"e-[hard fault]\r\n");
    loop {
        cortex_m::asm::wfi();
    }
}

/// `th_timestamp_initialize`'s hardware part: SysTick free-running on the core clock, its
/// wrap interrupt extending it to 56 bits.
pub fn timer_initialize() {
    let Some(mut peripherals) = cortex_m::Peripherals::take() else {
        return;
    };
    let syst: &mut SYST = &mut peripherals.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Core cycles since `timer_initialize`. A wrap the interrupt has not counted yet (it is
/// pending) is added here; a wrap between the two reads of the count is retried.
fn cycles() -> u64 {
    loop {
        let periods = PERIODS.load(Ordering::Relaxed);
        let mut current = SYST::get_current();
        let mut whole = periods;
        if SCB::is_pendst_pending() {
            current = SYST::get_current();
            whole = whole.wrapping_add(1);
        }
        if PERIODS.load(Ordering::Relaxed) == periods {
            let elapsed_in_period = u64::from(RELOAD - (current & RELOAD));
            return (u64::from(whole) << 24) + elapsed_in_period;
        }
    }
}

/// Microseconds since `timer_initialize` (`us_ticker_read` in the reference submissions).
pub fn micros() -> u64 {
    cycles() / u64::from(CLOCK_HZ / 1_000_000)
}
