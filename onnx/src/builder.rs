//! A small, validating builder for single-graph ONNX models.
//!
//! The builder records inputs, initializers, nodes and outputs in order and
//! checks the graph when [`GraphBuilder::build`] is called, so a mistake shows
//! up as a typed error naming the node or tensor instead of as a model that
//! only a runtime rejects later.

use std::collections::HashSet;

use crate::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::OnnxError;

/// Lowest opset this crate writes. Every operator Kiln emits has had its
/// current definition since this version or earlier.
pub const MIN_OPSET: i64 = 13;
/// Highest opset this crate writes.
pub const MAX_OPSET: i64 = 21;

/// The IR version that shipped with `opset` in the default domain.
///
/// Runtimes refuse models whose IR version is newer than they understand, so
/// the lowest IR version that allows the opset is the most portable choice.
pub fn ir_version_for_opset(opset: i64) -> Result<i64, OnnxError> {
    match opset {
        13 | 14 => Ok(7),
        15..=18 => Ok(8),
        19 | 20 => Ok(9),
        21 => Ok(10),
        _ => Err(OnnxError::UnsupportedOpset { opset }),
    }
}

/// One dimension of a graph input or output shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A known size.
    Fixed(i64),
    /// A symbolic size such as the batch dimension `N`.
    Param(String),
}

/// The tool that wrote the model, recorded in `producer_name` and
/// `producer_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Producer {
    /// Tool name, e.g. `kiln`.
    pub name: String,
    /// Tool version, e.g. `0.1.0`.
    pub version: String,
}

/// Collects the parts of one ONNX graph and turns them into a checked
/// [`ModelProto`].
#[derive(Debug, Clone)]
pub struct GraphBuilder {
    name: String,
    doc_string: String,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
}

