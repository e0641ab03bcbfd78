#![allow(clippy::unnecessary_cast)]

use crate::internal::*;
use crate::ops::element_wise::ElementWiseOp;
use crate::ops::math::QScale;
use num_traits::AsPrimitive;
use tract_linalg::Scaler;
use tract_linalg::lut::Lut;
use tract_linalg::mmm::RoundingPolicy;

use super::binary::TypedBinOp;
use super::math::round_ties_to_even;

/// `round_ties_to_even`, written without branches so that the loops below vectorize: the
/// same value for every f32 but the sign of a zero result, which a cast to an integer drops.
#[inline(always)]
fn round_ties_even_to_int(x: f32) -> f32 {
    const TOINT: f32 = 1.0 / f32::EPSILON; // 2^23: every f32 at least this large is an integer
    let rounded = if x < 0.0 { x - TOINT + TOINT } else { x + TOINT - TOINT };
    if x.abs() < TOINT { rounded } else { x }
}

/// `x as i32` (toward zero, saturating, NaN to 0), written so that the loops below vectorize:
/// on x86 Rust's `as` is one scalar conversion per lane, with its NaN and range checks; this
/// is a vector conversion between two selects, the same value for every f32. (aarch64's
/// conversion saturates as `as` does: there it is `as`.)
#[inline(always)]
fn saturating_i32(x: f32) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        const TWO_31: f32 = 2147483648.0;
        const BELOW_TWO_31: f32 = 2147483520.0; // the largest f32 below 2^31
        let inside = if x.is_nan() { 0.0 } else { x.max(-TWO_31).min(BELOW_TWO_31) };
        // safety: `inside` is finite and within i32's range, by the line above
        let v = unsafe { inside.to_int_unchecked::<i32>() };
        if x >= TWO_31 { i32::MAX } else { v }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        x as i32
    }
}

/// `ys[i] = f(xs[i])`, compiled a second time with AVX2 and that copy taken where the CPU has
/// it. The quantizing loops below are conversions, roundings and clamps: x86_64's baseline
/// (SSE2) does them 4 lanes at a time, AVX2 8. The same operations in the same order (no FMA
/// contraction), so the same results. Other targets: the one loop.
#[inline(always)]
fn map_into<X: Copy, Y>(xs: &[X], ys: &mut [Y], f: impl Fn(X) -> Y) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<X: Copy, Y>(xs: &[X], ys: &mut [Y], f: impl Fn(X) -> Y) {
            xs.iter().zip(ys).for_each(|(x, y)| *y = f(*x))
        }
        if is_x86_feature_detected!("avx2") {
            // safety: the CPU has AVX2, checked on the line above
            return unsafe { avx2(xs, ys, f) };
        }
    }
    xs.iter().zip(ys).for_each(|(x, y)| *y = f(*x))
}

#[inline]
pub fn quantize_linear_f32_u8(x: f32, scale: f32, zero_point: i32) -> u8 {
    (saturating_i32(round_ties_even_to_int(x * scale)) + zero_point)
        .clamp(u8::MIN as i32, u8::MAX as i32) as u8
}

#[inline]
pub fn quantize_linear_f32_i8(x: f32, scale: f32, zero_point: i32) -> i8 {
    (saturating_i32(round_ties_even_to_int(x * scale)) + zero_point)
        .clamp(i8::MIN as i32, i8::MAX as i32) as i8
}

element_wise_oop!(quantize_linear_u8,
 QuantizeLinearU8 {
     scale: f32,
     zero_point: u8
 },
 [f16] => u8 |op, xs, ys| {
     xs.iter().zip(ys.iter_mut()).for_each(|(x,y)|
                                           *y = quantize_linear_f32_u8(x.to_f32(), op.scale, op.zero_point as i32)
                                          );
     Ok(())
 },
 [f32,i32] => u8 |op, xs, ys| {
     map_into(xs, ys, |x| quantize_linear_f32_u8(x as f32, op.scale, op.zero_point as i32));
     Ok(())
 };
 info: info_quantize_linear_u8
);

fn info_quantize_linear_u8(q: &QuantizeLinearU8) -> TractResult<Vec<String>> {
    Ok(vec![format!(
        "scale: {} zero_point: {} 1/scale: {}",
        q.scale,
        q.zero_point,
        q.scale.recip()
    )])
}

element_wise_oop!(quantize_linear_i8,
 QuantizeLinearI8 {
     scale: f32,
     zero_point: i8
 },
 [f32,i32] => i8 |op, xs, ys| {
     map_into(xs, ys, |x| quantize_linear_f32_i8(x as f32, op.scale, op.zero_point as i32));
     Ok(())
 };
 info: info_quantize_linear_i8
);

fn info_quantize_linear_i8(q: &QuantizeLinearI8) -> TractResult<Vec<String>> {
    Ok(vec![format!(
        "scale: {} zero_point: {} 1/scale: {}",
        q.scale,
        q.zero_point,
        q.scale.recip()
    )])
}

