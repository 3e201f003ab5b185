//! The architecture as written in the model file and on the command line (`--layers`).
//!
//! Tokens (`docs/layer-graph.md`), separated by commas:
//!
//! | token | layer |
//! |---|---|
//! | `dense:64`, `dense:64:tanh` | [`LayerSpec::Dense`] |
//! | `conv3x3:16`, `conv10x4s2:64`, `conv5x5v:8`, `conv3x3s2x1:8` | [`LayerSpec::Conv2d`] (`s` stride, `v` valid padding, default same) |
//! | `conv1d5:16`, `conv1d5s2v:16` | [`LayerSpec::Conv2d`] with kernel `[1, K]` and stride `[1, S]` |
//! | `dw3x3`, `dw3x3s2:relu6` | [`LayerSpec::DepthwiseConv2d`] |
//! | `maxpool2`, `maxpool3s2`, `maxpool2x1` | [`LayerSpec::MaxPool2d`] (stride defaults to the kernel) |
//! | `avgpool2` | [`LayerSpec::AvgPool2d`] |
//! | `gap` | [`LayerSpec::GlobalAvgPool`] |
//! | `flatten` | [`LayerSpec::Flatten`] |
//! | `@4` | [`LayerSpec::Tap`]: the next layer reads value 4 (a branch) |
//! | `add@1`, `add@1:relu` | [`LayerSpec::Add`]: the previous value plus value 1 (a residual connection) |
//!
//! Value 0 is the input and value `k` the output of the `k`-th token, so `@N` and `add@N`
//! name a layer by its position in the list.
//!
//! `Dense`, `Conv2d` and `DepthwiseConv2d` take an optional activation suffix: `:relu`,
//! `:relu6`, `:tanh`, `:sigmoid`, `:identity`, `:leaky-relu` (slope 0.01, the `--leaky-alpha`
//! default) or `:leaky-relu=0.2`. Without one the layer takes the default activation.

use super::shape::Padding;
use super::Activation;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One layer of the architecture. `activation: None` is the default: `--activation` for a
/// hidden layer, the task's output activation for the last one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LayerSpec {
    Dense {
        n_outputs: usize,
        activation: Option<Activation>,
    },
    Conv2d {
        out_channels: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        activation: Option<Activation>,
    },
    DepthwiseConv2d {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        activation: Option<Activation>,
    },
    MaxPool2d {
        kernel: [usize; 2],
        stride: [usize; 2],
    },
    AvgPool2d {
        kernel: [usize; 2],
        stride: [usize; 2],
    },
    GlobalAvgPool,
    Flatten,
    /// Value `value` again (0 the input, `k` the output of layer `k`), for the next layer to
    /// read: the start of a branch, such as a residual block's projection shortcut.
    Tap {
        value: usize,
    },
    /// `activation(previous + value[from])`: a residual (skip) connection; both values have one
    /// shape.
    Add {
        from: usize,
        activation: Option<Activation>,
    },
}

/// The slope of `leaky-relu` without `=A`: the CLI's `--leaky-alpha` default.
pub const DEFAULT_LEAKY_ALPHA: f32 = 0.01;

