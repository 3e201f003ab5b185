//! A float evaluator for ONNX graphs made of the operators an MLP uses.
//!
//! It runs a [`ModelProto`](crate::proto::ModelProto) node by node on
//! row-major [`Tensor`]s, following the ONNX operator definitions (attributes,
//! defaults, numpy broadcasting, the opset-dependent meaning of Softmax's
//! axis). It backs the importer's constant folding and the ONNX conformance
//! tests, and it refuses anything it does not implement with an
//! [`EvalError`] that names the node, rather than guessing.
//!
//! Operators: Identity, Dropout (inference), Cast, Constant, Flatten, Reshape,
//! Transpose, Add, Sub, Mul, Div, MatMul, Gemm, Relu, LeakyRelu, Sigmoid,
//! Tanh, Clip, Softmax, LogSoftmax, BatchNormalization (inference) and ArgMax.
//! Arithmetic is on FLOAT tensors; INT64 tensors carry shapes and indices.
//! Sums of products accumulate in f64 and round once.

use std::collections::HashMap;

use crate::proto::{attribute_proto::AttributeType, tensor_proto::DataType, NodeProto};

/// The most elements one computed tensor may have (4 Mi). The evaluator runs
/// MLP-sized graphs; a shape that asks for more (say a product of two large
/// dimensions of empty tensors) is refused instead of allocated.
pub const MAX_ELEMENTS: usize = 1 << 22;

/// The element count of `dims`, if it is at most [`MAX_ELEMENTS`].
pub fn checked_size(dims: &[usize]) -> Result<usize, String> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| format!("an output of shape {dims:?} has more than {MAX_ELEMENTS} elements"))
}

/// The highest tensor rank the evaluator accepts; index arithmetic is linear in it.
pub const MAX_RANK: usize = 32;

/// A tensor's elements, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U8(Vec<u8>),
    I8(Vec<i8>),
    Bool(Vec<bool>),
}

impl TensorData {
    /// The ONNX name of the element type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            TensorData::F32(_) => "FLOAT",
            TensorData::F64(_) => "DOUBLE",
            TensorData::I64(_) => "INT64",
            TensorData::I32(_) => "INT32",
            TensorData::U8(_) => "UINT8",
            TensorData::I8(_) => "INT8",
            TensorData::Bool(_) => "BOOL",
        }
    }

    fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }
}

/// A dense tensor: its dimensions and its elements.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub dims: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    /// A FLOAT tensor. Panics if `values` does not fill `dims` (a programming error).
    pub fn f32(dims: Vec<usize>, values: Vec<f32>) -> Self {
        assert_eq!(dims.iter().product::<usize>(), values.len(), "{dims:?}");
        Self {
            dims,
            data: TensorData::F32(values),
        }
    }

    /// An INT64 tensor. Panics if `values` does not fill `dims`.
    pub fn i64(dims: Vec<usize>, values: Vec<i64>) -> Self {
        assert_eq!(dims.iter().product::<usize>(), values.len(), "{dims:?}");
        Self {
            dims,
            data: TensorData::I64(values),
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The FLOAT elements, if this is a FLOAT tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The elements as i64, if this is an integer tensor.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        match &self.data {
            TensorData::I64(v) => Some(v.clone()),
            TensorData::I32(v) => Some(v.iter().map(|&x| i64::from(x)).collect()),
            TensorData::U8(v) => Some(v.iter().map(|&x| i64::from(x)).collect()),
            TensorData::I8(v) => Some(v.iter().map(|&x| i64::from(x)).collect()),
            _ => None,
        }
    }

    /// The elements as f64, for FLOAT and DOUBLE tensors.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        match &self.data {
            TensorData::F32(v) => Some(v.iter().map(|&x| f64::from(x)).collect()),
            TensorData::F64(v) => Some(v.clone()),
            _ => None,
        }
    }
}

/// Why a node could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("node `{node}` ({op_type}): {detail}")]
pub struct EvalError {
    /// The node's name, or `#index` when it has none.
    pub node: String,
    pub op_type: String,
    pub detail: String,
}

/// The name a node goes by in messages: its name, or its position.
pub fn node_label(node: &NodeProto, index: usize) -> String {
    match node.name.as_deref() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => format!("#{index}"),
    }
}

