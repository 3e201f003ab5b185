//! Imports an ONNX multilayer perceptron or convolutional network written by
//! another framework (PyTorch, scikit-learn through skl2onnx, TensorFlow
//! through tf2onnx).
//!
//! [`reader`] parses the file with the crate's own protobuf types (initializers
//! from `raw_data` or the typed fields, external data files, opsets 7 to 21);
//! [`fold`] walks the graph from its input and folds what it finds into
//! layers: normalisation (Sub, Div, Mul, Add by constants, Flatten, Reshape),
//! Conv (valid or same pads, group 1 or depthwise; the attributes are checked
//! against the layer graph of `docs/layer-graph.md`), MaxPool, AveragePool,
//! GlobalAveragePool (or ReduceMean over the spatial axes), Gemm or MatMul +
//! Add, BatchNormalization (folded into the Conv or Gemm before it), the
//! activations, skip connections (a graph that branches and joins in a
//! residual Add of two data tensors, as PyTorch and tf2onnx write ResNets,
//! becomes the layer graph's `Tap` and `Add`), channels-last Transposes (Keras's
//! NHWC input, recorded as [`InputLayout::ChannelsLast`]; a Transpose to NHWC before the
//! head's Flatten or spatial mean), and the output
//! head (Softmax, LogSoftmax, ArgMax, and scikit-learn's ZipMap /
//! ArrayFeatureExtractor / Cast tail, dropped with a notice). The result is an
//! [`ImportedMlp`], a neutral description that the trainer turns into its own
//! model file; this crate does not depend on the trainer.
//!
//! Anything else is an [`ImportError`] naming the node, its operator and the
//! reason: an unsupported op, non-constant weights, or a shape mismatch.

pub mod error;
pub mod fold;
pub mod reader;
mod spatial;

use std::path::Path;

pub use error::{ImportError, ImportErrorKind, NodeReason};
pub use reader::{LoadedModel, MAX_IMPORT_OPSET, MIN_IMPORT_OPSET};

use crate::cnn::{CnnLayer, CnnModel};
use crate::mlp::{DenseLayer, InputNormalization};
use crate::proto::{ModelProto, ValueInfoProto};

/// What one graph output of the imported file holds, in terms of the MLP.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputKind {
    /// The last layer's output (after its activation).
    Logits,
    /// Softmax of the logits over the class axis.
    Probabilities,
    /// LogSoftmax of the logits.
    LogProbabilities,
    /// The index of the largest logit, mapped through `classes` when the
    /// graph maps it (scikit-learn's ArrayFeatureExtractor); `None` means the
    /// label is the index itself.
    Label { classes: Option<Vec<i64>> },
    /// An output the importer cannot reproduce (string class labels); it is
    /// dropped with a notice.
    Dropped,
}

/// One graph output of the imported file.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedOutput {
    pub name: String,
    pub kind: OutputKind,
    /// The tensor of [`engine_model`]'s graph that holds this output's values:
    /// the output itself, or, behind a dropped node, its source (the Softmax
    /// before a ZipMap; the class index before an ArrayFeatureExtractor).
    /// `None` for a [`OutputKind::Dropped`] output.
    pub engine_tensor: Option<String>,
}

/// How one sample's features are ordered in the source file's input, against
/// the order the imported layers read them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputLayout {
    /// The input's own row-major order is the layers' order: a feature vector, an
    /// NCHW image (`[N, C, H, W]`, CHW per sample), an NCL signal, or an NHWC
    /// input that the graph reshapes without moving a value (one channel).
    #[default]
    Direct,
    /// Channels last: the input is `[N, H, W, C]` (or `[N, L, C]`), as Keras and
    /// TensorFlow feed images, and the graph's first node transposes it to NCHW
    /// (NCL). A row of the user's data is HWC, pixel by pixel; the layer graph
    /// reads CHW, so each row must be reordered by
    /// [`ImportedInput::layer_order`] before the imported model sees it.
    ChannelsLast,
}

/// The graph input, as declared.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedInput {
    pub name: String,
    /// The dimensions after the batch dimension, e.g. `[1, 8, 8]` for images
    /// that a Flatten turns into 64 features, or `[32, 32, 3]` for a Keras image.
    pub dims: Vec<usize>,
    /// The batch dimension when the file fixes it (some exporters write 1).
    pub fixed_batch: Option<usize>,
    /// How [`ImportedInput::dims`] order the features against the layers.
    pub layout: InputLayout,
}