impl LayerSpec {
    /// The canonical `--layers` token; [`parse_layers`] reads it back to the same spec.
    pub fn token(&self) -> String {
        let activation_suffix = |activation: &Option<Activation>| match activation {
            None => String::new(),
            Some(a) => format!(":{}", activation_token(*a)),
        };
        let valid = |padding: &Padding| if *padding == Padding::Valid { "v" } else { "" };
        match self {
            LayerSpec::Dense {
                n_outputs,
                activation,
            } => format!("dense:{n_outputs}{}", activation_suffix(activation)),
            LayerSpec::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                activation,
            } => {
                let geometry = if kernel[0] == 1 && kernel[1] != 1 && stride[0] == 1 {
                    let stride = if stride[1] == 1 {
                        String::new()
                    } else {
                        format!("s{}", stride[1])
                    };
                    format!("conv1d{}{stride}", kernel[1])
                } else {
                    format!(
                        "conv{}x{}{}",
                        kernel[0],
                        kernel[1],
                        stride_token(*stride, [1, 1])
                    )
                };
                format!(
                    "{geometry}{}:{out_channels}{}",
                    valid(padding),
                    activation_suffix(activation)
                )
            }
            LayerSpec::DepthwiseConv2d {
                kernel,
                stride,
                padding,
                activation,
            } => format!(
                "dw{}x{}{}{}{}",
                kernel[0],
                kernel[1],
                stride_token(*stride, [1, 1]),
                valid(padding),
                activation_suffix(activation)
            ),
            LayerSpec::MaxPool2d { kernel, stride } => {
                format!("maxpool{}", pool_geometry(*kernel, *stride))
            }
            LayerSpec::AvgPool2d { kernel, stride } => {
                format!("avgpool{}", pool_geometry(*kernel, *stride))
            }
            LayerSpec::GlobalAvgPool => "gap".to_owned(),
            LayerSpec::Flatten => "flatten".to_owned(),
            LayerSpec::Tap { value } => format!("@{value}"),
            LayerSpec::Add { from, activation } => {
                format!("add@{from}{}", activation_suffix(activation))
            }
        }
    }

    /// Whether the layer has weights and a bias (Dense, Conv2d, DepthwiseConv2d).
    pub fn is_trainable(&self) -> bool {
        matches!(
            self,
            LayerSpec::Dense { .. } | LayerSpec::Conv2d { .. } | LayerSpec::DepthwiseConv2d { .. }
        )
    }

    /// The layer's own activation, if it carries one and it is set.
    pub fn activation(&self) -> Option<Activation> {
        match self {
            LayerSpec::Dense { activation, .. }
            | LayerSpec::Conv2d { activation, .. }
            | LayerSpec::DepthwiseConv2d { activation, .. }
            | LayerSpec::Add { activation, .. } => *activation,
            _ => None,
        }
    }
}

impl fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.token())
    }
}

fn activation_token(activation: Activation) -> String {
    match activation {
        Activation::LeakyRelu { alpha } if alpha == DEFAULT_LEAKY_ALPHA => "leaky-relu".to_owned(),
        Activation::LeakyRelu { alpha } => format!("leaky-relu={alpha}"),
        other => other.name().to_owned(),
    }
}

fn stride_token(stride: [usize; 2], default: [usize; 2]) -> String {
    if stride == default {
        String::new()
    } else if stride[0] == stride[1] {
        format!("s{}", stride[0])
    } else {
        format!("s{}x{}", stride[0], stride[1])
    }
}

fn pool_geometry(kernel: [usize; 2], stride: [usize; 2]) -> String {
    let kernel_text = if kernel[0] == kernel[1] {
        kernel[0].to_string()
    } else {
        format!("{}x{}", kernel[0], kernel[1])
    };
    format!("{kernel_text}{}", stride_token(stride, kernel))
}

/// A `--layers` token that does not parse: its position (1 for the first token), its text and
/// what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpecError {
    pub position: usize,
    pub token: String,
    pub expected: String,
}

impl fmt::Display for LayerSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "layer {} (`{}`): expected {}",
            self.position, self.token, self.expected
        )
    }
}

impl std::error::Error for LayerSpecError {}

