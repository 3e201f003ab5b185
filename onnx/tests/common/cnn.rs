//! The geometry of `docs/layer-graph.md` for the CNN tests, written once for
//! the float and the int8 reference computations: which input values and
//! weights each output of a convolution or a valid pool reads, in CHW order.
//! Also a seeded generator.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

/// xorshift64*: a fixed stream per seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[-amplitude, amplitude)`.
    pub fn uniform(&mut self, amplitude: f32) -> f32 {
        (self.unit() * 2.0 - 1.0) * amplitude
    }

    pub fn values(&mut self, n: usize, amplitude: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(amplitude)).collect()
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

/// The ONNX input shape of `n` samples: `[n, c, h, w]`, or `[n, c, w]` for
/// a Conv1D network.
pub fn batch_shape(n: usize, [c, h, w]: [usize; 3], spatial_rank: usize) -> Vec<usize> {
    if spatial_rank == 1 {
        vec![n, c, w]
    } else {
        vec![n, c, h, w]
    }
}

/// `[channels, (h + pt + pb - kh) / sh + 1, (w + pl + pr - kw) / sw + 1]`.
pub fn window_output(
    [_, h, w]: [usize; 3],
    channels: usize,
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    [top, left, bottom, right]: [usize; 4],
) -> [usize; 3] {
    [
        channels,
        (h + top + bottom - kh) / sh + 1,
        (w + left + right - kw) / sw + 1,
    ]
}

/// One output of a convolution: its output channel and the
/// `(input index, weight index)` pairs of its taps.
pub type ConvOutput = (usize, Vec<(usize, usize)>);

/// A convolution with `groups` groups (1, or the channel count for a
/// depthwise one) on a `[c, h, w]` value: its output shape and, for every
/// output in CHW order, its channel and the `(input index, weight index)`
/// pairs of the taps inside the input (a padded tap reads nothing). Weights
/// are `[out][c / groups][kh][kw]`.
pub fn conv_taps(
    shape: [usize; 3],
    out_channels: usize,
    groups: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    pads: [usize; 4],
) -> ([usize; 3], Vec<ConvOutput>) {
    let [c, h, w] = shape;
    let [kh, kw] = kernel;
    let out = window_output(shape, out_channels, kernel, stride, pads);
    let per_group = c / groups;
    let mut outputs = Vec::new();
    for o in 0..out_channels {
        let group = o / (out_channels / groups);
        for oy in 0..out[1] {
            for ox in 0..out[2] {
                let mut taps = Vec::new();
                for ci in 0..per_group {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let (iy, ix) = (oy * stride[0] + ky, ox * stride[1] + kx);
                            if iy < pads[0]
                                || ix < pads[1]
                                || iy - pads[0] >= h
                                || ix - pads[1] >= w
                            {
                                continue;
                            }
                            let channel = group * per_group + ci;
                            let input = (channel * h + iy - pads[0]) * w + ix - pads[1];
                            taps.push((input, ((o * per_group + ci) * kh + ky) * kw + kx));
                        }
                    }
                }
                outputs.push((o, taps));
            }
        }
    }
    (out, outputs)
}

/// A valid pool on a `[c, h, w]` value: its output shape and the input
/// indices of every window, in CHW output order.
pub fn pool_windows(
    shape: [usize; 3],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> ([usize; 3], Vec<Vec<usize>>) {
    let [c, h, w] = shape;
    let out = window_output(shape, c, kernel, stride, [0; 4]);
    let mut windows = Vec::new();
    for ch in 0..c {
        for oy in 0..out[1] {
            for ox in 0..out[2] {
                let taps = (0..kernel[0]).flat_map(|ky| (0..kernel[1]).map(move |kx| (ky, kx)));
                let window = taps
                    .map(|(ky, kx)| (ch * h + oy * stride[0] + ky) * w + ox * stride[1] + kx)
                    .collect();
                windows.push(window);
            }
        }
    }
    (out, windows)
}
