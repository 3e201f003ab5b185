//! Reads an ONNX file into the crate's own protobuf types: the model, its
//! opset, and every initializer decoded into a [`Tensor`], with external data
//! (the `.onnx.data` file PyTorch 2.5 and later writes beside the model)
//! resolved.
//!
//! Nothing is sized by a declared field before the bytes that back it are
//! there: a tensor's element count must match its data, and an external
//! range must lie inside its file.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use prost::Message;

use super::error::{ImportError, ImportErrorKind};
use crate::eval::{Tensor, TensorData};
use crate::proto::{tensor_proto::DataLocation, tensor_proto::DataType, ModelProto, TensorProto};

/// The oldest default-domain opset the importer reads.
pub const MIN_IMPORT_OPSET: i64 = 7;
/// The newest default-domain opset the importer reads.
pub const MAX_IMPORT_OPSET: i64 = 21;
/// The newest default-domain opset the float evaluator runs: its operators'
/// float semantics are unchanged from opset 13 to 25, and it follows the
/// older versions where they differ (Softmax before 13, Clip before 11).
pub const MAX_EVAL_OPSET: i64 = 25;

/// A decoded model with its initializers.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The model as read; external initializers have their bytes in `raw_data`.
    pub proto: ModelProto,
    /// The default-domain (`ai.onnx`) opset.
    pub opset: i64,
    /// Every graph initializer, decoded.
    pub initializers: HashMap<String, Tensor>,
}

/// Reads and decodes the ONNX file at `path`, resolving external data
/// relative to its folder; the opset must be one the importer reads (7 to 21).
pub fn read_model(path: &Path) -> Result<LoadedModel, ImportError> {
    read_model_with_opsets(path, MIN_IMPORT_OPSET, MAX_IMPORT_OPSET)
}

/// [`read_model`] with another accepted opset range (the float evaluator's is
/// up to [`MAX_EVAL_OPSET`]).
pub fn read_model_with_opsets(
    path: &Path,
    min_opset: i64,
    max_opset: i64,
) -> Result<LoadedModel, ImportError> {
    let at = |kind| ImportError {
        path: path.to_owned(),
        kind,
    };
    let bytes = std::fs::read(path).map_err(|e| at(ImportErrorKind::Read(e)))?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let base_dir = if base_dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base_dir
    };
    read_model_bytes(&bytes, Some(base_dir), min_opset, max_opset).map_err(|(file, kind)| {
        ImportError {
            path: file.unwrap_or_else(|| path.to_owned()),
            kind,
        }
    })
}

/// Decodes model bytes whose default-domain opset is in
/// `min_opset..=max_opset`. External data is read from `base_dir`; without one
/// it is refused. On failure, returns the external data file involved (if
/// any) and the reason.
pub fn read_model_bytes(
    bytes: &[u8],
    base_dir: Option<&Path>,
    min_opset: i64,
    max_opset: i64,
) -> Result<LoadedModel, (Option<PathBuf>, ImportErrorKind)> {
    let mut proto =
        ModelProto::decode(bytes).map_err(|e| (None, ImportErrorKind::Decode(e.to_string())))?;
    let opset = check_opset(&proto, min_opset, max_opset).map_err(|k| (None, k))?;
    let graph = proto
        .graph
        .as_mut()
        .ok_or((None, ImportErrorKind::NoGraph))?;
    let mut initializers = HashMap::with_capacity(graph.initializer.len());
    for tensor in &mut graph.initializer {
        let name = tensor.name.clone().unwrap_or_default();
        if tensor.data_location == Some(DataLocation::External as i32) {
            load_external(tensor, base_dir)?;
        }
        let decoded = decode_tensor(tensor, Some(&name)).map_err(|detail| {
            (
                None,
                ImportErrorKind::Tensor {
                    tensor: name.clone(),
                    detail,
                },
            )
        })?;
        initializers.insert(name, decoded);
    }
    Ok(LoadedModel {
        proto,
        opset,
        initializers,
    })
}