#[derive(Clone, Debug, new, PartialEq)]
pub struct DequantizeLinearF32 {
    pub scale: f32,
    pub zero_point: i32,
    /// A clip that followed the dequantization (`Max`, then `Min`, by constants: a ReLU6),
    /// done in the same pass: see `fold_clip`.
    #[new(default)]
    pub clip: Option<(f32, f32)>,
}

impl Eq for DequantizeLinearF32 {}

impl DequantizeLinearF32 {
    fn eval_t<T: Datum + AsPrimitive<i32>>(&self, input: &Tensor) -> TractResult<Tensor> {
        let mut output = unsafe { Tensor::uninitialized::<f32>(input.shape())? };
        let xs = input.try_as_plain_ram()?;
        let xs = xs.as_slice::<T>()?;
        let mut ys = output.try_as_plain_ram_mut()?;
        let ys = ys.as_slice_mut::<f32>()?;
        let dequant = |x: &T| (x.as_() - self.zero_point) as f32 * self.scale;
        if let Some((lo, hi)) = self.clip {
            xs.iter().zip(ys.iter_mut()).for_each(|(x, y)| *y = dequant(x).max(lo).min(hi));
        } else {
            xs.iter().zip(ys.iter_mut()).for_each(|(x, y)| *y = dequant(x));
        }
        Ok(output)
    }

    /// A `Max` and/or a `Min` by a scalar constant after an 8-bit dequantization (the ReLU6
    /// between a quantized convolution and an f32 one) become this op's `clip`: one pass over
    /// the f32 tensor instead of two. Only where it is exact: the 256 possible inputs go
    /// through both the ops it replaces and the clipping dequantization, and every output
    /// must have the same bits.
    fn fold_clip(
        &self,
        model: &TypedModel,
        dequant: &TypedNode,
    ) -> TractResult<Option<TypedModelPatch>> {
        use crate::ops::math::{Max, Min};
        let input_dt = model.outlet_fact(dequant.inputs[0])?.datum_type.unquantized();
        if self.clip.is_some() || (input_dt != u8::datum_type() && input_dt != i8::datum_type()) {
            return Ok(None);
        }
        let shape = &model.outlet_fact(dequant.id.into())?.shape;
        let (mut lo, mut hi) = (None, None);
        let mut chain: Vec<(&TypedNode, usize, Tensor)> = vec![];
        let mut last = dequant;
        while let Some(succ) = model.single_succ(last.id)? {
            let Some(bin) = succ.op_as::<TypedBinOp>() else { break };
            let facts = model.node_input_facts(succ.id)?;
            let Some(slot) = facts.iter().position(|f| {
                f.konst
                    .as_ref()
                    .is_some_and(|k| k.volume() == 1 && k.datum_type() == f32::datum_type())
            }) else {
                break;
            };
            // the other operand must be the wire coming from the dequantization
            if succ.inputs[1 - slot] != OutletId::from(last.id) {
                break;
            }
            let k = facts[slot].konst.clone().unwrap();
            let c = k.cast_to_scalar::<f32>()?;
            let bound = if bin.0.is::<Max>() {
                &mut lo
            } else if bin.0.is::<Min>() {
                &mut hi
            } else {
                break;
            };
            if bound.is_some() || c.is_nan() || model.outlet_fact(succ.id.into())?.shape != *shape {
                break;
            }
            *bound = Some(c);
            chain.push((succ, slot, k.into_tensor()));
            last = succ;
        }
        if chain.is_empty() {
            return Ok(None);
        }
        let clip = (lo.unwrap_or(f32::NEG_INFINITY), hi.unwrap_or(f32::INFINITY));
        let folded = DequantizeLinearF32 { clip: Some(clip), ..self.clone() };

        // every input, through the ops replaced and through the folded one
        let inputs: Tensor = if input_dt == u8::datum_type() {
            tensor1(&(0..=255u8).collect::<Vec<_>>())
        } else {
            tensor1(&(-128..=127i8).collect::<Vec<_>>())
        };
        let replaced = || -> TractResult<Tensor> {
            let mut adhoc = TypedModel::default();
            let mut wire = adhoc.add_source("x", input_dt.fact([256]))?;
            wire = adhoc.wire_node("dequant", self.clone(), &[wire])?[0];
            for (ix, (node, slot, k)) in chain.iter().enumerate() {
                let k = adhoc.add_const(format!("k{ix}"), k.clone().into_shape(&[1])?)?;
                let ins = if *slot == 0 { [k, wire] } else { [wire, k] };
                wire = adhoc.wire_node(format!("op{ix}"), node.op.clone(), &ins)?[0];
            }
            adhoc.select_output_outlets(&[wire])?;
            Ok(SimplePlan::new(adhoc)?
                .run(tvec!(inputs.clone().into_tvalue()))?
                .remove(0)
                .into_tensor())
        };
        // (an op that cannot be replayed alone is simply not folded)
        let Ok(expected) = replaced() else { return Ok(None) };
        let got = folded.eval_t_dt(&inputs)?;
        let bits = |t: &Tensor| -> TractResult<Vec<u32>> {
            Ok(t.try_as_plain_ram()?.as_slice::<f32>()?.iter().map(|v| v.to_bits()).collect())
        };
        if bits(&expected)? != bits(&got)? {
            return Ok(None);
        }
        let mut patch = TypedModelPatch::default();
        let wire = patch.tap_model(model, dequant.inputs[0])?;
        let wire = patch.wire_node(&dequant.name, folded, &[wire])?[0];
        patch.shunt_outside(model, last.id.into(), wire)?;
        Ok(Some(patch))
    }