/// Whether the evaluator implements `op_type` in `domain` (`""` or `ai.onnx`).
pub fn is_supported(domain: &str, op_type: &str) -> bool {
    (domain.is_empty() || domain == "ai.onnx") && SUPPORTED_OPS.contains(&op_type)
}

/// The operators of the default domain the evaluator runs.
pub const SUPPORTED_OPS: &[&str] = &[
    "Identity",
    "Dropout",
    "Cast",
    "Constant",
    "Flatten",
    "Reshape",
    "Transpose",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "MatMul",
    "Gemm",
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Clip",
    "Softmax",
    "LogSoftmax",
    "BatchNormalization",
    "ArgMax",
];

/// An attribute of a node, looked up by name.
fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a crate::proto::AttributeProto> {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
}

/// The context one node is evaluated in.
struct NodeCtx<'a> {
    node: &'a NodeProto,
    label: String,
    opset: i64,
}

impl NodeCtx<'_> {
    fn op(&self) -> &str {
        self.node.op_type.as_deref().unwrap_or("")
    }

    fn fail(&self, detail: impl Into<String>) -> EvalError {
        EvalError {
            node: self.label.clone(),
            op_type: self.op().to_owned(),
            detail: detail.into(),
        }
    }

    fn int(&self, name: &str, default: i64) -> Result<i64, EvalError> {
        match attribute(self.node, name) {
            None => Ok(default),
            Some(a) if a.r#type == Some(AttributeType::Int as i32) || a.i.is_some() => {
                Ok(a.i.unwrap_or(0))
            }
            Some(_) => Err(self.fail(format!("attribute `{name}` must be an int"))),
        }
    }

    fn float(&self, name: &str, default: f32) -> Result<f32, EvalError> {
        match attribute(self.node, name) {
            None => Ok(default),
            Some(a) if a.r#type == Some(AttributeType::Float as i32) || a.f.is_some() => {
                Ok(a.f.unwrap_or(0.0))
            }
            Some(_) => Err(self.fail(format!("attribute `{name}` must be a float"))),
        }
    }

    fn ints(&self, name: &str) -> Option<Vec<i64>> {
        attribute(self.node, name).map(|a| a.ints.clone())
    }

    /// Refuses attributes the evaluator does not know, so nothing is silently ignored.
    fn known_attributes(&self, known: &[&str]) -> Result<(), EvalError> {
        for a in &self.node.attribute {
            let name = a.name.as_deref().unwrap_or("");
            if !known.contains(&name) {
                return Err(self.fail(format!("attribute `{name}` is not supported")));
            }
        }
        Ok(())
    }

    fn floats<'t>(&self, tensor: &'t Tensor, what: &str) -> Result<&'t [f32], EvalError> {
        tensor.as_f32().ok_or_else(|| {
            self.fail(format!(
                "{what} is {}, only FLOAT is supported",
                tensor.data.type_name()
            ))
        })
    }

    fn axis(&self, axis: i64, rank: usize) -> Result<usize, EvalError> {
        let rank_i = rank as i64;
        let resolved = if axis < 0 { axis + rank_i } else { axis };
        if (0..rank_i).contains(&resolved) {
            Ok(resolved as usize)
        } else {
            Err(self.fail(format!("axis {axis} is out of range for rank {rank}")))
        }
    }
}

