//! Peak stack by painting: fill the free RAM between the static data and the stack pointer
//! with a pattern at boot, then find the lowest word the stack has overwritten.

use crate::arch;
use core::ptr::{read_volatile, write_volatile};

const PAINT: u32 = 0xC5C5_C5C5;
/// Left unpainted below the current stack pointer: the frames of `paint` itself.
const MARGIN: usize = 64;

pub fn paint() {
    let (bottom, _) = arch::stack_region();
    let limit = (arch::stack_pointer() - MARGIN) & !3;
    let mut address = (bottom + 3) & !3;
    while address < limit {
        unsafe { write_volatile(address as *mut u32, PAINT) };
        address += 4;
    }
}

/// Bytes between the top of the stack and the lowest overwritten word.
pub fn peak() -> usize {
    let (bottom, top) = arch::stack_region();
    let mut address = (bottom + 3) & !3;
    while address < top {
        if unsafe { read_volatile(address as *const u32) } != PAINT {
            break;
        }
        address += 4;
    }
    top - address
}