    fn eval_t_dt(&self, input: &Tensor) -> TractResult<Tensor> {
        match input.datum_type() {
            DatumType::I8 => self.eval_t::<i8>(input),
            DatumType::I32 => self.eval_t::<i32>(input),
            DatumType::U8 => self.eval_t::<u8>(input),
            dt => bail!("Unsupported type {:?}", dt),
        }
    }
}

impl Op for DequantizeLinearF32 {
    fn name(&self) -> StaticName {
        "DequantizeLinearF32".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let mut info = vec![format!("scale: {} zero_point: {}", self.scale, self.zero_point)];
        if let Some((lo, hi)) = self.clip {
            info.push(format!("clipped to {lo}..{hi}"));
        }
        Ok(info)
    }

    fn validation(&self) -> Validation {
        Validation::Accurate
    }

    op_as_typed_op!();
}

impl EvalOp for DequantizeLinearF32 {
    op_out_of_plan!();
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        Ok(tvec!(self.eval_t_dt(&inputs[0])?.into_tvalue()))
    }
}

impl TypedOp for DequantizeLinearF32 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::datum_type().fact(inputs[0].shape.clone())))
    }

    fn axes_mapping(
        &self,
        inputs: &[&TypedFact],
        outputs: &[&TypedFact],
    ) -> TractResult<AxesMapping> {
        AxesMapping::natural(inputs, outputs)
    }

    fn change_axes(
        &self,
        model: &TypedModel,
        node: &TypedNode,
        _io: InOut,
        change: &AxisOp,
    ) -> TractResult<Option<AxisChangeConsequence>> {
        Ok(Some(AxisChangeConsequence::new(model, node, None, change)))
    }

    fn declutter(
        &self,
        model: &TypedModel,
        dequant: &TypedNode,
    ) -> TractResult<Option<TypedModelPatch>> {
        let mut current = dequant;
        let incoming_dt = model.node_input_facts(dequant.id)?[0].datum_type;
        while let Some(quant) = model.single_succ(current.id)? {
            let q_params = if let Some(op) = quant.op_as::<ElementWiseOp>() {
                if let Some(mop) = op.0.downcast_ref::<QuantizeLinearU8>() {
                    Some((mop.scale, mop.zero_point as i32, u8::datum_type()))
                } else {
                    op.0.downcast_ref::<QuantizeLinearI8>()
                        .map(|mop| (mop.scale, mop.zero_point as i32, i8::datum_type()))
                }
            } else {
                None
            };
            if let Some((scale, zero_point, dt)) = q_params {
                // first, try Op::quantize() on all ops in the chain
                let mut patch = TypedModelPatch::default();
                let mut wire: OutletId = patch.tap_model(model, dequant.inputs[0])?;
                let mut next = model.single_succ(dequant.id)?.unwrap();
                loop {
                    if let Some(op) = next
                        .op
                        .quantize(model, dequant, dt, scale, zero_point)
                        .with_context(|| format!("Quantizing {next}"))?
                    {
                        wire = patch.wire_node(&*next.name, op, [wire].as_ref())?[0];
                    } else {
                        break;
                    }
                    if next.id == current.id {
                        patch.shunt_outside(model, OutletId::new(quant.id, 0), wire)?;
                        return Ok(Some(patch));
                    } else {
                        next = model.single_succ(next.id)?.unwrap();
                    }
                }
                // or else make a lookup table
                if incoming_dt == DatumType::I8 || incoming_dt == DatumType::U8 {
                    let mut adhoc_model = TypedModel::default();
                    let mut wire = adhoc_model.add_source("ad-hoc", dt.fact([256]))?;
                    let mut next = model.single_succ(dequant.id)?.unwrap();
                    let mut name = None;
                    // plug in dequant
                    wire = adhoc_model.wire_node(
                        &*dequant.name,
                        dequant.op.clone(),
                        [wire].as_ref(),
                    )?[0];
                    while next.id != quant.id {
                        name.get_or_insert(&*next.name);
                        wire =
                            adhoc_model.wire_node(&*next.name, next.op.clone(), [wire].as_ref())?
                                [0];
                        next = model.single_succ(next.id)?.unwrap();
                    }
                    // plug in quant
                    wire =
                        adhoc_model.wire_node(&*quant.name, quant.op.clone(), [wire].as_ref())?[0];
                    adhoc_model.select_output_outlets(&[wire])?;
                    let input = (0u8..=255).collect::<Vec<u8>>();
                    let input = match dt {
                        DatumType::I8 => unsafe {
                            tensor1(std::mem::transmute::<&[u8], &[i8]>(&*input))
                        },
                        DatumType::U8 => tensor1(&input),
                        _ => unreachable!(),
                    };
                    let output =
                        SimplePlan::new(adhoc_model)?.run(tvec!(input.into_tvalue()))?.remove(0);
                    let table: &[u8] = match dt {
                        DatumType::I8 => unsafe {
                            std::mem::transmute::<&[i8], &[u8]>(
                                output.try_as_plain_ram()?.as_slice::<i8>()?,
                            )
                        },
                        DatumType::U8 => output.try_as_plain_ram()?.as_slice::<u8>()?,
                        _ => unreachable!(),
                    };
                    let op = lookup_table(tract_linalg::routines::lut_u8(table)?);
                    let mut patch = TypedModelPatch::default();
                    let mut wire: OutletId = patch.tap_model(model, dequant.inputs[0])?;

                    wire = patch.wire_node(name.unwrap_or(&*dequant.name), op, [wire].as_ref())?[0];
                    patch.shunt_outside(model, OutletId::new(quant.id, 0), wire)?;
                    return Ok(Some(patch));
                }
            }
            let (input_facts, output_facts) = model.node_facts(quant.id)?;
            let invariants = quant
                .op
                .axes_mapping(&input_facts, &output_facts)
                .with_context(|| format!("Querying invariants for {quant}"))?;
            if invariants.is_element_wise_unary() {
                current = quant;
            } else {
                break;
            }
        }
        self.fold_clip(model, dequant)
    }

    as_op!();
}

