//! Output over semihosting, without `core::fmt` on the success path.

use crate::arch;

pub fn text(bytes: &[u8]) {
    arch::write(bytes);
}

pub fn decimal(mut value: u32) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(digit) = digits.get_mut(start) {
            *digit = b'0' + (value % 10) as u8;
        }
        value /= 10;
        if value == 0 || start == 0 {
            break;
        }
    }
    text(digits.get(start..).unwrap_or(&[]));
}

pub fn hex(value: u32) {
    let mut digits = *b"0x00000000";
    for (idx, digit) in digits.iter_mut().skip(2).enumerate() {
        let nibble = (value >> (28 - 4 * idx)) & 0xf;
        *digit = b"0123456789abcdef"[nibble as usize & 0xf];
    }
    text(&digits);
}