/// The default-domain opset, checked against the range the importer reads.
fn check_opset(model: &ModelProto, min: i64, max: i64) -> Result<i64, ImportErrorKind> {
    let fail = |found: String| ImportErrorKind::Opset { found, min, max };
    let version =
        crate::eval::default_opset(model).ok_or_else(|| fail("(none declared)".into()))?;
    if (min..=max).contains(&version) {
        Ok(version)
    } else {
        Err(fail(version.to_string()))
    }
}

/// Reads an external initializer's bytes into its `raw_data`.
fn load_external(
    tensor: &mut TensorProto,
    base_dir: Option<&Path>,
) -> Result<(), (Option<PathBuf>, ImportErrorKind)> {
    let name = tensor.name.clone().unwrap_or_default();
    let fail = |file: Option<PathBuf>, detail: String| {
        (
            file,
            ImportErrorKind::ExternalData {
                tensor: name.clone(),
                detail,
            },
        )
    };
    let entry = |key: &str| {
        tensor
            .external_data
            .iter()
            .find(|e| e.key.as_deref() == Some(key))
            .and_then(|e| e.value.clone())
    };
    let location = entry("location").ok_or_else(|| fail(None, "no `location` given".into()))?;
    let number = |key: &str| -> Result<Option<u64>, (Option<PathBuf>, ImportErrorKind)> {
        entry(key)
            .map(|text| {
                text.trim()
                    .parse::<u64>()
                    .map_err(|_| fail(None, format!("`{key}` is {text:?}, expected a byte count")))
            })
            .transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    let length = number("length")?;
    let relative = Path::new(&location);
    // The location must name a file inside the model's folder, as the ONNX spec requires.
    if location.is_empty()
        || relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(fail(
            None,
            format!("location {location:?} must be a relative path inside the model's folder"),
        ));
    }
    let Some(base_dir) = base_dir else {
        return Err(fail(
            None,
            format!("location {location:?}: external data needs the model's folder"),
        ));
    };
    let file_path = base_dir.join(relative);
    let io = |e: std::io::Error| fail(Some(file_path.clone()), format!("cannot read: {e}"));
    let mut file = std::fs::File::open(&file_path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let length = length.unwrap_or(file_len.saturating_sub(offset));
    let end = offset.saturating_add(length);
    if end > file_len {
        return Err(fail(
            Some(file_path.clone()),
            format!("bytes {offset}..{end} are past the end of the file ({file_len} bytes)"),
        ));
    }
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut bytes = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    file.take(length).read_to_end(&mut bytes).map_err(io)?;
    tensor.raw_data = Some(bytes);
    tensor.data_location = Some(DataLocation::Default as i32);
    tensor.external_data.clear();
    Ok(())
}

/// The element count of `dims`, refusing negative or overflowing sizes.
fn element_count(dims: &[i64]) -> Result<usize, String> {
    dims.iter().try_fold(1usize, |acc, &d| {
        let d = usize::try_from(d).map_err(|_| format!("dims {dims:?} has a negative size"))?;
        acc.checked_mul(d)
            .ok_or_else(|| format!("dims {dims:?} overflow"))
    })
}

/// Decodes a TensorProto (raw_data or the typed fields) into a [`Tensor`].
/// `name` is only for messages. External data must already be loaded.
pub fn decode_tensor(proto: &TensorProto, name: Option<&str>) -> Result<Tensor, String> {
    let _ = name;
    if proto.segment.is_some() {
        return Err("segmented tensors are not supported".into());
    }
    if proto.data_location == Some(DataLocation::External as i32) {
        return Err("external data is only supported for graph initializers".into());
    }
    let n = element_count(&proto.dims)?;
    let dims: Vec<usize> = proto.dims.iter().map(|&d| d as usize).collect();
    let data_type = proto.data_type.unwrap_or(0);
    let raw = proto.raw_data.as_deref();
    let mismatch = |found: usize| {
        format!(
            "dims {:?} hold {n} values but the data has {found}",
            proto.dims
        )
    };
    // Reads `n` little-endian elements of `size` bytes from raw_data.
    fn raw_elements<T>(
        raw: &[u8],
        n: usize,
        size: usize,
        convert: impl Fn(&[u8]) -> T,
    ) -> Option<Vec<T>> {
        (raw.len() == n.checked_mul(size)?).then(|| raw.chunks_exact(size).map(convert).collect())
    }
    let data = if data_type == DataType::Float as i32 {
        TensorData::F32(match raw {
            Some(raw) => raw_elements(raw, n, 4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| mismatch(raw.len() / 4))?,
            None if proto.float_data.len() == n => proto.float_data.clone(),
            None => return Err(mismatch(proto.float_data.len())),
        })
    } else if data_type == DataType::Double as i32 {
        TensorData::F64(match raw {
            Some(raw) => raw_elements(raw, n, 8, |b| {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            })
            .ok_or_else(|| mismatch(raw.len() / 8))?,
            None if proto.double_data.len() == n => proto.double_data.clone(),
            None => return Err(mismatch(proto.double_data.len())),
        })
    } else if data_type == DataType::Int64 as i32 {
        TensorData::I64(match raw {
            Some(raw) => raw_elements(raw, n, 8, |b| {
                i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            })
            .ok_or_else(|| mismatch(raw.len() / 8))?,
            None if proto.int64_data.len() == n => proto.int64_data.clone(),
            None => return Err(mismatch(proto.int64_data.len())),
        })
    } else if data_type == DataType::Int32 as i32 {
        TensorData::I32(match raw {
            Some(raw) => raw_elements(raw, n, 4, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| mismatch(raw.len() / 4))?,
            None if proto.int32_data.len() == n => proto.int32_data.clone(),
            None => return Err(mismatch(proto.int32_data.len())),
        })
    } else if data_type == DataType::Uint8 as i32
        || data_type == DataType::Int8 as i32
        || data_type == DataType::Bool as i32
    {
        let bytes: Vec<u8> = match raw {
            Some(raw) if raw.len() == n => raw.to_vec(),
            Some(raw) => return Err(mismatch(raw.len())),
            // The typed field holds one element per int32.
            None if proto.int32_data.len() == n => {
                proto.int32_data.iter().map(|&v| v as u8).collect()
            }
            None => return Err(mismatch(proto.int32_data.len())),
        };
        if data_type == DataType::Uint8 as i32 {
            TensorData::U8(bytes)
        } else if data_type == DataType::Int8 as i32 {
            TensorData::I8(bytes.into_iter().map(|b| b as i8).collect())
        } else {
            TensorData::Bool(bytes.into_iter().map(|b| b != 0).collect())
        }
    } else {
        let type_name = DataType::try_from(data_type)
            .map(|t| t.as_str_name().to_owned())
            .unwrap_or_else(|_| data_type.to_string());
        return Err(format!(
            "element type {type_name} is not supported (FLOAT, DOUBLE, INT64, INT32, INT8, UINT8 and BOOL are)"
        ));
    };
    Ok(Tensor { dims, data })
}

/// Reads a serialized TensorProto file (the `input_0.pb` / `output_0.pb` of
/// the ONNX backend tests) and decodes it. Returns the tensor and its name.
pub fn read_tensor_file(path: &Path) -> Result<(String, Tensor), ImportError> {
    let at = |kind| ImportError {
        path: path.to_owned(),
        kind,
    };
    let bytes = std::fs::read(path).map_err(|e| at(ImportErrorKind::Read(e)))?;
    let proto = TensorProto::decode(bytes.as_slice())
        .map_err(|e| at(ImportErrorKind::Decode(e.to_string())))?;
    let name = proto.name.clone().unwrap_or_default();
    let tensor = decode_tensor(&proto, Some(&name)).map_err(|detail| {
        at(ImportErrorKind::Tensor {
            tensor: name.clone(),
            detail,
        })
    })?;
    Ok((name, tensor))
}
