//! Peak stack by painting: fill the free RAM between the static data and the stack pointer
//! with a pattern at boot, then find the lowest word the stack has overwritten.

use crate::arch;
use core::ptr::{read_volatile, write_volatile};

const PAINT: u32 = 0xC5C5_C5C5;
/// Left unpainted below the current stack pointer: the frames of `paint` itself.
const MARGIN: usize = 64;

pub fn paint() {
    let (bottom, _) = arch::stack_region();
    fill((bottom + 3) & !3, (arch::stack_pointer() - MARGIN) & !3);
}

/// Bytes between the top of the stack and the lowest overwritten word.
pub fn peak() -> usize {
    let (bottom, top) = arch::stack_region();
    top - lowest_overwritten((bottom + 3) & !3, top)
}

/// Paints the words from `low` up to `top` (word-aligned). Inlined: no stack of its own.
#[inline(always)]
fn fill(low: usize, top: usize) {
    let mut address = low;
    while address < top {
        unsafe { write_volatile(address as *mut u32, PAINT) };
        address += 4;
    }
}

/// The lowest word from `low` up to `top` that no longer holds the paint (`top` if none).
fn lowest_overwritten(low: usize, top: usize) -> usize {
    let mut address = low;
    while address < top {
        if unsafe { read_volatile(address as *const u32) } != PAINT {
            break;
        }
        address += 4;
    }
    address
}

/// The most bytes below the caller's frame painted for one measured call.
const WINDOW: usize = 4096;

/// A painted stretch just below the caller's stack pointer.
#[derive(Clone, Copy)]
pub struct Window {
    top: usize,
    low: usize,
}

/// Paints up to `WINDOW` bytes below the caller's stack pointer, so that `window_peak` after
/// one call gives that call's own peak stack. Inlined, so the loop runs in the caller's frame
/// and needs no stack of its own; the window keeps the cost per call small on boards with
/// megabytes of RAM.
#[inline(always)]
pub fn paint_window() -> Window {
    let top = arch::stack_pointer() & !3;
    let (bottom, _) = arch::stack_region();
    let low = top.saturating_sub(WINDOW).max((bottom + 3) & !3);
    fill(low, top);
    Window { top, low }
}

/// The bytes below the window's top that the call since `paint_window` overwrote (all of the
/// window if it reached the bottom: then the figure is a lower bound).
pub fn window_peak(window: Window) -> usize {
    window.top - lowest_overwritten(window.low, window.top)
}
