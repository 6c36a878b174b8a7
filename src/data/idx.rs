//! The IDX file format of (Fashion-)MNIST: a big-endian header, then raw bytes. Files may be
//! gzip-compressed.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// A decoded IDX file of unsigned bytes.
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::CorruptData { what: "IDX file".into(), path: path.to_path_buf(), reason: reason.into() }
}

/// Reads an IDX file of type unsigned byte (0x08), gzip-compressed or not.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let raw = crate::util::read_file(path)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) { inflate(path, &raw)? } else { raw };
    parse_idx(&bytes).map_err(|reason| corrupt(path, reason))
}

/// Inflates a gzip-compressed IDX file: the header first, then at most the bytes it declares
/// (plus one, to tell a too-long stream from an exact one), so a small file that would inflate
/// to gigabytes is refused before they are allocated.
fn inflate(path: &Path, raw: &[u8]) -> Result<Vec<u8>> {
    let damaged = |e: std::io::Error| corrupt(path, format!("gzip stream is damaged: {e}"));
    let mut stream = flate2::read::GzDecoder::new(raw);
    let mut out = Vec::new();
    (&mut stream).take(4).read_to_end(&mut out).map_err(damaged)?;
    let ndim = out.get(3).copied().unwrap_or(0) as u64;
    (&mut stream).take(4 * ndim).read_to_end(&mut out).map_err(damaged)?;
    let declared = out
        .get(4..)
        .unwrap_or_default()
        .chunks_exact(4)
        .try_fold(1u64, |acc, c| acc.checked_mul(u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64));
    // A header parse_idx will refuse: read no data, and let it say why.
    let Some(data) = declared.filter(|_| out.len() as u64 == 4 + 4 * ndim) else {
        return Ok(out);
    };
    crate::util::check_affordable(data, "the data its header declares").map_err(|e| corrupt(path, e.to_string()))?;
    let header = out.len() as u64;
    stream.take(data + 1).read_to_end(&mut out).map_err(damaged)?;
    if out.len() as u64 > header + data {
        return Err(corrupt(path, format!("it inflates past the {data} bytes of data its header declares")));
    }
    Ok(out)
}

/// Parses IDX bytes (already decompressed). The header's dimensions are checked against the
/// real data length with overflow-checked arithmetic before anything is allocated.
pub fn parse_idx(bytes: &[u8]) -> std::result::Result<IdxArray, String> {
    if bytes.is_empty() {
        return Err("the file is empty (0 bytes)".into());
    }
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err("missing IDX magic number (expected 0x0000 at the start)".into());
    }
    if bytes[2] != 0x08 {
        return Err(format!("element type 0x{:02x} is not unsigned byte (0x08)", bytes[2]));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if ndim == 0 || bytes.len() < header {
        return Err(format!("header declares {ndim} dimensions but the file is only {} bytes", bytes.len()));
    }
    let dims: Vec<usize> =
        bytes[4..header].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let available = bytes.len() - header;
    let n = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| {
        format!(
            "dimensions {dims:?} multiply past {} bytes (the header is corrupt); the file holds {available} bytes of data",
            usize::MAX
        )
    })?;
    if available != n {
        return Err(format!("dimensions {dims:?} need {n} bytes of data but the file holds {available}"));
    }
    Ok(IdxArray { dims, data: bytes[header..].to_vec() })
}

/// Encodes bytes as IDX (used by tests to write small synthetic files).
///
/// # Panics
/// If there are more than 255 dimensions or a dimension exceeds `u32::MAX` (the format cannot
/// hold them; a caller bug, never a property of input data).
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let ndim = u8::try_from(dims.len()).expect("IDX holds at most 255 dimensions");
    let mut out = vec![0, 0, 0x08, ndim];
    for &d in dims {
        out.extend_from_slice(&u32::try_from(d).expect("IDX dimensions fit in 32 bits").to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}
