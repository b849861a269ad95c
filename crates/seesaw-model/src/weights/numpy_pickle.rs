//! detectron2's model-zoo weights: a Python pickle of numpy arrays, read with serde-pickle.

use std::collections::BTreeMap;
use std::path::Path;

use burn::store::bridge;

use super::{PackTensor, weights_error};
use crate::error::Result;

/// The arrays of a Python pickle of numpy arrays, as detectron2's model zoo stores weights
/// (`{"model": {name: ndarray}, "__author__": ...}`; the dict itself when it has no `model`),
/// read with serde-pickle, and the key they sat under. numpy pickles an array as
/// `numpy.core.multiarray._reconstruct` then `BUILD` with the state `(version, shape, dtype,
/// is_fortran, raw bytes)`. The dtype's name (`f4`, `i8`, ...) survives the reading only where
/// a later array refers back to a dtype pickled before; there a non-float type is refused by
/// name. Elsewhere the element type is told by the bytes per element (4: float32, 8: float64,
/// 2: float16; detectron2's files hold float arrays only), and values that are not finite
/// floats, which is what small integers look like read as floats, are refused.
///
/// # Errors
/// A file that is not such a pickle, a key that is not a string, an entry that is not an
/// array, a big-endian or Fortran-ordered array, or bytes that do not fit the shape.
pub(super) fn read_numpy_pickle(
    path: &Path,
) -> Result<(BTreeMap<String, PackTensor>, Option<String>)> {
    use serde_pickle::{DeOptions, HashableValue, Value};
    let file = std::fs::File::open(path).map_err(|e| weights_error(path, e))?;
    let root = serde_pickle::value_from_reader(
        std::io::BufReader::new(file),
        DeOptions::new()
            .decode_strings()
            .keep_restore_state()
            .replace_unresolved_globals()
            .replace_recursive_structures(),
    )
    .map_err(|e| weights_error(path, format!("not a readable pickle: {e}")))?;
    let Value::Dict(mut top) = root else {
        return Err(weights_error(path, "the pickle is not a dict of arrays"));
    };
    let (entries, key) = match top.remove(&HashableValue::String("model".into())) {
        Some(Value::Dict(model)) => (model, Some("model".to_string())),
        Some(_) => return Err(weights_error(path, "`model` is not a dict of arrays")),
        None => (top, None),
    };
    let mut tensors = BTreeMap::new();
    for (k, v) in entries {
        let name = match k {
            HashableValue::String(s) => s,
            other => {
                return Err(weights_error(
                    path,
                    format!("a key that is not a string: {other:?}"),
                ));
            }
        };
        let bad = |why: &str| weights_error(path, format!("`{name}`: {why}"));
        let Value::Tuple(state) = v else {
            return Err(bad("not a numpy array"));
        };
        let [_, Value::Tuple(shape), dtype, Value::Bool(fortran), raw] = state.as_slice() else {
            return Err(bad(
                "not a numpy array (state other than (version, shape, dtype, fortran, data))",
            ));
        };
        if *fortran {
            return Err(bad("a Fortran-ordered array"));
        }
        // The dtype is `numpy.dtype(name, align, copy)` followed by BUILD with its state: the
        // reader gives the state where the dtype is first pickled and, where a later array
        // refers back to it, the call's arguments, which name the type.
        let named = match dtype {
            Value::Tuple(d) => match d.first() {
                Some(Value::String(name)) => Some(name.clone()),
                _ => {
                    if matches!(d.get(1), Some(Value::String(o)) if o == ">") {
                        return Err(bad("a big-endian array"));
                    }
                    None
                }
            },
            _ => None,
        };
        if let Some(name) = &named {
            let kind = name.trim_start_matches(['<', '=', '|']);
            if name.starts_with('>') {
                return Err(bad("a big-endian array"));
            }
            if !matches!(kind, "f2" | "f4" | "f8") {
                return Err(bad(&format!(
                    "an array of type {name}; only float arrays (f2, f4, f8) are weights"
                )));
            }
        }
        let shape: Vec<usize> = shape
            .iter()
            .map(|d| match d {
                Value::I64(n) if *n >= 0 => Ok(*n as usize),
                _ => Err(bad("a shape that is not a tuple of sizes")),
            })
            .collect::<Result<_>>()?;
        let raw = match raw {
            Value::Bytes(b) => b.as_slice(),
            _ => return Err(bad("array data that is not bytes")),
        };
        let numel: usize = shape.iter().product();
        // Where the type is not named, an integer array read as floats shows up as all its
        // non-zero values subnormal (small integers' bit patterns) or as non-finite values:
        // refused rather than loaded.
        fn integer_like<T: Copy>(
            v: &[T],
            zero: impl Fn(T) -> bool,
            odd: impl Fn(T) -> bool,
        ) -> bool {
            let nonzero: Vec<T> = v.iter().copied().filter(|&x| !zero(x)).collect();
            !nonzero.is_empty() && nonzero.iter().all(|&x| odd(x))
        }
        let (values, suspicious): (Vec<f32>, bool) = match (numel, raw.len()) {
            (0, 0) => (vec![], false),
            (n, len) if len == 4 * n => {
                let v: Vec<f32> = raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                let odd = v.iter().any(|x| !x.is_finite())
                    || integer_like(&v, |x| x == 0.0, f32::is_subnormal);
                (v, odd)
            }
            (n, len) if len == 8 * n => {
                let v: Vec<f64> = raw
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect();
                let odd = v.iter().any(|x| !x.is_finite())
                    || integer_like(&v, |x| x == 0.0, f64::is_subnormal);
                (v.into_iter().map(|x| x as f32).collect(), odd)
            }
            (n, len) if len == 2 * n => (
                raw.chunks_exact(2)
                    .map(|c| burn::tensor::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                false,
            ),
            (n, len) => {
                return Err(bad(&format!(
                    "{len} bytes for {n} elements of a float type"
                )));
            }
        };
        if named.is_none() && suspicious {
            return Err(bad(
                "values that are not finite floats (an integer array? only float arrays are \
                 weights)",
            ));
        }
        let data = burn::tensor::TensorData::new(values, shape);
        tensors.insert(name.clone(), bridge::from_data(data, name, None));
    }
    Ok((tensors, key))
}
