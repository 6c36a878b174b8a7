//! A reference interpreter for the ONNX operators the importer reads, on libtorch. It folds the
//! shape arithmetic exporters emit into constants and gives the concrete value of every tensor
//! on an example input, which the importer uses to recognise patterns and to check each mapped
//! layer against the file's own semantics. Each operator's evaluation is its entry in the
//! registry ([`super::ops`]); this module holds the shared helpers.

use super::proto::ONode;
use crate::error::{Error, Result};
use tch::{Kind, Tensor};

/// Normalises a possibly negative axis against `rank`.
pub fn axis(a: i64, rank: usize) -> Result<i64> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if !(0..r.max(1)).contains(&v) {
        crate::bail!("axis {a} is out of range for rank {rank}");
    }
    Ok(v)
}

/// ONNX `to` / element codes → libtorch kinds.
pub fn kind_of(code: i64) -> Result<Kind> {
    Ok(match code {
        1 => Kind::Float,
        2 => Kind::Uint8,
        3 => Kind::Int8,
        5 => Kind::Int16,
        6 => Kind::Int,
        7 => Kind::Int64,
        9 => Kind::Bool,
        10 => Kind::Half,
        11 => Kind::Double,
        16 => Kind::BFloat16,
        _ => crate::bail!("element type {code} is not supported"),
    })
}

/// The values of a 1-d integer tensor.
pub fn int_list(t: &Tensor) -> Result<Vec<i64>> {
    Ok(Vec::<i64>::try_from(t.f_to_kind(Kind::Int64)?.f_flatten(0, -1)?)?)
}

/// The first value of a tensor as a float.
pub fn float_scalar(t: &Tensor) -> Result<f64> {
    Ok(t.f_to_kind(Kind::Double)?.f_flatten(0, -1)?.f_double_value(&[0])?)
}

/// Whether a tensor holds integers (or booleans).
pub fn is_int(t: &Tensor) -> bool {
    !t.is_floating_point()
}

/// Two operands with ONNX's type rule (both the same type): an integer operand meeting a float
/// one is cast (exporters only mix them in shape arithmetic).
pub fn promote(a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor)> {
    if a.kind() == b.kind() {
        return Ok((a.shallow_clone(), b.shallow_clone()));
    }
    let k = if a.is_floating_point() {
        a.kind()
    } else if b.is_floating_point() {
        b.kind()
    } else {
        Kind::Int64
    };
    Ok((a.f_to_kind(k)?, b.f_to_kind(k)?))
}

/// Runs one node by its operator's registry entry, after checking its arity and attributes.
/// `xs` holds the inputs (None for omitted optional ones).
pub fn run(n: &ONode, xs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
    super::ops::evaluate(n, xs)
}

/// NumPy broadcast of two shapes.
pub fn broadcast_shape(a: &[i64], b: &[i64]) -> Result<Vec<i64>> {
    let r = a.len().max(b.len());
    let at = |s: &[i64], i: usize| if i + s.len() >= r { s[i + s.len() - r] } else { 1 };
    (0..r)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            (x, y) => Err(Error::invalid(format!("shapes {a:?} and {b:?} do not broadcast ({x} vs {y})"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::proto::AttrValue;
    use std::collections::HashMap;

    #[test]
    fn gather_counts_negative_indices_from_the_end() {
        let n = ONode {
            name: "g".into(),
            op: "Gather".into(),
            domain: String::new(),
            inputs: vec!["x".into(), "i".into()],
            outputs: vec!["y".into()],
            attrs: HashMap::from([("axis".to_string(), AttrValue::Int(1))]),
            position: 0,
            scope: None,
        };
        let x = Tensor::arange(6, (Kind::Int64, crate::device::HOST)).reshape([2, 3]);
        let y = run(&n, &[Some(&x), Some(&Tensor::from_slice(&[-1i64, 0]))]).unwrap().remove(0);
        assert!(y.equal(&Tensor::from_slice(&[2i64, 0, 5, 3]).reshape([2, 2])));
    }
}