/// Evaluates one node on its inputs (`None` for an omitted optional input) and
/// returns its outputs in order. `opset` is the default domain's version.
pub fn eval_node(
    node: &NodeProto,
    index: usize,
    opset: i64,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, EvalError> {
    let ctx = NodeCtx {
        node,
        label: node_label(node, index),
        opset,
    };
    let domain = node.domain.as_deref().unwrap_or("");
    if !is_supported(domain, ctx.op()) {
        let op = if domain.is_empty() {
            ctx.op().to_owned()
        } else {
            format!("{domain}.{}", ctx.op())
        };
        return Err(ctx.fail(format!("operator {op} is not supported")));
    }
    if let Some(t) = inputs.iter().flatten().find(|t| t.dims.len() > MAX_RANK) {
        return Err(ctx.fail(format!(
            "an input has rank {}; the evaluator accepts up to {MAX_RANK}",
            t.dims.len()
        )));
    }
    let input = |i: usize| -> Result<&Tensor, EvalError> {
        inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| ctx.fail(format!("input {i} is missing")))
    };
    let one = |t: Tensor| Ok(vec![t]);
    match ctx.op() {
        "Identity" => {
            ctx.known_attributes(&[])?;
            one(input(0)?.clone())
        }
        "Dropout" => {
            ctx.known_attributes(&["seed", "ratio", "is_test"])?;
            if node.output.len() > 1 && !node.output[1].is_empty() {
                return Err(ctx.fail("the mask output is not supported"));
            }
            if let Some(training) = inputs.get(2).copied().flatten() {
                if training.to_i64().is_some_and(|v| v.iter().any(|&b| b != 0))
                    || matches!(&training.data, TensorData::Bool(v) if v.iter().any(|&b| b))
                {
                    return Err(ctx.fail("training_mode is true; only inference is supported"));
                }
            }
            one(input(0)?.clone())
        }
        "Cast" => {
            ctx.known_attributes(&["to", "saturate", "round_mode"])?;
            cast(&ctx, input(0)?, ctx.int("to", 0)?).map(|t| vec![t])
        }
        "Constant" => constant(&ctx).map(|t| vec![t]),
        "Flatten" => {
            ctx.known_attributes(&["axis"])?;
            let x = input(0)?;
            let rank = x.dims.len();
            let axis_attr = ctx.int("axis", 1)?;
            let axis = if axis_attr == rank as i64 {
                rank
            } else {
                ctx.axis(axis_attr, rank)?
            };
            let outer: usize = x.dims[..axis].iter().product();
            let inner: usize = x.dims[axis..].iter().product();
            one(Tensor {
                dims: vec![outer, inner],
                data: x.data.clone(),
            })
        }
        "Reshape" => {
            ctx.known_attributes(&["allowzero"])?;
            let x = input(0)?;
            let shape = input(1)?
                .to_i64()
                .ok_or_else(|| ctx.fail("the shape input must be INT64"))?;
            let dims = reshape_dims(&x.dims, &shape, ctx.int("allowzero", 0)? != 0)
                .map_err(|d| ctx.fail(d))?;
            one(Tensor {
                dims,
                data: x.data.clone(),
            })
        }
        "Transpose" => {
            ctx.known_attributes(&["perm"])?;
            let x = input(0)?;
            let rank = x.dims.len();
            let perm: Vec<usize> = match ctx.ints("perm") {
                Some(p) => p
                    .iter()
                    .map(|&a| ctx.axis(a, rank))
                    .collect::<Result<_, _>>()?,
                None => (0..rank).rev().collect(),
            };
            let mut seen = vec![false; rank];
            for &p in &perm {
                if seen[p] {
                    return Err(ctx.fail(format!("perm {perm:?} is not a permutation")));
                }
                seen[p] = true;
            }
            if perm.len() != rank {
                return Err(ctx.fail(format!("perm {perm:?} does not match rank {rank}")));
            }
            one(transpose(x, &perm))
        }
        "Add" | "Sub" | "Mul" | "Div" => {
            ctx.known_attributes(&[])?;
            let (a, b) = (input(0)?, input(1)?);
            let f: fn(f32, f32) -> f32 = match ctx.op() {
                "Add" => |x, y| x + y,
                "Sub" => |x, y| x - y,
                "Mul" => |x, y| x * y,
                _ => |x, y| x / y,
            };
            let (av, bv) = (ctx.floats(a, "input A")?, ctx.floats(b, "input B")?);
            broadcast_binary(&a.dims, av, &b.dims, bv, f)
                .map(|t| vec![t])
                .map_err(|d| ctx.fail(d))
        }
        "MatMul" => {
            ctx.known_attributes(&[])?;
            let (a, b) = (input(0)?, input(1)?);
            matmul(
                &a.dims,
                ctx.floats(a, "input A")?,
                &b.dims,
                ctx.floats(b, "input B")?,
            )
            .map(|t| vec![t])
            .map_err(|d| ctx.fail(d))
        }
        "Gemm" => {
            ctx.known_attributes(&["alpha", "beta", "transA", "transB"])?;
            gemm(&ctx, input(0)?, input(1)?, inputs.get(2).copied().flatten()).map(|t| vec![t])
        }
        "Relu" | "Sigmoid" | "Tanh" | "LeakyRelu" => {
            let alpha = if ctx.op() == "LeakyRelu" {
                ctx.known_attributes(&["alpha"])?;
                ctx.float("alpha", 0.01)?
            } else {
                ctx.known_attributes(&[])?;
                0.0
            };
            let x = input(0)?;
            let values = ctx.floats(x, "input X")?;
            let f = |v: f32| -> f32 {
                match ctx.op() {
                    "Relu" => v.max(0.0),
                    "LeakyRelu" => {
                        if v >= 0.0 {
                            v
                        } else {
                            alpha * v
                        }
                    }
                    // Computed in f64 and rounded once, as numpy's float32 reference nearly is.
                    "Sigmoid" => (1.0 / (1.0 + (-f64::from(v)).exp())) as f32,
                    _ => f64::from(v).tanh() as f32,
                }
            };
            one(Tensor::f32(
                x.dims.clone(),
                values.iter().map(|&v| f(v)).collect(),
            ))
        }
        "Clip" => {
            let x = input(0)?;
            let values = ctx.floats(x, "input X")?;
            let (lo, hi) = if ctx.opset < 11 {
                ctx.known_attributes(&["min", "max"])?;
                (ctx.float("min", f32::MIN)?, ctx.float("max", f32::MAX)?)
            } else {
                ctx.known_attributes(&[])?;
                let scalar = |i: usize, default: f32| -> Result<f32, EvalError> {
                    match inputs.get(i).copied().flatten() {
                        None => Ok(default),
                        Some(t) => match ctx.floats(t, "a Clip bound")? {
                            [v] => Ok(*v),
                            _ => Err(ctx.fail("Clip bounds must be scalars")),
                        },
                    }
                };
                (scalar(1, f32::MIN)?, scalar(2, f32::MAX)?)
            };
            // ONNX: min(max(x, lo), hi), so hi wins when lo > hi.
            one(Tensor::f32(
                x.dims.clone(),
                values.iter().map(|&v| v.max(lo).min(hi)).collect(),
            ))
        }
        "Softmax" | "LogSoftmax" => {
            ctx.known_attributes(&["axis"])?;
            let x = input(0)?;
            let values = ctx.floats(x, "input")?;
            let default_axis = if ctx.opset < 13 { 1 } else { -1 };
            let axis = ctx.axis(ctx.int("axis", default_axis)?, x.dims.len())?;
            let log = ctx.op() == "LogSoftmax";
            one(softmax(x, values, axis, ctx.opset < 13, log))
        }
        "BatchNormalization" => {
            ctx.known_attributes(&["epsilon", "momentum", "training_mode", "spatial"])?;
            if ctx.int("training_mode", 0)? != 0 {
                return Err(ctx.fail("training_mode is 1; only inference is supported"));
            }
            if node.output.iter().skip(1).any(|o| !o.is_empty()) {
                return Err(ctx.fail("only the Y output is supported (inference)"));
            }
            let x = input(0)?;
            let params: Vec<&[f32]> = (1..5)
                .map(|i| ctx.floats(input(i)?, "a BatchNormalization parameter"))
                .collect::<Result<_, _>>()?;
            let eps = f64::from(ctx.float("epsilon", 1e-5)?);
            let channels = x.dims.get(1).copied().unwrap_or(1);
            if params.iter().any(|p| p.len() != channels) {
                return Err(ctx.fail(format!(
                    "scale, B, mean and var must have {channels} values (the channel count)"
                )));
            }
            let (scale, bias) = batch_norm_affine(&params, eps);
            let inner: usize = x.dims.iter().skip(2).product();
            let values = ctx.floats(x, "input X")?;
            let out = values
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let c = (i / inner.max(1)) % channels.max(1);
                    (f64::from(v) * scale[c] + bias[c]) as f32
                })
                .collect();
            one(Tensor::f32(x.dims.clone(), out))
        }
        "ArgMax" => {
            ctx.known_attributes(&["axis", "keepdims", "select_last_index"])?;
            let x = input(0)?;
            let values = ctx.floats(x, "input")?;
            let axis = ctx.axis(ctx.int("axis", 0)?, x.dims.len())?;
            let last = ctx.int("select_last_index", 0)? != 0;
            let keep = ctx.int("keepdims", 1)? != 0;
            one(argmax(x, values, axis, keep, last))
        }
        other => Err(ctx.fail(format!("operator {other} is not supported"))),
    }
}

