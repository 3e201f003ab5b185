//! Minimal writer and reader for NumPy `.npy` files (version 1.0, little-endian
//! f32, C order). The Python oracle in CI reads the trainer's reference outputs
//! from these files with `numpy.load`.

use std::path::Path;

/// The magic, version, header length and padded header of a 2-D array.
fn header(descr: &str, rows: usize, cols: usize, data_len: usize) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // The magic, version and length take 10 bytes; the header pads to 64 and ends in a newline.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data_len);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// Encodes a 2-D f32 array.
pub fn encode_f32(rows: usize, cols: usize, values: &[f32]) -> Vec<u8> {
    assert_eq!(
        rows * cols,
        values.len(),
        "npy shape does not match the data"
    );
    let mut out = header("<f4", rows, cols, values.len() * 4);
    for value in values {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// Encodes a 2-D i8 array (int8 logits of quantized models).
pub fn encode_i8(rows: usize, cols: usize, values: &[i8]) -> Vec<u8> {
    assert_eq!(
        rows * cols,
        values.len(),
        "npy shape does not match the data"
    );
    let mut out = header("|i1", rows, cols, values.len());
    out.extend(values.iter().map(|&v| v as u8));
    out
}

/// Encodes a 2-D i16 array (int16 logits of 16x8 models), little-endian.
pub fn encode_i16(rows: usize, cols: usize, values: &[i16]) -> Vec<u8> {
    assert_eq!(
        rows * cols,
        values.len(),
        "npy shape does not match the data"
    );
    let mut out = header("<i2", rows, cols, values.len() * 2);
    for value in values {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// Writes a 2-D i16 array atomically.
pub fn write_i16(path: &Path, rows: usize, cols: usize, values: &[i16]) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, &encode_i16(rows, cols, values))
}

/// Writes a 2-D i8 array atomically.
pub fn write_i8(path: &Path, rows: usize, cols: usize, values: &[i8]) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, &encode_i8(rows, cols, values))
}

/// Writes a 2-D f32 array atomically.
pub fn write_f32(path: &Path, rows: usize, cols: usize, values: &[f32]) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, &encode_f32(rows, cols, values))
}

/// Decodes what `encode_f32` wrote: (rows, cols, values).
pub fn decode_f32(bytes: &[u8]) -> Option<(usize, usize, Vec<f32>)> {
    if bytes.len() < 10 || &bytes[..8] != b"\x93NUMPY\x01\x00" {
        return None;
    }
    let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let header = std::str::from_utf8(bytes.get(10..10 + header_len)?).ok()?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return None;
    }
    let shape = header.split("'shape': (").nth(1)?.split(')').next()?;
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().ok())
        .collect::<Option<_>>()?;
    let [rows, cols] = dims[..] else { return None };
    let data = bytes.get(10 + header_len..)?;
    if data.len() != rows * cols * 4 {
        return None;
    }
    let values = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some((rows, cols, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_aligns_the_header() {
        let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 1.0).collect();
        let bytes = encode_f32(3, 4, &values);
        let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(decode_f32(&bytes), Some((3, 4, values)));
        assert_eq!(decode_f32(&bytes[..bytes.len() - 1]), None);
        let bytes = encode_i8(2, 2, &[-128, -1, 0, 127]);
        let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(&bytes[10 + header_len..], &[0x80, 0xff, 0x00, 0x7f]);
        assert!(String::from_utf8_lossy(&bytes).contains("'descr': '|i1'"));
    }
}