impl ImportedInput {
    /// For each feature the imported layers read (in their order: CHW for a layer
    /// graph, `CnnModel::input_shape`), its index in a row of the source file's
    /// input (row-major over [`ImportedInput::dims`]). The identity unless the
    /// layout is [`InputLayout::ChannelsLast`]: then feature `(c, h, w)` of the
    /// layer graph is `(h, w, c)` of the row.
    pub fn layer_order(&self) -> Vec<usize> {
        let n: usize = self.dims.iter().product();
        match (self.layout, self.dims.as_slice()) {
            (InputLayout::ChannelsLast, [h, w, c]) => (0..n)
                .map(|j| {
                    let (ch, y, x) = (j / (h * w), j / w % h, j % w);
                    (y * w + x) * c + ch
                })
                .collect(),
            (InputLayout::ChannelsLast, [l, c]) => (0..n)
                .map(|j| {
                    let (ch, x) = (j / l, j % l);
                    x * c + ch
                })
                .collect(),
            _ => (0..n).collect(),
        }
    }

    /// Whether [`ImportedInput::layer_order`] moves any feature: the data's rows must
    /// then be reordered before the imported layers read them.
    pub fn reorders(&self) -> bool {
        self.layer_order().iter().enumerate().any(|(j, &i)| i != j)
    }

    /// One row of the source file's input (row-major over
    /// [`ImportedInput::dims`]) in the order the imported layers read it.
    ///
    /// # Panics
    /// If `row` does not hold one sample's features.
    pub fn to_layer_order(&self, row: &[f32]) -> Vec<f32> {
        let order = self.layer_order();
        assert_eq!(row.len(), order.len(), "one sample's features");
        order.iter().map(|&i| row[i]).collect()
    }
}

/// How [`import_file_with`] treats what its caller must handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportOptions {
    /// Accept a channels-last input of more than one channel ([`InputLayout::ChannelsLast`]
    /// whose [`ImportedInput::reorders`] is true): the caller promises to feed the imported
    /// model each row through [`ImportedInput::to_layer_order`] (and the source file the row
    /// as it is). Off, such a file is refused at its Transpose with a message saying so,
    /// so a caller that does not reorder never reads pixels' channels from the wrong place.
    pub reorder_channels_last: bool,
}

/// An MLP read from another framework's ONNX file, in neutral form.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedMlp {
    pub input: ImportedInput,
    /// The feature count the first dense layer takes (the product of
    /// `input.dims`).
    pub n_inputs: usize,
    /// The input affine map found before the first dense layer.
    pub normalization: InputNormalization,
    /// Dense layers with their activations; BatchNormalization and constant
    /// affine maps between layers are folded in. Empty when the graph is a
    /// convolutional network: [`ImportedMlp::cnn`] holds its layers.
    pub layers: Vec<DenseLayer>,
    /// The layer graph when the file is a convolutional network (Conv,
    /// MaxPool, AveragePool, GlobalAveragePool, residual Adds, then Flatten
    /// and dense layers): the input shape `[c, h, w]` and every layer, with
    /// BatchNormalization folded into the convolution before it and
    /// `Tap` / `Add` for skip connections. `None` for
    /// a chain of dense layers over a feature vector.
    pub cnn: Option<CnnModel>,
    /// Every graph output, in the file's order.
    pub outputs: Vec<ImportedOutput>,
    /// One line per thing dropped or changed that a user should know about.
    pub notices: Vec<String>,
    /// The default-domain opset of the file.
    pub opset: i64,
    /// `producer_name producer_version` of the file.
    pub producer: String,
    /// Indices (in `graph.node`) of the nodes dropped from the engine model.
    pub dropped_nodes: Vec<usize>,
}

impl ImportedMlp {
    /// The width of the last layer.
    pub fn n_outputs(&self) -> usize {
        match &self.cnn {
            Some(cnn) => cnn_output_len(cnn),
            None => self.layers.last().map_or(0, |l| l.n_outputs),
        }
    }
}