impl GraphBuilder {
    /// Starts an empty graph called `graph_name`.
    pub fn new(graph_name: &str) -> Self {
        Self {
            name: graph_name.to_owned(),
            doc_string: String::new(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Sets the graph's documentation string.
    pub fn doc_string(&mut self, doc: &str) -> &mut Self {
        self.doc_string = doc.to_owned();
        self
    }

    /// Declares a FLOAT graph input.
    pub fn input_f32(&mut self, name: &str, dims: &[Dim]) -> &mut Self {
        self.input(name, DataType::Float, dims)
    }

    /// Declares a graph input of any tensor element type.
    pub fn input(&mut self, name: &str, elem_type: DataType, dims: &[Dim]) -> &mut Self {
        self.inputs.push(value_info(name, elem_type, dims, ""));
        self
    }

    /// Declares a FLOAT graph output.
    pub fn output_f32(&mut self, name: &str, dims: &[Dim]) -> &mut Self {
        self.output(name, DataType::Float, dims)
    }

    /// Declares a graph output of any tensor element type, e.g.
    /// [`DataType::Int8`] for quantized logits.
    pub fn output(&mut self, name: &str, elem_type: DataType, dims: &[Dim]) -> &mut Self {
        self.output_with_doc(name, elem_type, dims, "")
    }

    /// Like [`GraphBuilder::output`], with a documentation string that model
    /// viewers show next to the output. An empty `doc` leaves it unset.
    pub fn output_with_doc(
        &mut self,
        name: &str,
        elem_type: DataType,
        dims: &[Dim],
        doc: &str,
    ) -> &mut Self {
        self.outputs.push(value_info(name, elem_type, dims, doc));
        self
    }

    /// Adds a FLOAT initializer, stored as little-endian `raw_data`.
    ///
    /// Fails when `data` does not exactly fill `dims` or a dimension is
    /// negative. An empty `dims` makes a scalar (rank 0) holding one value.
    pub fn initializer_f32(
        &mut self,
        name: &str,
        dims: &[i64],
        data: &[f32],
    ) -> Result<&mut Self, OnnxError> {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer_raw(name, dims, DataType::Float, data.len(), raw)
    }

    /// Adds an INT8 initializer (one byte per value, two's complement) as
    /// `raw_data`, with the same checks as [`GraphBuilder::initializer_f32`].
    pub fn initializer_i8(
        &mut self,
        name: &str,
        dims: &[i64],
        data: &[i8],
    ) -> Result<&mut Self, OnnxError> {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer_raw(name, dims, DataType::Int8, data.len(), raw)
    }

    /// Adds an INT16 initializer as little-endian `raw_data`, with the same
    /// checks as [`GraphBuilder::initializer_f32`].
    pub fn initializer_i16(
        &mut self,
        name: &str,
        dims: &[i64],
        data: &[i16],
    ) -> Result<&mut Self, OnnxError> {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer_raw(name, dims, DataType::Int16, data.len(), raw)
    }

    /// Adds an INT32 initializer as little-endian `raw_data`, with the same
    /// checks as [`GraphBuilder::initializer_f32`].
    pub fn initializer_i32(
        &mut self,
        name: &str,
        dims: &[i64],
        data: &[i32],
    ) -> Result<&mut Self, OnnxError> {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer_raw(name, dims, DataType::Int32, data.len(), raw)
    }

    fn initializer_raw(
        &mut self,
        name: &str,
        dims: &[i64],
        data_type: DataType,
        len: usize,
        raw_data: Vec<u8>,
    ) -> Result<&mut Self, OnnxError> {
        if dims.iter().any(|&d| d < 0) {
            return Err(OnnxError::InvalidShape {
                tensor: name.to_owned(),
                dims: format!("{dims:?}"),
            });
        }
        // u128 cannot overflow for any shape whose data fits in memory, and
        // an absurd shape must be reported, not wrapped around.
        let expected = dims
            .iter()
            .try_fold(1u128, |acc, &d| acc.checked_mul(d as u128))
            .unwrap_or(u128::MAX);
        if expected != len as u128 {
            return Err(OnnxError::InitializerSize {
                name: name.to_owned(),
                dims: dims.to_vec(),
                expected,
                actual: len,
            });
        }
        self.initializers.push(TensorProto {
            name: Some(name.to_owned()),
            dims: dims.to_vec(),
            data_type: Some(data_type as i32),
            raw_data: Some(raw_data),
            ..TensorProto::default()
        });
        Ok(self)
    }

    /// Appends a node in the default ONNX domain. Nodes must be added in
    /// topological order: each input must already be defined.
    pub fn node(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> &mut Self {
        self.node_with_doc(op_type, name, inputs, outputs, attributes, "")
    }

    /// Like [`GraphBuilder::node`], with a documentation string shown by
    /// model viewers such as Netron. An empty `doc` leaves the field unset.
    pub fn node_with_doc(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attributes: Vec<AttributeProto>,
        doc: &str,
    ) -> &mut Self {
        self.nodes.push(NodeProto {
            op_type: Some(op_type.to_owned()),
            name: Some(name.to_owned()),
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: outputs.iter().map(|s| (*s).to_owned()).collect(),
            attribute: attributes,
            doc_string: non_empty(doc),
            ..NodeProto::default()
        });
        self
    }

    /// Validates the graph and wraps it in a model for `opset`.
    ///
    /// Checks that names are unique, that every node input is a graph input,
    /// an initializer or an earlier node's output, and that every graph
    /// output is produced.
    pub fn build(
        self,
        opset: i64,
        producer: &Producer,
        model_doc: &str,
    ) -> Result<ModelProto, OnnxError> {
        let ir_version = ir_version_for_opset(opset)?;
        self.validate()?;
        let graph = GraphProto {
            name: Some(self.name),
            doc_string: non_empty(&self.doc_string),
            node: self.nodes,
            initializer: self.initializers,
            input: self.inputs,
            output: self.outputs,
            ..GraphProto::default()
        };
        Ok(ModelProto {
            ir_version: Some(ir_version),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(opset),
            }],
            producer_name: Some(producer.name.clone()),
            producer_version: Some(producer.version.clone()),
            doc_string: non_empty(model_doc),
            graph: Some(graph),
            ..ModelProto::default()
        })
    }

    fn validate(&self) -> Result<(), OnnxError> {
        // Every tensor name defined so far, in graph order: ONNX graphs are
        // in SSA form, so each name may be defined once.
        let mut defined: HashSet<&str> = HashSet::new();
        for input in &self.inputs {
            let name = input.name();
            if name.is_empty() {
                return Err(OnnxError::EmptyName { kind: "input" });
            }
            check_shape(input)?;
            if !defined.insert(name) {
                return Err(OnnxError::DuplicateTensor {
                    tensor: name.to_owned(),
                });
            }
        }
        for initializer in &self.initializers {
            let name = initializer.name();
            if name.is_empty() {
                return Err(OnnxError::EmptyName {
                    kind: "initializer",
                });
            }
            if !defined.insert(name) {
                return Err(OnnxError::DuplicateTensor {
                    tensor: name.to_owned(),
                });
            }
        }

        let mut node_names: HashSet<&str> = HashSet::new();
        for (index, node) in self.nodes.iter().enumerate() {
            let label = || {
                if node.name().is_empty() {
                    format!("#{index}")
                } else {
                    node.name().to_owned()
                }
            };
            if node.op_type().is_empty() {
                return Err(OnnxError::EmptyOpType { node: label() });
            }
            // ONNX node names are optional; only the ones given must differ.
            if !node.name().is_empty() && !node_names.insert(node.name()) {
                return Err(OnnxError::DuplicateNode { node: label() });
            }
            // An empty name marks an omitted optional input or output.
            for input in node.input.iter().filter(|s| !s.is_empty()) {
                if !defined.contains(input.as_str()) {
                    return Err(OnnxError::UndefinedInput {
                        node: label(),
                        tensor: input.clone(),
                    });
                }
            }
            for output in node.output.iter().filter(|s| !s.is_empty()) {
                if !defined.insert(output) {
                    return Err(OnnxError::DuplicateTensor {
                        tensor: output.clone(),
                    });
                }
            }
        }

        let mut outputs: HashSet<&str> = HashSet::new();
        for output in &self.outputs {
            let name = output.name();
            if name.is_empty() {
                return Err(OnnxError::EmptyName { kind: "output" });
            }
            check_shape(output)?;
            if !outputs.insert(name) {
                return Err(OnnxError::DuplicateOutput {
                    tensor: name.to_owned(),
                });
            }
            if !defined.contains(name) {
                return Err(OnnxError::OutputNotProduced {
                    tensor: name.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Rejects negative sizes and empty symbolic names in a graph input or
/// output, which the ONNX checker would otherwise flag.
fn check_shape(info: &ValueInfoProto) -> Result<(), OnnxError> {
    use tensor_shape_proto::dimension::Value;
    let Some(TypeProto {
        value:
            Some(type_proto::Value::TensorType(type_proto::Tensor {
                shape: Some(shape), ..
            })),
        ..
    }) = &info.r#type
    else {
        return Ok(());
    };
    let valid = shape.dim.iter().all(|d| match &d.value {
        Some(Value::DimValue(n)) => *n >= 0,
        Some(Value::DimParam(p)) => !p.is_empty(),
        None => true,
    });
    if valid {
        return Ok(());
    }
    let dims: Vec<String> = shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(Value::DimValue(n)) => n.to_string(),
            Some(Value::DimParam(p)) => format!("{p:?}"),
            None => "?".to_owned(),
        })
        .collect();
    Err(OnnxError::InvalidShape {
        tensor: info.name().to_owned(),
        dims: format!("[{}]", dims.join(", ")),
    })
}

/// Builds an INT attribute.
pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_owned()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..AttributeProto::default()
    }
}

/// Builds a FLOAT attribute.
pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_owned()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..AttributeProto::default()
    }
}

/// Builds an INTS attribute.
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_owned()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..AttributeProto::default()
    }
}