/// The per-channel `(scale, bias)` of an inference BatchNormalization:
/// `y = x * scale + bias` with `scale = gamma / sqrt(var + eps)` and
/// `bias = beta - mean * scale`, in f64. `params` is `[gamma, beta, mean, var]`.
pub fn batch_norm_affine(params: &[&[f32]], eps: f64) -> (Vec<f64>, Vec<f64>) {
    let (gamma, beta, mean, var) = (params[0], params[1], params[2], params[3]);
    let scale: Vec<f64> = gamma
        .iter()
        .zip(var)
        .map(|(&g, &v)| f64::from(g) / (f64::from(v) + eps).sqrt())
        .collect();
    let bias = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((&b, &m), &s)| f64::from(b) - f64::from(m) * s)
        .collect();
    (scale, bias)
}

fn cast(ctx: &NodeCtx<'_>, x: &Tensor, to: i64) -> Result<Tensor, EvalError> {
    let dims = x.dims.clone();
    let to = i32::try_from(to).unwrap_or(-1);
    let data = if to == DataType::Float as i32 {
        TensorData::F32(match &x.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F64(v) => v.iter().map(|&a| a as f32).collect(),
            _ => x
                .to_i64()
                .ok_or_else(|| ctx.fail("cannot cast this type to FLOAT"))?
                .iter()
                .map(|&a| a as f32)
                .collect(),
        })
    } else if to == DataType::Double as i32 {
        TensorData::F64(match &x.data {
            TensorData::F64(v) => v.clone(),
            TensorData::F32(v) => v.iter().map(|&a| f64::from(a)).collect(),
            _ => x
                .to_i64()
                .ok_or_else(|| ctx.fail("cannot cast this type to DOUBLE"))?
                .iter()
                .map(|&a| a as f64)
                .collect(),
        })
    } else if to == DataType::Int64 as i32 {
        TensorData::I64(match &x.data {
            // ONNX casts float to integer by truncation toward zero.
            TensorData::F32(v) => v.iter().map(|&a| a as i64).collect(),
            TensorData::F64(v) => v.iter().map(|&a| a as i64).collect(),
            _ => x
                .to_i64()
                .ok_or_else(|| ctx.fail("cannot cast this type to INT64"))?,
        })
    } else {
        return Err(ctx.fail(format!(
            "Cast to type {to} is not supported (FLOAT, DOUBLE and INT64 are)"
        )));
    };
    Ok(Tensor { dims, data })
}