/// MLPerf Tiny's three convolutional reference models (mlcommons/tiny, benchmark/training) as
/// `--layers` lists without their output layer, each usable by name: `--layers resnet8`.
/// Batch normalization is folded into the convolutions, as the deployed models have it.
/// `(name, input [h, w, c], layers)`.
pub const MLPERF_TINY: [(&str, [usize; 3], &str); 3] = [
    // Image classification (CIFAR-10): three residual stages of 16, 32 and 64 filters; the
    // second and third start with a stride 2 and a 1x1 stride-2 projection shortcut.
    (
        "resnet8",
        [32, 32, 3],
        "conv3x3:16,conv3x3:16,conv3x3:16:identity,add@1:relu,\
         conv3x3s2:32,conv3x3:32:identity,@4,conv1x1s2:32:identity,add@6:relu,\
         conv3x3s2:64,conv3x3:64:identity,@9,conv1x1s2:64:identity,add@11:relu,gap",
    ),
    // Keyword spotting: 49 MFCC frames of 10 coefficients, a 10x4 stride-2 convolution, four
    // depthwise-separable blocks of 64.
    (
        "ds-cnn",
        [49, 10, 1],
        "conv10x4s2:64,dw3x3,conv1x1:64,dw3x3,conv1x1:64,dw3x3,conv1x1:64,dw3x3,conv1x1:64,gap",
    ),
    // Visual wake words: MobileNetV1 at width 0.25 on 96x96 RGB, 13 depthwise-separable blocks.
    (
        "mobilenet-v1-0.25",
        [96, 96, 3],
        "conv3x3s2:8,dw3x3,conv1x1:16,dw3x3s2,conv1x1:32,dw3x3,conv1x1:32,dw3x3s2,conv1x1:64,\
         dw3x3,conv1x1:64,dw3x3s2,conv1x1:128,dw3x3,conv1x1:128,dw3x3,conv1x1:128,dw3x3,\
         conv1x1:128,dw3x3,conv1x1:128,dw3x3,conv1x1:128,dw3x3s2,conv1x1:256,dw3x3,conv1x1:256,gap",
    ),
];

/// Parses a comma-separated `--layers` list, e.g. `conv3x3:16,maxpool2,dense:64,dense:10`, or
/// the name of one of [`MLPERF_TINY`]'s models.
pub fn parse_layers(text: &str) -> Result<Vec<LayerSpec>, LayerSpecError> {
    if let Some((_, _, layers)) = MLPERF_TINY.iter().find(|(name, ..)| *name == text.trim()) {
        return parse_layers(layers);
    }
    if text.trim().is_empty() {
        return Err(LayerSpecError {
            position: 1,
            token: String::new(),
            expected: "at least one layer, e.g. `conv3x3:16,maxpool2,dense:10`".to_owned(),
        });
    }
    text.split(',')
        .enumerate()
        .map(|(idx, token)| {
            let token = token.trim();
            parse_token(token).map_err(|expected| LayerSpecError {
                position: idx + 1,
                token: token.to_owned(),
                expected,
            })
        })
        .collect()
}

const LAYER_KINDS: &str = "a layer: `dense:N`, `convKxK:N`, `conv1dK:N`, `dwKxK`, `maxpoolK`, \
                           `avgpoolK`, `gap`, `flatten`, `@N` or `add@N`";
const ACTIVATIONS: &str =
    "an activation (`relu`, `relu6`, `tanh`, `sigmoid`, `identity`, `leaky-relu`, `leaky-relu=A`)";

