//! `th_printf` for the few formats the protocol uses (`%s`, `%d`, `%lu`, `%02x`, `%0.3f`),
//! written without `core::fmt`: no formatting machinery, no panic path.

use crate::board::serial_write;

pub fn text(bytes: &[u8]) {
    serial_write(bytes);
}

/// `%d` / `%lu` of a non-negative value.
pub fn decimal(mut value: u64) {
    let mut digits = [0u8; 20];
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

/// `%02x`.
pub fn hex2(byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let pair = [HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]];
    text(&pair);
}

/// `%0.3f` as C's printf does it: the exact binary value rounded to three decimals, ties to
/// even, and a minus sign whenever the sign bit is set ("-0.000" included).
pub fn fixed3(value: f32) {
    if value.is_nan() {
        return text(b"nan");
    }
    if value.is_sign_negative() {
        text(b"-");
    }
    if value.is_infinite() {
        return text(b"inf");
    }
    let (whole, thousandths) = round3(value.abs());
    decimal(whole);
    text(b".");
    let digits = [
        b'0' + (thousandths / 100) as u8,
        b'0' + (thousandths / 10 % 10) as u8,
        b'0' + (thousandths % 10) as u8,
    ];
    text(&digits);
}

/// `x` (finite, >= 0) in thousandths, rounded half to even: the product is exact in f64 (a
/// 24-bit significand times 1000 fits 53 bits), so only true ties round to even. Returns the
/// whole part and the thousandths. Values past 2^64 / 1000 saturate.
fn round3(x: f32) -> (u64, u32) {
    let scaled = f64::from(x) * 1000.0;
    let floor = scaled as u64;
    let fraction = scaled - floor as f64;
    let rounded = if fraction > 0.5 || (fraction == 0.5 && floor & 1 == 1) {
        floor.saturating_add(1)
    } else {
        floor
    };
    (rounded / 1000, (rounded % 1000) as u32)
}