fn constant(ctx: &NodeCtx<'_>) -> Result<Tensor, EvalError> {
    let [a] = ctx.node.attribute.as_slice() else {
        return Err(ctx.fail("a Constant needs exactly one value attribute"));
    };
    match a.name.as_deref().unwrap_or("") {
        "value" => {
            let proto =
                a.t.as_ref()
                    .ok_or_else(|| ctx.fail("attribute `value` holds no tensor"))?;
            crate::import::reader::decode_tensor(proto, None).map_err(|e| ctx.fail(e.to_string()))
        }
        "value_float" => Ok(Tensor::f32(vec![], vec![a.f.unwrap_or(0.0)])),
        "value_floats" => Ok(Tensor::f32(vec![a.floats.len()], a.floats.clone())),
        "value_int" => Ok(Tensor::i64(vec![], vec![a.i.unwrap_or(0)])),
        "value_ints" => Ok(Tensor::i64(vec![a.ints.len()], a.ints.clone())),
        other => Err(ctx.fail(format!("Constant attribute `{other}` is not supported"))),
    }
}

/// The output dimensions of Reshape, or why the shape is invalid.
pub fn reshape_dims(dims: &[usize], shape: &[i64], allowzero: bool) -> Result<Vec<usize>, String> {
    let total: usize = dims.iter().product();
    let mut out = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &s) in shape.iter().enumerate() {
        match s {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            -1 => return Err(format!("shape {shape:?} has more than one -1")),
            0 if !allowzero => out.push(
                *dims
                    .get(i)
                    .ok_or_else(|| format!("shape {shape:?}: 0 at {i} copies no input dim"))?,
            ),
            s if s >= 0 => out.push(usize::try_from(s).map_err(|_| "dim too large".to_owned())?),
            _ => return Err(format!("shape {shape:?} has a negative dimension")),
        }
    }
    let known: usize = out
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("the shape overflows")?;
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(format!(
                "cannot reshape {dims:?} ({total} values) to {shape:?}"
            ));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!(
            "cannot reshape {dims:?} ({total} values) to {shape:?}"
        ));
    }
    Ok(out)
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * dims[i + 1];
    }
    strides
}