element_wise_oop!(lookup_table,
 LookupTable {
     table: Box<dyn Lut>
 },
 [i8] => i8 |op, xs, ys| {
     ys.copy_from_slice(xs);
     unsafe {
         let casted = std::slice::from_raw_parts_mut(ys.as_mut_ptr() as *mut u8, ys.len());
         op.table.run(casted);
     }
     Ok(())
 },
 [u8] => u8 |op, xs, ys| {
     ys.copy_from_slice(xs);
     op.table.run(ys);
     Ok(())
 }
);

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct Scale;

impl crate::ops::binary::BinMiniOp for Scale {
    fn name(&self) -> &'static str {
        "Scale"
    }
    fn result_datum_type(&self, a: DatumType, b: DatumType) -> TractResult<DatumType> {
        if !a.is_float() {
            bail!("Scale left operand must be float, got {:?}", a);
        }
        Ok(b)
    }

    fn operating_datum_type(&self, a: DatumType, b: DatumType) -> TractResult<DatumType> {
        if !a.is_float() {
            bail!("Scale left operand must be float, got {:?}", a);
        }
        Ok(b)
    }

    fn eval_out_of_place(&self, c: &mut Tensor, a: &Tensor, b: &Tensor) -> TractResult<()> {
        let a = a.cast_to::<f32>()?;
        let a = a.to_plain_array_view::<f32>()?;
        unsafe fn eval_out_of_place_t<T: Datum + AsPrimitive<f32>>(
            c: &mut Tensor,
            a: &ndarray::ArrayViewD<f32>,
            b: &Tensor,
        ) where
            f32: AsPrimitive<T>,
        {
            let b = unsafe { b.to_array_view_unchecked::<T>() };
            let mut c = unsafe { c.to_array_view_mut_unchecked::<T>() };
            ndarray::Zip::from(&mut c)
                .and_broadcast(a)
                .and_broadcast(b)
                .for_each(|c, a, b| *c = scale_by(*b, *a))
        }
        unsafe { dispatch_numbers!(eval_out_of_place_t(b.datum_type())(c, &a, b)) }
        Ok(())
    }

    fn eval_in_a(&self, a: &mut Tensor, b: &Tensor) -> TractResult<()> {
        let mut a_plain = a.try_as_plain_ram_mut()?;
        let a = a_plain.to_array_view_mut::<f32>()?;
        let b = b.to_plain_array_view::<f32>()?;
        ndarray::Zip::from(a).and_broadcast(b).for_each(|a, b| *a = scale_by(*b, *a));
        Ok(())
    }

    fn is_commutative(&self) -> bool {
        false
    }

    fn declutter(
        &self,
        model: &TypedModel,
        node: &TypedNode,
    ) -> TractResult<Option<TypedModelPatch>> {
        let a = model.outlet_fact(node.inputs[0])?;
        if let Some(a) = &a.uniform {
            if a.cast_to_scalar::<f32>()? == 1. {
                return Ok(Some(TypedModelPatch::rewire(
                    model,
                    &node.inputs[1..2],
                    &[node.id.into()],
                    &|_p, x| Ok(x.into()),
                )?));
            } else if node.outputs[0].fact.datum_type == DatumType::I32 {
                let factor = a.cast_to_scalar::<f32>()?;
                let scaler = Scaler::new(factor, RoundingPolicy::Even);

                let op = ElementWiseOp(Box::new(QScale { scaler }), None);
                let patch =
                    TypedModelPatch::replace_single_op(model, node, &node.inputs[1..2], op)?;

                return Ok(Some(patch));
            }
        }
        Ok(None)
    }
}

