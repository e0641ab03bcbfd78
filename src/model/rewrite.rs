//! Exact rewrites of a model's ONNX graph at load time, before tract reads it: the same
//! arithmetic, in a form tract plans faster. The shipped files and their sha256s stay as
//! they are; the rewrite happens on the parsed protobuf, after the file was verified.
//!
//! One today (`docs/performance.md`, "Where tract's time goes"): a `QLinearConv` weight zero
//! point that is a per-channel tensor of zeros becomes a scalar 0. onnxruntime's quantizer
//! writes per-channel zero points even for symmetric weights. tract 0.23.9 folds away the
//! product of a *uniform* zero point of 0 with the column sums of a convolution's patches
//! (`QSumB`), and with it the sums themselves; a per-channel tensor of zeros is not uniform
//! to it, so every int8 convolution summed its patches for nothing.

use std::collections::BTreeMap;

use tract_onnx::pb::{ModelProto, TensorProto};

/// ONNX's element type codes for the 8-bit zero points (`TensorProto.DataType`).
const UINT8: i32 = 2;
const INT8: i32 = 3;

/// The input slot of a `QLinearConv`'s weight zero point.
const W_ZERO_POINT: usize = 5;

/// Give every `QLinearConv` whose weight zero point is a per-channel tensor of zeros a scalar
/// zero point of 0 instead (the same value for every channel, so the same results). Returns
/// how many convolutions were rewritten.
pub fn scalar_zero_weight_zero_points(model: &mut ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    // zero-point tensor name -> its element type, for those that are all zeros
    let zeros: BTreeMap<String, i32> = graph
        .initializer
        .iter()
        .filter(|t| is_per_channel_zeros(t))
        .map(|t| (t.name.clone(), t.data_type))
        .collect();
    let mut scalars = BTreeMap::new();
    let mut rewritten = 0;
    for node in graph.node.iter_mut().filter(|n| n.op_type == "QLinearConv") {
        let Some(zero_point) = node.input.get_mut(W_ZERO_POINT) else {
            continue;
        };
        let Some(&data_type) = zeros.get(zero_point.as_str()) else {
            continue;
        };
        let scalar = format!("{zero_point}.scalar");
        scalars.insert(scalar.clone(), data_type);
        *zero_point = scalar;
        rewritten += 1;
    }
    for (name, data_type) in scalars {
        graph.initializer.push(TensorProto {
            name,
            data_type,
            dims: Vec::new(),
            raw_data: vec![0],
            ..TensorProto::default()
        });
    }
    rewritten
}

/// A 1-D 8-bit tensor of more than one element, every one 0, held in the file itself.
fn is_per_channel_zeros(t: &TensorProto) -> bool {
    let [len] = t.dims[..] else { return false };
    if len < 2 || !matches!(t.data_type, UINT8 | INT8) || !t.external_data.is_empty() {
        return false;
    }
    // stored as bytes, or (the typed field) one i32 per element
    if t.raw_data.is_empty() {
        t.int32_data.len() as i64 == len && t.int32_data.iter().all(|&v| v == 0)
    } else {
        t.raw_data.len() as i64 == len && t.raw_data.iter().all(|&b| b == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{GraphProto, NodeProto};

    fn tensor(name: &str, data_type: i32, raw: &[u8]) -> TensorProto {
        TensorProto {
            name: name.into(),
            data_type,
            dims: vec![raw.len() as i64],
            raw_data: raw.to_vec(),
            ..TensorProto::default()
        }
    }

    fn conv(name: &str, zero_point: &str) -> NodeProto {
        let mut input: Vec<String> = ["x", "xs", "xz", "w", "ws"].map(String::from).to_vec();
        input.extend([zero_point.to_string(), "ys".into(), "yz".into()]);
        NodeProto {
            name: name.into(),
            op_type: "QLinearConv".into(),
            input,
            ..NodeProto::default()
        }
    }

    #[test]
    fn only_per_channel_zero_tensors_become_scalars() {
        let mut model = ModelProto {
            graph: Some(GraphProto {
                initializer: vec![
                    tensor("zeros", INT8, &[0, 0, 0]),
                    tensor("not_zero", INT8, &[0, 1, 0]),
                    tensor("one", INT8, &[0]),
                    tensor("wide", 6, &[0, 0, 0, 0]), // INT32: not a weight zero point
                ],
                node: vec![
                    conv("a", "zeros"),
                    conv("b", "zeros"),
                    conv("c", "not_zero"),
                    conv("d", "one"),
                    conv("e", "wide"),
                ],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        };
        assert_eq!(scalar_zero_weight_zero_points(&mut model), 2);
        let graph = model.graph.unwrap();
        let zero_points: Vec<&str> = graph.node.iter().map(|n| n.input[W_ZERO_POINT].as_str()).collect();
        assert_eq!(zero_points, ["zeros.scalar", "zeros.scalar", "not_zero", "one", "wide"]);
        let scalar: Vec<&TensorProto> = graph.initializer.iter().filter(|t| t.name == "zeros.scalar").collect();
        assert_eq!(scalar.len(), 1, "one scalar shared by both convolutions");
        assert!(scalar[0].dims.is_empty() && scalar[0].raw_data == [0] && scalar[0].data_type == INT8);
    }
}