/// One token; the error is what was expected.
fn parse_token(token: &str) -> Result<LayerSpec, String> {
    if token.is_empty() {
        return Err(format!("{LAYER_KINDS}, found an empty token"));
    }
    let parts: Vec<&str> = token.split(':').collect();
    let head = parts[0];
    let no_suffix = |name: &str| -> Result<(), String> {
        if parts.len() > 1 {
            Err(format!(
                "nothing after `{name}` (it takes no channel count or activation), found `:{}`",
                parts[1..].join(":")
            ))
        } else {
            Ok(())
        }
    };
    if let Some(rest) = head.strip_prefix('@') {
        let mut cursor = Cursor::new(rest);
        let value = cursor
            .count("a value number after `@` (0 the input, N the output of layer N), e.g. `@4`")?;
        cursor.end("the end of the token after the value number, e.g. `@4`")?;
        no_suffix(head)?;
        return Ok(LayerSpec::Tap { value });
    }
    if let Some(rest) = head.strip_prefix("add") {
        let mut cursor = Cursor::new(rest);
        if !cursor.eat('@') {
            return Err(format!(
                "`add@N`: the value to add after `@` (N the output of layer N), e.g. `add@1:relu`, found `{head}`"
            ));
        }
        let from = cursor.count("a value number after `add@`, e.g. `add@1:relu`")?;
        cursor.end("`:` and an activation after the value number, e.g. `add@1:relu`")?;
        let activation = optional_activation(&parts, 1)?;
        return Ok(LayerSpec::Add { from, activation });
    }
    if head == "dense" {
        let n_outputs = channel_count(&parts, "the number of outputs after `dense:`")?;
        let activation = optional_activation(&parts, 2)?;
        return Ok(LayerSpec::Dense {
            n_outputs,
            activation,
        });
    }
    if let Some(rest) = head.strip_prefix("conv1d") {
        let mut cursor = Cursor::new(rest);
        let k = cursor.positive("the kernel width after `conv1d`, e.g. `conv1d5:16`")?;
        let stride = if cursor.eat('s') {
            cursor.positive("a stride after `s`, e.g. `conv1d5s2:16`")?
        } else {
            1
        };
        let padding = cursor.padding();
        cursor.end("`s<stride>`, `v` or `:<channels>` after the kernel, e.g. `conv1d5s2v:16`")?;
        let out_channels = channel_count(
            &parts,
            &format!("the number of output channels after `{head}:`"),
        )?;
        let activation = optional_activation(&parts, 2)?;
        return Ok(LayerSpec::Conv2d {
            out_channels,
            kernel: [1, k],
            stride: [1, stride],
            padding,
            activation,
        });
    }
    if let Some(rest) = head.strip_prefix("conv") {
        let (kernel, stride, padding) = conv_geometry(rest, "conv", "conv3x3:16")?;
        let out_channels = channel_count(
            &parts,
            &format!("the number of output channels after `{head}:`"),
        )?;
        let activation = optional_activation(&parts, 2)?;
        return Ok(LayerSpec::Conv2d {
            out_channels,
            kernel,
            stride,
            padding,
            activation,
        });
    }
    if let Some(rest) = head.strip_prefix("dw") {
        let (kernel, stride, padding) = conv_geometry(rest, "dw", "dw3x3")?;
        let activation = optional_activation(&parts, 1)?;
        return Ok(LayerSpec::DepthwiseConv2d {
            kernel,
            stride,
            padding,
            activation,
        });
    }
    for (prefix, max) in [("maxpool", true), ("avgpool", false)] {
        if let Some(rest) = head.strip_prefix(prefix) {
            let mut cursor = Cursor::new(rest);
            let example = format!("`{prefix}2`, `{prefix}3s2` or `{prefix}2x1`");
            let kh = cursor.positive(&format!("the window size after `{prefix}`: {example}"))?;
            let kw = if cursor.eat('x') {
                cursor.positive(&format!("the window width after `x`: {example}"))?
            } else {
                kh
            };
            let kernel = [kh, kw];
            let stride = if cursor.eat('s') {
                cursor.stride()?
            } else {
                kernel
            };
            cursor.end(&format!(
                "`s<stride>` or the end of the token after the window size ({example}; pooling \
                 is always valid)"
            ))?;
            no_suffix(head)?;
            return Ok(if max {
                LayerSpec::MaxPool2d { kernel, stride }
            } else {
                LayerSpec::AvgPool2d { kernel, stride }
            });
        }
    }
    match head {
        "gap" => {
            no_suffix(head)?;
            Ok(LayerSpec::GlobalAvgPool)
        }
        "flatten" => {
            no_suffix(head)?;
            Ok(LayerSpec::Flatten)
        }
        _ => Err(format!("{LAYER_KINDS}, found `{head}`")),
    }
}

/// `KHxKW[sS|sSHxSW][v]` after `conv` or `dw`.
fn conv_geometry(
    rest: &str,
    prefix: &str,
    example: &str,
) -> Result<([usize; 2], [usize; 2], Padding), String> {
    let mut cursor = Cursor::new(rest);
    let kernel_hint = format!(
        "a kernel `KxK` or `KHxKW` after `{prefix}`, e.g. `{example}`, `{prefix}5x5v`, `{prefix}3x3s2`"
    );
    let kh = cursor.positive(&kernel_hint)?;
    if !cursor.eat('x') {
        return Err(kernel_hint);
    }
    let kw = cursor.positive(&kernel_hint)?;
    let stride = if cursor.eat('s') {
        cursor.stride()?
    } else {
        [1, 1]
    };
    let padding = cursor.padding();
    cursor.end(&format!(
        "`s<stride>`, `v` or `:` after the kernel of `{prefix}{kh}x{kw}`, e.g. `{prefix}3x3s2v`"
    ))?;
    Ok(([kh, kw], stride, padding))
}