#[inline]
pub(crate) fn scale_by<T: Datum + AsPrimitive<f32>>(b: T, a: f32) -> T
where
    f32: AsPrimitive<T>,
{
    let b = b.as_();
    (round_ties_to_even(b.abs() * a) * b.signum()).as_()
}

pub fn scale() -> TypedBinOp {
    TypedBinOp(Box::new(Scale), None)
}

/// Requantization in one pass: `Scale` by a (per-channel) f32 factor, then the zero point
/// added, then clamped to `dt`'s range and cast to it: the same arithmetic as the five ops
/// `matmul::quant::requant` wires otherwise, in the same order, so the results are
/// identical. `a` is the scale (f32), `b` the i32 accumulator; the output is `dt`, an 8-bit
/// type.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct ScaleToQ {
    pub zero_point: i32,
    pub dt: DatumType,
}

impl crate::ops::binary::BinMiniOp for ScaleToQ {
    fn name(&self) -> &'static str {
        "ScaleToQ"
    }
    fn result_datum_type(&self, a: DatumType, b: DatumType) -> TractResult<DatumType> {
        ensure!(a.is_float() && b == i32::datum_type(), "ScaleToQ wants f32 scales and i32 values");
        Ok(self.dt)
    }
    fn operating_datum_type(&self, _a: DatumType, b: DatumType) -> TractResult<DatumType> {
        Ok(b)
    }
    fn is_commutative(&self) -> bool {
        false
    }

    fn eval_out_of_place(&self, c: &mut Tensor, a: &Tensor, b: &Tensor) -> TractResult<()> {
        let a = a.cast_to::<f32>()?;
        let a = a.to_plain_array_view::<f32>()?;
        let b = b.to_plain_array_view::<i32>()?;
        let zp = self.zero_point;
        let dt = self.dt.unquantized();
        let (lo, hi) =
            (dt.min_value().cast_to_scalar::<i32>()?, dt.max_value().cast_to_scalar::<i32>()?);
        // scale_by, then Add (wrapping, as i32 Add does with overflow checks off), Min, Max
        let q = move |a: f32, b: i32| {
            let b = b as f32;
            let scaled = saturating_i32(round_ties_even_to_int(b.abs() * a) * b.signum());
            scaled.wrapping_add(zp).min(hi).max(lo)
        };
        // the usual case, one scale per channel along one axis of a plain tensor: by rows,
        // without ndarray's per-element broadcasting
        let per_axis = (b.shape() == c.shape() && b.is_standard_layout())
            .then(|| {
                let axes: Vec<usize> =
                    (0..a.ndim()).filter(|&i| a.shape()[i] != 1).collect::<Vec<_>>();
                match axes[..] {
                    [axis] if a.shape()[axis] == b.shape()[axis] => Some(axis),
                    _ => None,
                }
            })
            .flatten();
        if let (Some(axis), Some(bs)) = (per_axis, b.as_slice()) {
            let scales: Vec<f32> = a.iter().copied().collect();
            let inner = b.shape()[axis + 1..].iter().product::<usize>().max(1);
            // rows of `inner` values sharing a scale, spread over tract's threads
            fn rows<T: Send>(
                c: &mut [T],
                bs: &[i32],
                inner: usize,
                scales: &[f32],
                q: impl Fn(f32, i32) -> T + Sync + Send,
            ) -> TractResult<()> {
                let len = c.len();
                tract_linalg::multithread::par_chunks_mut(c, inner, len, |row0, out| {
                    for (i, (c, b)) in
                        out.chunks_mut(inner).zip(bs[row0 * inner..].chunks(inner)).enumerate()
                    {
                        let s = scales[(row0 + i) % scales.len()];
                        map_into(b, c, |b| q(s, b));
                    }
                    Ok(())
                })
            }
            if dt == u8::datum_type() {
                let cs = unsafe { c.as_slice_mut_unchecked::<u8>() };
                return rows(cs, bs, inner, &scales, move |s, b| q(s, b) as u8);
            } else if dt == i8::datum_type() {
                let cs = unsafe { c.as_slice_mut_unchecked::<i8>() };
                return rows(cs, bs, inner, &scales, move |s, b| q(s, b) as i8);
            }
        }
        if dt == u8::datum_type() {
            let mut c = unsafe { c.to_array_view_mut_unchecked::<u8>() };
            ndarray::Zip::from(&mut c)
                .and_broadcast(&a)
                .and_broadcast(&b)
                .for_each(|c, a, b| *c = q(*a, *b) as u8);
        } else if dt == i8::datum_type() {
            let mut c = unsafe { c.to_array_view_mut_unchecked::<i8>() };
            ndarray::Zip::from(&mut c)
                .and_broadcast(&a)
                .and_broadcast(&b)
                .for_each(|c, a, b| *c = q(*a, *b) as i8);
        } else {
            bail!("ScaleToQ to {:?}: only u8 and i8", self.dt);
        }
        Ok(())
    }

    fn eval_in_a(&self, _a: &mut Tensor, _b: &Tensor) -> TractResult<()> {
        bail!("ScaleToQ changes the type: never in place")
    }

    fn declutter(
        &self,
        model: &TypedModel,
        node: &TypedNode,
    ) -> TractResult<Option<TypedModelPatch>> {
        // the scale turned out uniform (known once constants are propagated): back to the
        // five-op chain, whose Scale becomes a QScale fused into the matrix product
        if model.outlet_fact(node.inputs[0])?.uniform.is_none() {
            return Ok(None);
        }
        let mut patch = TypedModelPatch::default();
        let scale = patch.tap_model(model, node.inputs[0])?;
        let wire = patch.tap_model(model, node.inputs[1])?;
        let zero_point =
            patch.add_const(format!("{}.zero_point", node.name), tensor0(self.zero_point))?;
        let out = crate::ops::matmul::quant::requant_chain(
            &mut patch, &node.name, wire, self.dt, scale, zero_point,
        )?;
        patch.shunt_outside(model, node.id.into(), out)?;
        Ok(Some(patch))
    }
}