fn transpose(x: &Tensor, perm: &[usize]) -> Tensor {
    let out_dims: Vec<usize> = perm.iter().map(|&p| x.dims[p]).collect();
    let in_strides = strides(&x.dims);
    let n = x.len();
    let out_strides = strides(&out_dims);
    let index_map: Vec<usize> = (0..n)
        .map(|flat| {
            perm.iter()
                .enumerate()
                .map(|(axis, &p)| (flat / out_strides[axis]) % out_dims[axis] * in_strides[p])
                .sum()
        })
        .collect();
    fn pick<T: Copy>(v: &[T], map: &[usize]) -> Vec<T> {
        map.iter().map(|&i| v[i]).collect()
    }
    let data = match &x.data {
        TensorData::F32(v) => TensorData::F32(pick(v, &index_map)),
        TensorData::F64(v) => TensorData::F64(pick(v, &index_map)),
        TensorData::I64(v) => TensorData::I64(pick(v, &index_map)),
        TensorData::I32(v) => TensorData::I32(pick(v, &index_map)),
        TensorData::U8(v) => TensorData::U8(pick(v, &index_map)),
        TensorData::I8(v) => TensorData::I8(pick(v, &index_map)),
        TensorData::Bool(v) => TensorData::Bool(pick(v, &index_map)),
    };
    Tensor {
        dims: out_dims,
        data,
    }
}

/// The numpy broadcast of two shapes, or why they do not broadcast.
pub fn broadcast_dims(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|i| {
            let da = if i + a.len() >= rank {
                a[i + a.len() - rank]
            } else {
                1
            };
            let db = if i + b.len() >= rank {
                b[i + b.len() - rank]
            } else {
                1
            };
            match (da, db) {
                (x, y) if x == y => Ok(x),
                (1, y) => Ok(y),
                (x, 1) => Ok(x),
                _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
            }
        })
        .collect()
}

/// For each element of `out_dims`, the index into a tensor of `dims` broadcast to it.
fn broadcast_index(dims: &[usize], out_dims: &[usize]) -> Vec<usize> {
    let offset = out_dims.len() - dims.len();
    let src_strides = strides(dims);
    let n: usize = out_dims.iter().product();
    let out_strides = strides(out_dims);
    (0..n)
        .map(|flat| {
            let mut src = 0;
            for (i, &d) in dims.iter().enumerate() {
                let coord = (flat / out_strides[i + offset]) % out_dims[i + offset];
                if d != 1 {
                    src += coord * src_strides[i];
                }
            }
            src
        })
        .collect()
}

fn broadcast_binary(
    a_dims: &[usize],
    a: &[f32],
    b_dims: &[usize],
    b: &[f32],
    f: fn(f32, f32) -> f32,
) -> Result<Tensor, String> {
    let dims = broadcast_dims(a_dims, b_dims)?;
    checked_size(&dims)?;
    let ia = broadcast_index(a_dims, &dims);
    let ib = broadcast_index(b_dims, &dims);
    let values = ia.iter().zip(&ib).map(|(&i, &j)| f(a[i], b[j])).collect();
    Ok(Tensor::f32(dims, values))
}

