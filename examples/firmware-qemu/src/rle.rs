//! The embedded images, zero-run-length coded (most MNIST pixels are 0): a token byte
//! `t < 128` is followed by `t + 1` literal pixels; `t >= 128` stands for `t - 127` zeros.
//! `cargo xtask firmware` writes the same coding.

pub struct Decoder<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    /// Fills `pixels` with the next image; false if the stream is too short or overruns it.
    pub fn next_image(&mut self, pixels: &mut [u8]) -> bool {
        let mut filled = 0;
        while filled < pixels.len() {
            let Some(&token) = self.bytes.get(self.position) else {
                return false;
            };
            self.position += 1;
            if token >= 128 {
                let run = usize::from(token - 127);
                let Some(target) = pixels.get_mut(filled..filled + run) else {
                    return false;
                };
                target.fill(0);
                filled += run;
            } else {
                let run = usize::from(token) + 1;
                let (Some(target), Some(source)) = (
                    pixels.get_mut(filled..filled + run),
                    self.bytes.get(self.position..self.position + run),
                ) else {
                    return false;
                };
                target.copy_from_slice(source);
                filled += run;
                self.position += run;
            }
        }
        true
    }
}
