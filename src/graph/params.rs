//! Named tensors (parameters and buffers) and their safetensors form.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// Parameters and buffers of a graph, keyed by their PyTorch `state_dict` names.
#[derive(Default)]
pub struct ParamStore {
    map: BTreeMap<String, Tensor>,
}

impl ParamStore {
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.map.get(key)
    }
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Tensor> {
        self.map.get_mut(key)
    }
    pub fn insert(&mut self, key: String, t: Tensor) {
        self.map.insert(key, t);
    }
    pub fn remove(&mut self, key: &str) -> Option<Tensor> {
        self.map.remove(key)
    }
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.map.keys()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.map.iter()
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A store sharing the same tensors (no data copied).
    pub fn clone_shallow(&self) -> Self {
        ParamStore { map: self.map.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect() }
    }

    /// A store with copies of all tensors.
    pub fn deep_clone(&self) -> Self {
        ParamStore { map: self.map.iter().map(|(k, v)| (k.clone(), v.detach().copy())).collect() }
    }

    /// Reads every tensor of a safetensors file. The file is untrusted: its header is checked
    /// against the file's real size (overflow-checked) before anything is allocated, and every
    /// defect is an [`Error::CorruptData`] naming the cause, never a panic.
    pub fn read_safetensors(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::DataNotFound {
                what: "weights file".into(),
                path: path.to_path_buf(),
                hint: "pass the path of a .safetensors file (in PyTorch: \
                       safetensors.torch.save_file(model.state_dict(), path))"
                    .into(),
            });
        }
        let bytes = crate::util::read_file(path)?;
        let map = parse_safetensors(&bytes).map_err(|reason| Error::CorruptData {
            what: "safetensors file".into(),
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(ParamStore { map })
    }

    /// The safetensors bytes of every tensor: the layout of the `safetensors` crate (tensors
    /// ordered by descending dtype alignment, then by name; header padded to 8 bytes), which
    /// PyTorch's `safetensors.torch.load_file` reads.
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>> {
        let mut entries = Vec::with_capacity(self.map.len());
        for (name, t) in &self.map {
            if t.is_sparse() {
                crate::bail!("cannot save tensor `{name}` as safetensors: it is sparse");
            }
            let Some(dtype) = Dtype::of_kind(t.kind()) else {
                crate::bail!("cannot save tensor `{name}` as safetensors: unsupported kind {:?}", t.kind());
            };
            entries.push((name, dtype, crate::device::to_host(&t.detach()).contiguous()));
        }
        entries.sort_by(|(ln, ld, _), (rn, rd, _)| rd.alignment_rank.cmp(&ld.alignment_rank).then(ln.cmp(rn)));
        // The metadata PyTorch's writer puts there; transformers refuses a file without it.
        let mut header = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
        let mut offset = 0usize;
        for (name, dtype, t) in &entries {
            let len = t.numel() * dtype.size;
            let shape: Vec<String> = t.size().iter().map(|d| d.to_string()).collect();
            header.push(',');
            header += &serde_json::to_string(name.as_str()).map_err(Error::json("safetensors header"))?;
            header += &format!(
                ":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{offset},{}]}}",
                dtype.name,
                shape.join(","),
                offset + len
            );
            offset += len;
        }
        header.push('}');
        let padded = header.len().div_ceil(8) * 8;
        let mut header = header.into_bytes();
        header.resize(padded, b' ');
        let mut out = Vec::with_capacity(8 + header.len() + offset);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        for (_, dtype, t) in &entries {
            let start = out.len();
            out.resize(start + t.numel() * dtype.size, 0);
            t.f_copy_data_u8(&mut out[start..], t.numel())?;
        }
        Ok(out)
    }

    /// Writes every tensor to a safetensors file; the file appears complete or not at all. The
    /// bytes go through std I/O, so a full disk is reported as such.
    pub fn write_safetensors(&self, path: &Path) -> Result<()> {
        let bytes = self.to_safetensors_bytes()?;
        crate::util::write_atomic(path, &bytes)
    }
}

/// A safetensors element type: its name in the header, the tch kind, the element size and the
/// position in the `safetensors` crate's alignment order (which sorts tensors when writing).
#[derive(Clone, Copy)]
struct Dtype {
    name: &'static str,
    kind: Kind,
    size: usize,
    alignment_rank: u8,
}

/// The dtypes tch converts, in the `safetensors` crate's order.
const DTYPES: [Dtype; 10] = [
    Dtype { name: "BOOL", kind: Kind::Bool, size: 1, alignment_rank: 0 },
    Dtype { name: "U8", kind: Kind::Uint8, size: 1, alignment_rank: 1 },
    Dtype { name: "I8", kind: Kind::Int8, size: 1, alignment_rank: 2 },
    Dtype { name: "I16", kind: Kind::Int16, size: 2, alignment_rank: 3 },
    Dtype { name: "F16", kind: Kind::Half, size: 2, alignment_rank: 5 },
    Dtype { name: "BF16", kind: Kind::BFloat16, size: 2, alignment_rank: 6 },
    Dtype { name: "I32", kind: Kind::Int, size: 4, alignment_rank: 7 },
    Dtype { name: "F32", kind: Kind::Float, size: 4, alignment_rank: 9 },
    Dtype { name: "F64", kind: Kind::Double, size: 8, alignment_rank: 10 },
    Dtype { name: "I64", kind: Kind::Int64, size: 8, alignment_rank: 11 },
];