/// numpy `matmul` on FLOAT tensors: 1-D operands are promoted and the batch
/// dimensions broadcast.
pub fn matmul(a_dims: &[usize], a: &[f32], b_dims: &[usize], b: &[f32]) -> Result<Tensor, String> {
    if a_dims.is_empty() || b_dims.is_empty() {
        return Err("MatMul operands must have rank 1 or more".into());
    }
    let a_full: Vec<usize> = if a_dims.len() == 1 {
        vec![1, a_dims[0]]
    } else {
        a_dims.to_vec()
    };
    let b_full: Vec<usize> = if b_dims.len() == 1 {
        vec![b_dims[0], 1]
    } else {
        b_dims.to_vec()
    };
    let (m, k) = (a_full[a_full.len() - 2], a_full[a_full.len() - 1]);
    let (k2, n) = (b_full[b_full.len() - 2], b_full[b_full.len() - 1]);
    if k != k2 {
        return Err(format!("inner dimensions differ: {a_dims:?} x {b_dims:?}"));
    }
    let batch = broadcast_dims(&a_full[..a_full.len() - 2], &b_full[..b_full.len() - 2])?;
    let mut out_dims = batch.clone();
    out_dims.extend([m, n]);
    checked_size(&out_dims)?;
    let batch_a: Vec<usize> = a_full[..a_full.len() - 2].to_vec();
    let batch_b: Vec<usize> = b_full[..b_full.len() - 2].to_vec();
    let ia = broadcast_index(&batch_a, &batch);
    let ib = broadcast_index(&batch_b, &batch);
    let mut out = Vec::with_capacity(ia.len() * m * n);
    for (&pa, &pb) in ia.iter().zip(&ib) {
        let a_mat = &a[pa * m * k..(pa + 1) * m * k];
        let b_mat = &b[pb * k * n..(pb + 1) * k * n];
        for row in 0..m {
            for col in 0..n {
                let sum: f64 = (0..k)
                    .map(|i| f64::from(a_mat[row * k + i]) * f64::from(b_mat[i * n + col]))
                    .sum();
                out.push(sum as f32);
            }
        }
    }
    let mut dims = batch;
    if a_dims.len() > 1 {
        dims.push(m);
    }
    if b_dims.len() > 1 {
        dims.push(n);
    }
    Ok(Tensor::f32(dims, out))
}

fn gemm(
    ctx: &NodeCtx<'_>,
    a: &Tensor,
    b: &Tensor,
    c: Option<&Tensor>,
) -> Result<Tensor, EvalError> {
    let alpha = f64::from(ctx.float("alpha", 1.0)?);
    let beta = f64::from(ctx.float("beta", 1.0)?);
    let trans_a = ctx.int("transA", 0)? != 0;
    let trans_b = ctx.int("transB", 0)? != 0;
    let (av, bv) = (ctx.floats(a, "input A")?, ctx.floats(b, "input B")?);
    if a.dims.len() != 2 || b.dims.len() != 2 {
        return Err(ctx.fail(format!(
            "A and B must be matrices, got {:?} and {:?}",
            a.dims, b.dims
        )));
    }
    let (m, k) = if trans_a {
        (a.dims[1], a.dims[0])
    } else {
        (a.dims[0], a.dims[1])
    };
    let (k2, n) = if trans_b {
        (b.dims[1], b.dims[0])
    } else {
        (b.dims[0], b.dims[1])
    };
    if k != k2 {
        return Err(ctx.fail(format!(
            "A {:?} (transA={}) and B {:?} (transB={}) do not multiply",
            a.dims,
            u8::from(trans_a),
            b.dims,
            u8::from(trans_b)
        )));
    }
    checked_size(&[m, n]).map_err(|d| ctx.fail(d))?;
    let a_at = |r: usize, i: usize| {
        f64::from(if trans_a {
            av[i * m + r]
        } else {
            av[r * k + i]
        })
    };
    let b_at = |i: usize, col: usize| {
        f64::from(if trans_b {
            bv[col * k + i]
        } else {
            bv[i * n + col]
        })
    };
    let c_values = match c {
        None => None,
        Some(c) => {
            let cv = ctx.floats(c, "input C")?;
            let out = broadcast_dims(&c.dims, &[m, n])
                .ok()
                .filter(|d| d == &[m, n])
                .ok_or_else(|| {
                    ctx.fail(format!("C {:?} does not broadcast to [{m}, {n}]", c.dims))
                })?;
            let idx = broadcast_index(&c.dims, &out);
            Some(idx.iter().map(|&i| f64::from(cv[i])).collect::<Vec<_>>())
        }
    };
    let mut out = Vec::with_capacity(m * n);
    for r in 0..m {
        for col in 0..n {
            let dot: f64 = (0..k).map(|i| a_at(r, i) * b_at(i, col)).sum();
            let bias = c_values.as_ref().map_or(0.0, |c| beta * c[r * n + col]);
            out.push((alpha * dot + bias) as f32);
        }
    }
    Ok(Tensor::f32(vec![m, n], out))
}

