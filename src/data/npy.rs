//! Single arrays as NumPy `.npy` files: what `relprune run` reads as model inputs and writes as
//! outputs, so a user compares relprune with their framework in one line.

use crate::error::{Error, Result};
use std::path::Path;
use tch::{Kind, Tensor};

/// Reads a `.npy` file (any byte order, C or Fortran order).
pub fn read(path: &Path) -> Result<Tensor> {
    let bytes = crate::util::read_file(path)?;
    super::tensor_file::parse_npy(&bytes).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

/// Writes `t` as a little-endian, C-order `.npy` file (float32 or int64), atomically.
pub fn write(path: &Path, t: &Tensor) -> Result<()> {
    let t = t.f_contiguous()?;
    let (descr, data): (&str, Vec<u8>) = if t.is_floating_point() {
        let v = Vec::<f32>::try_from(t.f_to_kind(Kind::Float)?.f_flatten(0, -1)?)?;
        ("<f4", v.iter().flat_map(|x| x.to_le_bytes()).collect())
    } else {
        let v = Vec::<i64>::try_from(t.f_to_kind(Kind::Int64)?.f_flatten(0, -1)?)?;
        ("<i8", v.iter().flat_map(|x| x.to_le_bytes()).collect())
    };
    let dims: Vec<String> = t.size().iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Version 1.0: magic, version, 2-byte header length; data aligned to 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&data);
    crate::util::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for t in [
            tch::Tensor::from_slice(&[1.5f32, -2.0, 3.25, 0.0, 7.0, 8.0]).reshape([2, 3]),
            tch::Tensor::from_slice(&[3i64, 1, 4]),
        ] {
            let p = dir.path().join("a.npy");
            super::write(&p, &t).unwrap();
            assert!(super::read(&p).unwrap().equal(&t));
        }
    }
}