/// The number of values a layer graph's last layer gives.
fn cnn_output_len(cnn: &CnnModel) -> usize {
    let out = |input: usize, k: usize, s: usize, pads: usize| {
        (input + pads).saturating_sub(k) / s.max(1) + 1
    };
    // Every value's `[c, h, w]`: value 0 is the input, layer k writes value k + 1.
    let mut values = vec![cnn.input_shape];
    for layer in &cnn.layers {
        let [mut c, mut h, mut w] = values[values.len() - 1];
        match layer {
            CnnLayer::Dense(d) => (c, h, w) = (d.n_outputs, 1, 1),
            CnnLayer::Conv2d {
                out_channels: n,
                kernel,
                stride,
                pads,
                ..
            }
            | CnnLayer::DepthwiseConv2d {
                channels: n,
                kernel,
                stride,
                pads,
                ..
            } => {
                (c, h, w) = (
                    *n,
                    out(h, kernel[0], stride[0], pads[0] + pads[2]),
                    out(w, kernel[1], stride[1], pads[1] + pads[3]),
                );
            }
            CnnLayer::MaxPool2d { kernel, stride } | CnnLayer::AvgPool2d { kernel, stride } => {
                (h, w) = (
                    out(h, kernel[0], stride[0], 0),
                    out(w, kernel[1], stride[1], 0),
                );
            }
            CnnLayer::GlobalAvgPool => (h, w) = (1, 1),
            CnnLayer::Flatten => (c, h, w) = (c * h * w, 1, 1),
            CnnLayer::Tap { value } => [c, h, w] = values.get(*value).copied().unwrap_or([0; 3]),
            CnnLayer::Add { .. } => {}
        }
        values.push([c, h, w]);
    }
    values[values.len() - 1].iter().product()
}

/// Reads the ONNX file at `path` and folds it into an MLP, with the default
/// [`ImportOptions`]: a channels-last input of several channels is refused.
pub fn import_file(path: &Path) -> Result<(ImportedMlp, LoadedModel), ImportError> {
    import_file_with(path, &ImportOptions::default())
}

/// Reads the ONNX file at `path` and folds it into an MLP.
pub fn import_file_with(
    path: &Path,
    options: &ImportOptions,
) -> Result<(ImportedMlp, LoadedModel), ImportError> {
    let loaded = reader::read_model(path)?;
    let mlp = fold::fold_with(&loaded, options).map_err(|kind| ImportError {
        path: path.to_owned(),
        kind,
    })?;
    Ok((mlp, loaded))
}

/// The imported graph as other ONNX engines can run it: the nodes the
/// importer dropped (scikit-learn's ZipMap and ArrayFeatureExtractor tail and
/// what follows them) removed, and the graph outputs replaced by
/// [`engine_outputs`]. External data is already inlined by the reader, so the
/// model stands alone. Every other node is the file's own, unchanged.
pub fn engine_model(loaded: &LoadedModel, mlp: &ImportedMlp) -> ModelProto {
    let mut proto = loaded.proto.clone();
    if let Some(graph) = proto.graph.as_mut() {
        let dropped: std::collections::HashSet<usize> = mlp.dropped_nodes.iter().copied().collect();
        graph.node = std::mem::take(&mut graph.node)
            .into_iter()
            .enumerate()
            .filter(|(index, _)| !dropped.contains(index))
            .map(|(_, node)| node)
            .collect();
        let declared: Vec<ValueInfoProto> = graph
            .output
            .iter()
            .chain(&graph.value_info)
            .cloned()
            .collect();
        graph.output = engine_outputs(mlp)
            .into_iter()
            .map(|name| {
                declared
                    .iter()
                    .find(|v| v.name.as_deref() == Some(name.as_str()))
                    .cloned()
                    .unwrap_or(ValueInfoProto {
                        name: Some(name),
                        ..ValueInfoProto::default()
                    })
            })
            .collect();
    }
    proto
}

/// The outputs of [`engine_model`], in order: each output's engine tensor, once.
pub fn engine_outputs(mlp: &ImportedMlp) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for tensor in mlp.outputs.iter().filter_map(|o| o.engine_tensor.clone()) {
        if !names.contains(&tensor) {
            names.push(tensor);
        }
    }
    names
}