fn softmax(x: &Tensor, values: &[f32], axis: usize, coerce_2d: bool, log: bool) -> Tensor {
    // Before opset 13 the input is a 2-D [outer, inner] matrix split at `axis`; from 13 on,
    // the reduction runs along `axis` alone.
    let (outer, len, inner) = if coerce_2d {
        (
            x.dims[..axis].iter().product::<usize>(),
            x.dims[axis..].iter().product::<usize>(),
            1,
        )
    } else {
        (
            x.dims[..axis].iter().product::<usize>(),
            x.dims.get(axis).copied().unwrap_or(1),
            x.dims[axis + 1..].iter().product::<usize>(),
        )
    };
    let mut out = vec![0.0f32; values.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| o * len * inner + j * inner + i;
            let max = (0..len)
                .map(|j| f64::from(values[at(j)]))
                .fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..len)
                .map(|j| (f64::from(values[at(j)]) - max).exp())
                .sum();
            for j in 0..len {
                let shifted = f64::from(values[at(j)]) - max;
                out[at(j)] = if log {
                    (shifted - sum.ln()) as f32
                } else {
                    (shifted.exp() / sum) as f32
                };
            }
        }
    }
    Tensor::f32(x.dims.clone(), out)
}

fn argmax(x: &Tensor, values: &[f32], axis: usize, keep: bool, last: bool) -> Tensor {
    let outer: usize = x.dims[..axis].iter().product();
    let len = x.dims.get(axis).copied().unwrap_or(1);
    let inner: usize = x.dims[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let mut best = 0;
            for j in 1..len {
                let (v, b) = (
                    values[o * len * inner + j * inner + i],
                    values[o * len * inner + best * inner + i],
                );
                if v > b || (last && v == b) {
                    best = j;
                }
            }
            out.push(best as i64);
        }
    }
    let mut dims = x.dims.clone();
    if keep {
        dims[axis] = 1;
    } else {
        dims.remove(axis);
    }
    Tensor::i64(dims, out)
}

/// The default-domain opset a model imports, if any.
pub fn default_opset(model: &crate::proto::ModelProto) -> Option<i64> {
    model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
}

/// Runs a whole graph on `feeds` (graph input name to tensor) and returns the
/// graph outputs in order. Initializers and Constant nodes are available as
/// tensors; `initializers` are the graph's initializers already decoded (with
/// external data resolved) by [`crate::import::reader`].
pub fn run_graph(
    graph: &crate::proto::GraphProto,
    opset: i64,
    initializers: &HashMap<String, Tensor>,
    feeds: &HashMap<String, Tensor>,
) -> Result<Vec<Tensor>, EvalError> {
    let mut values: HashMap<&str, Tensor> = HashMap::new();
    // All computed tensors stay alive until the end, so their total is bounded too.
    let mut budget: usize = 1 << 26;
    for (index, node) in graph.node.iter().enumerate() {
        let mut inputs: Vec<Option<&Tensor>> = Vec::with_capacity(node.input.len());
        for name in &node.input {
            if name.is_empty() {
                inputs.push(None);
                continue;
            }
            let tensor = values
                .get(name.as_str())
                .or_else(|| feeds.get(name))
                .or_else(|| initializers.get(name))
                .ok_or_else(|| EvalError {
                    node: node_label(node, index),
                    op_type: node.op_type.clone().unwrap_or_default(),
                    detail: format!("input `{name}` is not defined before the node"),
                })?;
            inputs.push(Some(tensor));
        }
        let outputs = eval_node(node, index, opset, &inputs)?;
        let produced: usize = outputs.iter().map(Tensor::len).sum();
        budget = budget.checked_sub(produced).ok_or_else(|| EvalError {
            node: node_label(node, index),
            op_type: node.op_type.clone().unwrap_or_default(),
            detail: "the graph computes more than 64 Mi elements in all".into(),
        })?;
        for (name, tensor) in node.output.iter().zip(outputs) {
            if !name.is_empty() {
                values.insert(name.as_str(), tensor);
            }
        }
    }
    graph
        .output
        .iter()
        .map(|output| {
            let name = output.name.as_deref().unwrap_or("");
            values
                .remove(name)
                .or_else(|| feeds.get(name).cloned())
                .or_else(|| initializers.get(name).cloned())
                .ok_or_else(|| EvalError {
                    node: "graph".into(),
                    op_type: "output".into(),
                    detail: format!("graph output `{name}` is never produced"),
                })
        })
        .collect()
}