/// Builds a FLOATS attribute.
pub fn attr_floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_owned()),
        r#type: Some(AttributeType::Floats as i32),
        floats: v.to_vec(),
        ..AttributeProto::default()
    }
}

fn value_info(name: &str, elem_type: DataType, dims: &[Dim], doc: &str) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n),
                Dim::Param(p) => tensor_shape_proto::dimension::Value::DimParam(p.clone()),
            }),
            ..tensor_shape_proto::Dimension::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_owned()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..TypeProto::default()
        }),
        doc_string: non_empty(doc),
        ..ValueInfoProto::default()
    }
}

/// Protobuf optional strings are left unset rather than set to "" so the
/// encoded model stays minimal.
fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer() -> Producer {
        Producer {
            name: "kiln-test".to_owned(),
            version: "9.9.9".to_owned(),
        }
    }

    fn batch() -> Dim {
        Dim::Param("N".to_owned())
    }

    /// input -> Relu -> output, the smallest valid graph.
    fn relu_graph() -> GraphBuilder {
        let mut g = GraphBuilder::new("g");
        g.input_f32("x", &[batch(), Dim::Fixed(3)])
            .node("Relu", "relu", &["x"], &["y"], Vec::new())
            .output_f32("y", &[batch(), Dim::Fixed(3)]);
        g
    }

    #[test]
    fn ir_version_follows_the_onnx_release_table() {
        let table = [
            (13, 7),
            (14, 7),
            (15, 8),
            (16, 8),
            (17, 8),
            (18, 8),
            (19, 9),
            (20, 9),
            (21, 10),
        ];
        for (opset, ir) in table {
            assert_eq!(ir_version_for_opset(opset).unwrap(), ir, "opset {opset}");
        }
        assert_eq!(table.len() as i64, MAX_OPSET - MIN_OPSET + 1);
    }

    #[test]
    fn opsets_outside_the_range_are_rejected() {
        for opset in [i64::MIN, -1, 0, 1, 12, 22, 23, i64::MAX] {
            let err = ir_version_for_opset(opset).unwrap_err();
            assert!(
                matches!(err, OnnxError::UnsupportedOpset { opset: o } if o == opset),
                "{err:?}"
            );
        }
        let err = relu_graph().build(22, &producer(), "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "opset 22 is not supported: Kiln writes opsets 13 to 21"
        );
    }

    #[test]
    fn build_fills_model_header_and_graph() {
        let mut g = relu_graph();
        g.doc_string("graph doc");
        let model = g.build(19, &producer(), "model doc").unwrap();
        assert_eq!(model.ir_version, Some(9));
        assert_eq!(model.opset_import.len(), 1);
        assert_eq!(model.opset_import[0].domain(), "");
        assert_eq!(model.opset_import[0].version, Some(19));
        assert_eq!(model.producer_name(), "kiln-test");
        assert_eq!(model.producer_version(), "9.9.9");
        assert_eq!(model.doc_string(), "model doc");
        let graph = model.graph.unwrap();
        assert_eq!(graph.name(), "g");
        assert_eq!(graph.doc_string(), "graph doc");
        assert_eq!(graph.node.len(), 1);
        assert_eq!(graph.node[0].op_type(), "Relu");
        assert_eq!(graph.node[0].input, ["x"]);
        assert_eq!(graph.node[0].output, ["y"]);
        assert_eq!(graph.input[0].name(), "x");
        assert_eq!(graph.output[0].name(), "y");
    }

    #[test]
    fn value_info_is_float_with_fixed_and_symbolic_dims() {
        use tensor_shape_proto::dimension::Value;
        let model = relu_graph().build(13, &producer(), "").unwrap();
        let input = &model.graph.unwrap().input[0];
        let Some(type_proto::Value::TensorType(tensor)) = &input.r#type.as_ref().unwrap().value
        else {
            panic!("input is not a tensor: {input:?}");
        };
        assert_eq!(tensor.elem_type, Some(DataType::Float as i32));
        let dims: Vec<_> = tensor
            .shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| d.value.clone())
            .collect();
        assert_eq!(
            dims,
            [
                Some(Value::DimParam("N".to_owned())),
                Some(Value::DimValue(3))
            ]
        );
    }

    #[test]
    fn initializer_is_little_endian_raw_float() {
        let mut g = GraphBuilder::new("g");
        let data = [1.5f32, -0.0, f32::MIN_POSITIVE, 3.0e7, -2.25, 0.1];
        g.initializer_f32("w", &[2, 3], &data).unwrap();
        let t = &g.initializers[0];
        assert_eq!(t.name(), "w");
        assert_eq!(t.dims, [2, 3]);
        assert_eq!(t.data_type, Some(DataType::Float as i32));
        assert!(t.float_data.is_empty());
        let raw = t.raw_data.as_ref().unwrap();
        assert_eq!(&raw[..4], &[0x00, 0x00, 0xC0, 0x3F]);
        let decoded: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let expected: Vec<u32> = data.iter().map(|v| v.to_bits()).collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn initializer_size_must_match_shape() {
        let mut g = GraphBuilder::new("g");
        let err = g.initializer_f32("w", &[2, 3], &[0.0; 5]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "initializer `w`: shape [2, 3] holds 6 values but 5 were given"
        );
        let err = g.initializer_f32("w", &[-2, -3], &[0.0; 6]).unwrap_err();
        assert!(
            matches!(err, OnnxError::InvalidShape { ref tensor, .. } if tensor == "w"),
            "{err:?}"
        );
        // A scalar has one value.
        g.initializer_f32("s", &[], &[1.0]).unwrap();
        assert!(g.initializer_f32("s2", &[], &[]).is_err());
        assert!(g
            .initializer_f32("huge", &[i64::MAX, i64::MAX, i64::MAX], &[])
            .is_err());
    }

    #[test]
    fn integer_initializers_are_little_endian_raw_data() {
        let mut g = GraphBuilder::new("g");
        g.initializer_i8("q", &[2, 2], &[-128, -1, 0, 127])
            .unwrap()
            .initializer_i32("b", &[3], &[-2, 0x0102_0304, i32::MIN])
            .unwrap()
            .initializer_i8("zp", &[], &[-5])
            .unwrap();
        let t = &g.initializers[0];
        assert_eq!(
            (t.name(), t.dims.as_slice(), t.data_type),
            ("q", &[2, 2][..], Some(DataType::Int8 as i32))
        );
        assert!(t.int32_data.is_empty());
        assert_eq!(t.raw_data(), [0x80, 0xFF, 0x00, 0x7F]);
        let t = &g.initializers[1];
        assert_eq!(t.data_type, Some(DataType::Int32 as i32));
        assert_eq!(
            t.raw_data(),
            [0xFE, 0xFF, 0xFF, 0xFF, 0x04, 0x03, 0x02, 0x01, 0x00, 0x00, 0x00, 0x80]
        );
        // A rank-0 tensor: no dims, one value.
        let t = &g.initializers[2];
        assert!(t.dims.is_empty());
        assert_eq!(t.raw_data(), [0xFB]);

        let err = g.initializer_i8("short", &[3], &[1, 2]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "initializer `short`: shape [3] holds 3 values but 2 were given"
        );
        let err = g.initializer_i32("neg", &[-1], &[]).unwrap_err();
        assert!(
            matches!(err, OnnxError::InvalidShape { ref tensor, .. } if tensor == "neg"),
            "{err:?}"
        );
        assert!(g.initializer_i32("scalar", &[], &[]).is_err());
    }

    #[test]
    fn outputs_carry_their_element_type_and_doc() {
        let mut g = GraphBuilder::new("g");
        g.input("x", DataType::Int8, &[batch(), Dim::Fixed(2)])
            .node("Identity", "copy", &["x"], &["y"], Vec::new())
            .node("Identity", "copy2", &["x"], &["z"], Vec::new())
            .output_with_doc("y", DataType::Int8, &[batch(), Dim::Fixed(2)], "int8 copy")
            .output("z", DataType::Int32, &[batch(), Dim::Fixed(2)]);
        let graph = g.build(13, &producer(), "").unwrap().graph.unwrap();
        let elem = |info: &ValueInfoProto| match &info.r#type.as_ref().unwrap().value {
            Some(type_proto::Value::TensorType(t)) => t.elem_type,
            other => panic!("not a tensor: {other:?}"),
        };
        assert_eq!(elem(&graph.input[0]), Some(DataType::Int8 as i32));
        assert_eq!(elem(&graph.output[0]), Some(DataType::Int8 as i32));
        assert_eq!(graph.output[0].doc_string(), "int8 copy");
        assert_eq!(elem(&graph.output[1]), Some(DataType::Int32 as i32));
        assert_eq!(graph.output[1].doc_string, None);
    }

    #[test]
    fn attributes_carry_their_type() {
        let a = attr_int("transB", 1);
        assert_eq!(
            (a.name(), a.r#type(), a.i),
            ("transB", AttributeType::Int, Some(1))
        );
        let a = attr_float("alpha", 0.2);
        assert_eq!(
            (a.name(), a.r#type(), a.f),
            ("alpha", AttributeType::Float, Some(0.2))
        );
        let a = attr_ints("perm", &[1, 0]);
        assert_eq!(
            (a.name(), a.r#type(), a.ints.as_slice()),
            ("perm", AttributeType::Ints, &[1, 0][..])
        );
        let a = attr_floats("scales", &[0.5, 2.0]);
        assert_eq!(
            (a.name(), a.r#type(), a.floats.as_slice()),
            ("scales", AttributeType::Floats, &[0.5, 2.0][..])
        );
    }

    #[test]
    fn dangling_node_input_is_named() {
        let mut g = relu_graph();
        g.node("Add", "add", &["y", "bias"], &["z"], Vec::new());
        let err = g.build(13, &producer(), "").unwrap_err();
        assert!(
            matches!(&err, OnnxError::UndefinedInput { node, tensor } if node == "add" && tensor == "bias"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "node `add` reads `bias`, which is not a graph input, an initializer or the output of an earlier node"
        );
    }

    #[test]
    fn nodes_must_be_in_topological_order() {
        let mut g = GraphBuilder::new("g");
        g.input_f32("x", &[Dim::Fixed(1)])
            .node("Relu", "second", &["h"], &["y"], Vec::new())
            .node("Relu", "first", &["x"], &["h"], Vec::new())
            .output_f32("y", &[Dim::Fixed(1)]);
        let err = g.build(13, &producer(), "").unwrap_err();
        assert!(
            matches!(&err, OnnxError::UndefinedInput { node, .. } if node == "second"),
            "{err:?}"
        );
    }

    #[test]
    fn unnamed_nodes_are_reported_by_index() {
        let mut g = GraphBuilder::new("g");
        g.input_f32("x", &[Dim::Fixed(1)])
            .node("Relu", "", &["nope"], &["y"], Vec::new());
        let err = g.build(13, &producer(), "").unwrap_err();
        assert!(
            matches!(&err, OnnxError::UndefinedInput { node, .. } if node == "#0"),
            "{err:?}"
        );
    }

    #[test]
    fn tensor_names_are_defined_once() {
        let mut g = relu_graph();
        g.node("Relu", "again", &["x"], &["y"], Vec::new());
        let err = g.build(13, &producer(), "").unwrap_err();
        assert!(
            matches!(&err, OnnxError::DuplicateTensor { tensor } if tensor == "y"),
            "{err:?}"
        );

        let mut g = relu_graph();
        g.initializer_f32("x", &[1], &[1.0]).unwrap();
        let err = g.build(13, &producer(), "").unwrap_err();
        assert!(
            matches!(&err, OnnxError::DuplicateTensor { tensor } if tensor == "x"),
            "{err:?}"
        );
    }

    #[test]
    fn node_names_are_unique() {
        let mut g = relu_graph();
        g.node("Relu", "relu", &["y"], &["z"], Vec::new());
        let err = g.build(13, &producer(), "").unwrap_err();
        assert!(
            matches!(&err, OnnxError::DuplicateNode { node } if node == "relu"),
            "{err:?}"
        );
    }

    #[test]
    fn graph_outputs_must_be_produced_once() {
        let mut g = relu_graph();
        g.output_f32("missing", &[Dim::Fixed(1)]);
        let err = g.build(13, &producer(), "").unwrap_err();
        assert!(
            matches!(&err, OnnxError::OutputNotProduced { tensor } if tensor == "missing"),
            "{err:?}"
        );

        let mut g = relu_graph();
        g.output_f32("y", &[Dim::Fixed(1)]);
        let err = g.build(13, &producer(), "").unwrap_err();
        assert!(
            matches!(&err, OnnxError::DuplicateOutput { tensor } if tensor == "y"),
            "{err:?}"
        );
    }

    #[test]
    fn empty_names_and_op_types_are_rejected() {
        let mut g = GraphBuilder::new("g");
        g.input_f32("", &[Dim::Fixed(1)]);
        assert!(matches!(
            g.build(13, &producer(), ""),
            Err(OnnxError::EmptyName { kind: "input" })
        ));

        let mut g = relu_graph();
        g.node("", "mystery", &["y"], &["z"], Vec::new());
        let err = g.build(13, &producer(), "").unwrap_err();
        assert!(
            matches!(&err, OnnxError::EmptyOpType { node } if node == "mystery"),
            "{err:?}"
        );
    }

    #[test]
    fn invalid_io_shapes_are_rejected() {
        let mut g = GraphBuilder::new("g");
        g.input_f32("x", &[Dim::Param(String::new()), Dim::Fixed(2)])
            .node("Relu", "relu", &["x"], &["y"], Vec::new())
            .output_f32("y", &[Dim::Fixed(-2)]);
        let err = g.build(13, &producer(), "").unwrap_err();
        assert_eq!(err.to_string(), "tensor `x`: invalid shape [\"\", 2]");
    }

    #[test]
    fn omitted_optional_inputs_are_allowed() {
        let mut g = relu_graph();
        g.node("Clip", "clip", &["y", "", ""], &["z"], Vec::new())
            .output_f32("z", &[batch(), Dim::Fixed(3)]);
        g.build(13, &producer(), "").unwrap();
    }
}