/// Dtypes of the format that libtorch (through tch) cannot hold.
const UNSUPPORTED_DTYPES: [&str; 6] = ["U16", "U32", "U64", "F8_E5M2", "F8_E4M3", "F8_E8M0"];

impl Dtype {
    fn of_kind(kind: Kind) -> Option<Dtype> {
        DTYPES.iter().copied().find(|d| d.kind == kind)
    }
    fn of_name(name: &str) -> Option<Dtype> {
        DTYPES.iter().copied().find(|d| d.name == name)
    }
}

/// Largest header the `safetensors` crate accepts (100 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Most dimensions a stored tensor may have.
const MAX_DIMS: usize = 64;

/// One tensor entry of a safetensors header.
#[derive(serde::Deserialize)]
struct TensorInfo {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// Parses a whole safetensors file, checking every size against the real byte count.
fn parse_safetensors(bytes: &[u8]) -> std::result::Result<BTreeMap<String, Tensor>, String> {
    let Some((len_field, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(format!("the file is {} bytes, too short for the 8-byte header length", bytes.len()));
    };
    let header_len = u64::from_le_bytes(*len_field);
    let available = rest.len() as u64;
    if header_len > available {
        return Err(format!(
            "the header length field claims {header_len} bytes but only {available} bytes follow \
             (truncated or not a safetensors file)"
        ));
    }
    if header_len > MAX_HEADER_BYTES {
        return Err(format!("the header of {header_len} bytes exceeds the format's limit of {MAX_HEADER_BYTES}"));
    }
    let (header, data) = rest.split_at(header_len as usize);
    let text = std::str::from_utf8(header).map_err(|e| format!("the header is not UTF-8: {e}"))?;
    if !text.starts_with('{') {
        return Err("the header does not start with `{`".into());
    }
    let entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("the header is not a JSON object: {e}"))?;
    let mut infos = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        if name == "__metadata__" {
            let ok = value.as_object().is_some_and(|m| m.values().all(serde_json::Value::is_string));
            if !ok {
                return Err("`__metadata__` is not a map of strings".into());
            }
            continue;
        }
        let info: TensorInfo =
            serde_json::from_value(value).map_err(|e| format!("tensor `{name}` has an invalid entry: {e}"))?;
        let dtype = match Dtype::of_name(&info.dtype) {
            Some(d) => d,
            None if UNSUPPORTED_DTYPES.contains(&info.dtype.as_str()) => {
                return Err(format!("tensor `{name}` has dtype {} which libtorch cannot load", info.dtype))
            }
            None => return Err(format!("tensor `{name}` has unknown dtype `{}`", info.dtype)),
        };
        if info.shape.len() > MAX_DIMS {
            return Err(format!("tensor `{name}` has {} dimensions (at most {MAX_DIMS})", info.shape.len()));
        }
        let shape: Vec<i64> = info
            .shape
            .iter()
            .map(|&d| i64::try_from(d))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| format!("tensor `{name}` has a dimension beyond 2^63 in {:?}", info.shape))?;
        let nbytes = info
            .shape
            .iter()
            .try_fold(dtype.size as u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("tensor `{name}` of shape {:?} overflows 64-bit sizes", info.shape))?;
        let [start, end] = info.data_offsets;
        if start > end || end > data.len() as u64 {
            return Err(format!(
                "tensor `{name}` has data offsets [{start}, {end}] outside the {} data bytes of the file",
                data.len()
            ));
        }
        if end - start != nbytes {
            return Err(format!(
                "tensor `{name}` of dtype {} and shape {:?} needs {nbytes} bytes but its offsets span {}",
                dtype.name,
                info.shape,
                end - start
            ));
        }
        infos.push((name, dtype, shape, start as usize, end as usize));
    }
    // The data must be covered exactly once, without gaps or overlaps (as the format requires).
    infos.sort_by_key(|&(_, _, _, start, end)| (start, end));
    let mut covered = 0;
    for (name, _, _, start, end) in &infos {
        if *start != covered {
            return Err(format!("tensor `{name}` starts at byte {start} of the data, expected {covered}"));
        }
        covered = *end;
    }
    if covered != data.len() {
        return Err(format!("the tensors cover {covered} bytes but the file holds {} bytes of data", data.len()));
    }
    let mut map = BTreeMap::new();
    for (name, dtype, shape, start, end) in infos {
        let t = Tensor::f_from_data_size(&data[start..end], &shape, dtype.kind)
            .map_err(|e| format!("tensor `{name}`: {e}"))?;
        map.insert(name, t);
    }
    Ok(map)
}