pub fn scale_to_q(zero_point: i32, dt: DatumType) -> TypedBinOp {
    TypedBinOp(Box::new(ScaleToQ { zero_point, dt }), None)
}

/// Offsets i8 integers as u8 integers.
pub(crate) fn offset_i8_as_u8_elementwise(x: i8) -> u8 {
    (x as u8).wrapping_add(128)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetI8asU8;
impl ElementWiseMiniOp for OffsetI8asU8 {
    fn name(&self) -> String {
        format!("{}{}", self.prefix(), stringify!(OffsetI8asU8))
    }
    fn output_type(&self, input_type: DatumType) -> Option<DatumType> {
        Some(if let DatumType::QI8(qp) = input_type {
            let (zp, scale) = qp.zp_scale();
            DatumType::QU8(QParams::ZpScale { zero_point: zp + 128, scale })
        } else if input_type == DatumType::I8 {
            DatumType::U8
        } else {
            input_type
        })
    }
    fn eval_out_of_place(&self, t: &Tensor, out_dt: Option<DatumType>) -> TractResult<Tensor> {
        let output_type = out_dt.unwrap_or(self.output_type(t.datum_type()).unwrap());
        let mut dst = unsafe { Tensor::uninitialized_dt(output_type, t.shape())? };
        if t.datum_type().unquantized() == i8::datum_type() {
            t.try_as_plain_ram()?
                .as_slice::<i8>()?
                .iter()
                .zip(dst.try_as_plain_ram_mut()?.as_slice_mut::<u8>()?.iter_mut())
                .for_each(|(x, y)| *y = offset_i8_as_u8_elementwise(*x));
            return Ok(dst);
        }

        bail!("{} does not support {:?}", self.name(), t.datum_type());
    }
}

pub fn offset_i8_as_u8() -> ElementWiseOp {
    ElementWiseOp(Box::new(OffsetI8asU8 {}), None)
}

/// Offsets u8 integers as i8 integers.
pub(crate) fn offset_u8_as_i8_elementwise(x: u8) -> i8 {
    x.wrapping_sub(128) as i8
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetU8asI8;
impl ElementWiseMiniOp for OffsetU8asI8 {
    fn name(&self) -> String {
        format!("{}{}", self.prefix(), stringify!(OffsetU8asI8))
    }
    fn output_type(&self, input_type: DatumType) -> Option<DatumType> {
        Some(if let DatumType::QU8(qp) = input_type {
            let (zp, scale) = qp.zp_scale();
            DatumType::QI8(QParams::ZpScale { zero_point: zp - 128, scale })
        } else if input_type == DatumType::U8 {
            DatumType::I8
        } else {
            input_type
        })
    }
    fn eval_out_of_place(&self, t: &Tensor, out_dt: Option<DatumType>) -> TractResult<Tensor> {
        let output_type = out_dt.unwrap_or(self.output_type(t.datum_type()).unwrap());
        let mut dst = unsafe { Tensor::uninitialized_dt(output_type, t.shape())? };
        if t.datum_type().unquantized() == u8::datum_type() {
            t.try_as_plain_ram()?
                .as_slice::<u8>()?
                .iter()
                .zip(dst.try_as_plain_ram_mut()?.as_slice_mut::<i8>()?.iter_mut())
                .for_each(|(x, y)| *y = offset_u8_as_i8_elementwise(*x));
            return Ok(dst);
        }

        bail!("{} does not support {:?}", self.name(), t.datum_type());
    }
}
pub fn offset_u8_as_i8() -> ElementWiseOp {
    ElementWiseOp(Box::new(OffsetU8asI8 {}), None)
}

#[cfg(test)]
pub mod scale {
    use crate::internal::*;
    use crate::ops::einsum::EinSum;
    use crate::ops::math::round_ties_to_even;
    use proptest::prelude::*;

    fn test_scale(a: i8, b: i8, scale: f32) {
        let expected = (((a as i32) * (b as i32)) as f32) / scale;
        let expected = round_ties_to_even(expected.abs()) * expected.signum();
        let expected = (expected as i32).clamp(-128, 127);

        let input = tvec!(tensor2(&[[b]]).into_tvalue());
        let mut model = TypedModel::default();
        let a = model.add_const("a", tensor2(&[[a]])).unwrap();
        let b = model.add_source("b", i8::fact([1, 1])).unwrap();
        let bias = model.add_const("bias", tensor0(0i32)).unwrap();
        let a0 = model.add_const("a0", tensor0(0i8)).unwrap();
        let a_scale = model.add_const("a_scale", tensor0(1f32)).unwrap();
        let b0 = model.add_const("b0", tensor0(0i8)).unwrap();
        let b_scale = model.add_const("b_scale", tensor0(1f32)).unwrap();
        let c0 = model.add_const("c0", tensor0(0i8)).unwrap();
        let c_scale = model.add_const("c_scale", tensor0(scale)).unwrap();
        let op = EinSum {
            axes: "mk,kn,,,,,,,->mn".parse().unwrap(),
            operating_dt: i32::datum_type(),
            q_params: Some(i8::datum_type()),
        };
        let output = model
            .wire_node("mmm", op, &[a, b, bias, a0, a_scale, b0, b_scale, c0, c_scale])
            .unwrap();
        model.select_output_outlets(&output).unwrap();

        let plain = model.clone().into_runnable().unwrap().run(input.clone()).unwrap();
        let optim = model.into_optimized().unwrap().into_runnable().unwrap().run(input).unwrap();

        // The reference divides in f32, the plain path multiplies by the folded f32 scale, the
        // optimized one by its Q0_31 fixed-point form: three roundings that can straddle a tie.
        for (label, found) in [("plain", &plain[0]), ("optimized", &optim[0])] {
            let found = found.cast_to_scalar::<i32>().unwrap();
            assert!((found - expected).abs() <= 1, "{label}: expected {expected}, found {found}");
        }
    }

    proptest! {
        #[test]
        fn prop(a in any::<i8>(), b in any::<i8>(), scale in 0.00001f32..1000.) {
            test_scale(a, b, scale);
        }
    }

    #[test]
    fn t1() {
        test_scale(-117, 15, 37.753822);
    }

    #[test]
    fn t2() {
        test_scale(-4, -60, 475.21674);
    }

    #[test]
    fn t3() {
        test_scale(120, 101, 692.5715);
    }
}

#[cfg(test)]
mod scale_to_q_test {
    use super::*;
    use crate::ops::binary::BinMiniOp;

    #[test]
    fn round_ties_even_to_int_rounds_as_round_ties_to_even() {
        let mut xs = vec![0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 8388607.5, 8388608.0];
        xs.extend([16777217.0, 3e9, -3e9, f32::MAX, f32::MIN, f32::NAN, f32::INFINITY, -0.0]);
        xs.extend((0..20000).map(|i| (i as f32 - 10000.0) * 0.173));
        for x in xs {
            let (a, b) = (round_ties_even_to_int(x), round_ties_to_even(x));
            assert!(a == b || (a.is_nan() && b.is_nan()), "{x}: {a} against {b}");
            assert_eq!(a as i32, b as i32, "{x}");
        }
    }

    #[test]
    fn saturating_i32_is_as_i32() {
        let mut xs = vec![0.0f32, -0.0, 0.5, -0.5, 0.99999994, -1.0, 2147483520.0, 2147483648.0];
        xs.extend([-2147483648.0, -2147483904.0, 3e9, -3e9, f32::MAX, f32::MIN, f32::EPSILON]);
        xs.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN, f32::MIN_POSITIVE]);
        // every exponent, both signs, NaN payloads and subnormals among them
        xs.extend((0..200_000u32).map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761))));
        let mut ys = vec![0i32; xs.len()];
        map_into(&xs, &mut ys, saturating_i32);
        for (&x, &y) in xs.iter().zip(&ys) {
            assert_eq!(y, x as i32, "{x:e} ({:#x})", x.to_bits());
        }
    }

    /// A ReLU6 after an 8-bit dequantization is folded into it (no `Max`, `Min` left once
    /// optimized), with the same bits as the ops it replaces on every input; on both input
    /// types, and with the clip in either order.
    #[test]
    fn a_clip_after_a_dequantization_folds_into_it() -> TractResult<()> {
        use crate::ops::math::{max, min};
        for (dt, zp) in [(u8::datum_type(), 100), (i8::datum_type(), -7)] {
            for max_first in [true, false] {
                let mut model = TypedModel::default();
                let x = model.add_source("x", dt.fact([2, 128]))?;
                let mut wire =
                    model.wire_node("dq", DequantizeLinearF32::new(0.0471, zp), &[x])?[0];
                let zero = model.add_const("zero", tensor2(&[[0f32]]))?;
                let six = model.add_const("six", tensor2(&[[6f32]]))?;
                let ops = if max_first {
                    [(max(), zero), (min(), six)]
                } else {
                    [(min(), six), (max(), zero)]
                };
                for (ix, (op, k)) in ops.into_iter().enumerate() {
                    wire = model.wire_node(format!("clip{ix}"), op, &[wire, k])?[0];
                }
                model.select_output_outlets(&[wire])?;
                let input = if dt == u8::datum_type() {
                    Tensor::from_shape(&[2, 128], &(0..=255u8).collect::<Vec<_>>())?
                } else {
                    Tensor::from_shape(&[2, 128], &(-128..=127i8).collect::<Vec<_>>())?
                };
                let general =
                    model.clone().into_runnable()?.run(tvec!(input.clone().into_tvalue()))?;
                let optimized = model.into_optimized()?;
                let names: Vec<_> = optimized.nodes().iter().map(|n| n.op().name()).collect();
                assert!(
                    names.iter().all(|n| !n.contains("Max") && !n.contains("Min")),
                    "{names:?}"
                );
                let folded = optimized.into_runnable()?.run(tvec!(input.into_tvalue()))?;
                let bits = |t: &Tensor| -> Vec<u32> {
                    t.to_plain_array_view::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
                };
                assert_eq!(bits(&folded[0]), bits(&general[0]));
                assert!(general[0].to_plain_array_view::<f32>()?.iter().any(|&v| v == 6.0));
                assert!(general[0].to_plain_array_view::<f32>()?.iter().any(|&v| v == 0.0));
            }
        }
        Ok(())
    }

    /// The quantizing loops (through `map_into`: AVX2 where the CPU has it) against the
    /// scalar arithmetic with tract's own rounding, value for value.
    #[test]
    fn quantize_linear_loops_are_the_scalar_arithmetic() -> TractResult<()> {
        use crate::ops::element_wise::ElementWiseMiniOp;
        let mut xs: Vec<f32> = (0..20011).map(|i| (i as f32 - 10005.0) * 0.0731).collect();
        // (not beyond i32 once scaled: the zero point's add overflows there, as before)
        xs.extend([0.5, -0.5, 1.5, -2.5, 1e8, -1e8, 8388607.5, f32::NAN]);
        let t = tensor1(&xs);
        let scale = 0.37f32;
        let expected = |x: f32, zp: i32, lo: i32, hi: i32| {
            ((round_ties_to_even(x * scale) as i32) + zp).clamp(lo, hi)
        };
        let u8s = QuantizeLinearU8 { scale, zero_point: 3 }.eval_out_of_place(&t, None)?;
        let i8s = QuantizeLinearI8 { scale, zero_point: -5 }.eval_out_of_place(&t, None)?;
        let (u8s, i8s) = (u8s.to_plain_array_view::<u8>()?, i8s.to_plain_array_view::<i8>()?);
        for ((&x, &u), &i) in xs.iter().zip(u8s.iter()).zip(i8s.iter()) {
            assert_eq!(u as i32, expected(x, 3, 0, 255), "{x}");
            assert_eq!(i as i32, expected(x, -5, -128, 127), "{x}");
        }
        Ok(())
    }

    /// One pass against the chain it replaces: Scale, Add of the zero point, Min, Max, Cast.
    #[test]
    fn scale_to_q_is_the_five_op_requantization() -> TractResult<()> {
        let values: Vec<i32> =
            [0, 1, -1, 7, -7, 255, -256, 1 << 20, -(1 << 20), i32::MAX, i32::MIN, 12345, -54321]
                .into_iter()
                .chain((0..500).map(|i| (i * 7919 % 20011) - 10005))
                .collect();
        let rows = values.len() / 3;
        let b = Tensor::from_shape(&[3, rows], &values[..3 * rows])?;
        let a = Tensor::from_shape(&[3, 1], &[0.013f32, 0.5, 2.0])?;
        for (dt, zp) in [(u8::datum_type(), 120), (i8::datum_type(), -3), (u8::datum_type(), 0)] {
            let mut c = Tensor::zero_dt(dt, &[3, rows])?;
            ScaleToQ { zero_point: zp, dt }.eval_out_of_place(&mut c, &a, &b)?;
            let (lo, hi) = if dt == u8::datum_type() { (0, 255) } else { (-128, 127) };
            for (i, &v) in values[..3 * rows].iter().enumerate() {
                let s = a.to_plain_array_view::<f32>()?.as_slice().unwrap()[i / rows];
                let want = scale_by(v, s).wrapping_add(zp).min(hi).max(lo);
                let got = if dt == u8::datum_type() {
                    c.to_plain_array_view::<u8>()?.as_slice().unwrap()[i] as i32
                } else {
                    c.to_plain_array_view::<i8>()?.as_slice().unwrap()[i] as i32
                };
                assert_eq!(got, want, "{v} * {s} + {zp}");
            }
        }
        Ok(())
    }
}
