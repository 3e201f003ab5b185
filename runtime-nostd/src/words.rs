//! Word loads from the blob. `Model` refuses a blob that does not start at a 4-byte-aligned
//! address ([`crate::Error::BlobAlignment`]), and every record of the format starts at a
//! multiple of 4 from its start, so each record's fields are whole aligned words: one load
//! each instead of four byte loads and the shifts that join them (the Cortex-M0 and RV32 cannot
//! load a word from an unaligned address, and the compiler cannot know the alignment).

#![allow(unsafe_code)]

/// `N` little-endian words at byte `at` of `bytes`, if they are inside it and at a
/// 4-byte-aligned address; `None` otherwise (never for a record of a loaded blob).
#[inline(always)]
pub(crate) fn aligned_words<const N: usize>(bytes: &[u8], at: usize) -> Option<[u32; N]> {
    let words = bytes.get(at..at.checked_add(N.checked_mul(4)?)?)?;
    let ptr = words.as_ptr();
    if ptr.addr() & 3 != 0 {
        return None;
    }
    // SAFETY: `4 * N` bytes inside the slice, at a 4-byte-aligned address; every bit pattern
    // is a valid `u32`, and `[u32; N]` has the alignment of `u32`.
    let words = unsafe { ptr.cast::<[u32; N]>().read() };
    Some(words.map(u32::from_le))
}

/// The same bytes as `u8` (a workspace of the arena's `i8` holding a kernel's `u8` data).
#[inline(always)]
pub(crate) fn as_u8(bytes: &[i8]) -> &[u8] {
    // SAFETY: `i8` and `u8` have the same size and alignment and every bit pattern is valid
    // for both; the result borrows `bytes` for its whole life.
    unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast::<u8>(), bytes.len()) }
}

#[cfg(test)]
mod tests {
    use super::aligned_words;

    /// Bytes at a 4-byte-aligned address.
    #[repr(align(4))]
    struct Aligned([u8; 12]);

    #[test]
    fn words_inside_and_aligned_only() {
        let backing = Aligned([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let bytes = &backing.0[..];
        assert_eq!(
            aligned_words::<2>(bytes, 0),
            Some([0x0403_0201, 0x0807_0605])
        );
        assert_eq!(aligned_words::<1>(bytes, 8), Some([0x0c0b_0a09]));
        // off a word boundary, past the end, or a range that overflows
        assert_eq!(aligned_words::<1>(bytes, 1), None);
        assert_eq!(aligned_words::<1>(bytes, 12), None);
        assert_eq!(aligned_words::<3>(bytes, 4), None);
        assert_eq!(aligned_words::<1>(bytes, usize::MAX - 1), None);
        assert_eq!(aligned_words::<1>(&bytes[1..], 3), Some([0x0807_0605]));
        assert_eq!(aligned_words::<1>(&bytes[1..], 0), None);
    }
}