/// `parts[1]` as a positive count.
fn channel_count(parts: &[&str], what: &str) -> Result<usize, String> {
    let Some(text) = parts.get(1) else {
        return Err(format!("{what}, e.g. `{}:16`", parts[0]));
    };
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{what} (a positive integer), found `{text}`")),
    }
}

/// `parts[index]` as an activation, if present; nothing may follow it.
fn optional_activation(parts: &[&str], index: usize) -> Result<Option<Activation>, String> {
    let Some(text) = parts.get(index) else {
        return Ok(None);
    };
    let activation = match *text {
        "relu" => Activation::Relu,
        "relu6" => Activation::Relu6,
        "tanh" => Activation::Tanh,
        "sigmoid" => Activation::Sigmoid,
        "identity" => Activation::Identity,
        "leaky-relu" => Activation::LeakyRelu {
            alpha: DEFAULT_LEAKY_ALPHA,
        },
        other => match other.strip_prefix("leaky-relu=").map(str::parse::<f32>) {
            Some(Ok(alpha)) if alpha.is_finite() => Activation::LeakyRelu { alpha },
            _ => return Err(format!("{ACTIVATIONS}, found `{other}`")),
        },
    };
    if parts.len() > index + 1 {
        return Err(format!(
            "the end of the token after the activation `{text}`, found `:{}`",
            parts[index + 1..].join(":")
        ));
    }
    Ok(Some(activation))
}

/// A tiny left-to-right reader of the geometry part of a token.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn new(rest: &'a str) -> Self {
        Self { rest }
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// A positive decimal integer; `expected` when there is none or it is 0.
    fn positive(&mut self, expected: &str) -> Result<usize, String> {
        let digits = self.rest.bytes().take_while(u8::is_ascii_digit).count();
        let found = |rest: &str| {
            if rest.is_empty() {
                "nothing".to_owned()
            } else {
                format!("`{rest}`")
            }
        };
        if digits == 0 {
            return Err(format!("{expected}, found {}", found(self.rest)));
        }
        match self.rest[..digits].parse::<usize>() {
            Ok(n) if n > 0 => {
                self.rest = &self.rest[digits..];
                Ok(n)
            }
            _ => Err(format!(
                "{expected} (a positive integer), found `{}`",
                &self.rest[..digits]
            )),
        }
    }

    /// A decimal integer, 0 allowed; `expected` when there is none.
    fn count(&mut self, expected: &str) -> Result<usize, String> {
        let digits = self.rest.bytes().take_while(u8::is_ascii_digit).count();
        match self.rest[..digits].parse::<usize>() {
            Ok(n) if digits > 0 => {
                self.rest = &self.rest[digits..];
                Ok(n)
            }
            _ => Err(format!(
                "{expected}, found `{}`",
                if self.rest.is_empty() {
                    "nothing"
                } else {
                    self.rest
                }
            )),
        }
    }

    /// `S` or `SHxSW` after an `s`.
    fn stride(&mut self) -> Result<[usize; 2], String> {
        let hint = "a stride `S` or `SHxSW` after `s`, e.g. `s2`";
        let sh = self.positive(hint)?;
        let sw = if self.eat('x') {
            self.positive(hint)?
        } else {
            sh
        };
        Ok([sh, sw])
    }

    fn padding(&mut self) -> Padding {
        if self.eat('v') {
            Padding::Valid
        } else {
            Padding::Same
        }
    }

    fn end(&self, expected: &str) -> Result<(), String> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(format!("{expected}, found `{}`", self.rest))
        }
    }
}
