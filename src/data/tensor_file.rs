//! Datasets held as arrays (`--data tensors:DIR`), for users whose data is already tensors.
//!
//! `DIR` holds one file per split: `train` and `val`, optionally `test`, each either
//! - `SPLIT.npz` (numpy's `np.savez(path, x=x, y=y)` or `np.savez_compressed`), or
//! - `SPLIT.safetensors` (e.g. `safetensors.torch.save_file({"x": x, "y": y}, path)`),
//!
//! holding two arrays:
//! - `x`, shape (N, C, H, W): the model's inputs exactly as the model takes them (already
//!   resized and normalised). float32 is used as it is; float64, float16 and bfloat16 are
//!   converted to float32 (a value beyond float32's range is then an error, as is NaN or
//!   infinity anywhere). **uint8 is an error**: whether such pixels are to be scaled to [0, 1],
//!   and which normalisation follows, is the model's training convention, which relprune does not
//!   guess; convert them as in training, e.g. `x.astype(np.float32) / 255`, then normalise.
//!   Other dtypes (integers, bool) are errors too.
//!
//!   Or, for token models, `x` of shape (N, T): integer token ids, with an optional `mask` of the
//!   same shape (1 = token, 0 = padding at the end of the row, as tokenizers pad on the right);
//!   each sample keeps its tokens without the padding and batches are padded again to their
//!   longest sample (ids 0, mask 0). Every split holds the same kind.
//! - `y`, shape (N,): integer class labels in `0..K`: int8, int16, int32, int64 or uint8 (a
//!   `.npz` may also hold uint16, uint32 or uint64; safetensors files of those dtypes are not
//!   read, as libtorch has no such types).
//!
//! Classes: `DIR/classes.txt`, one name per line, gives K and the names; without it K is the
//! largest label of all splits plus one and the names are `0`, `1`, …, `K-1`. At least two
//! classes. Other arrays in a file are ignored.
//!
//! Everything is checked when the splits are loaded, before any work, and each defect is an
//! error naming the file: a missing file or array, a split with no samples, `x` not of rank 4,
//! `y` not of rank 1, different sample counts in `x` and `y`, a dtype that is not allowed, NaN or
//! infinite values, a label outside `0..K`, and splits whose samples differ in (C, H, W).
//!
//! Splits as for image folders: without `test`, `val` is halved by a fixed seed into validation
//! and test; validation and test are kept in a fixed random order (arrays are often stored class
//! by class), so their first n samples are a random sample of every class. The arrays are held
//! in memory as float32.

use super::text::TokenizedTexts;
use super::{permutation, Batch, Dataset, Splits, Subset};
use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{Kind, Tensor};

/// The file extensions a split may have, in the order they are looked for.
pub const EXTENSIONS: [&str; 2] = ["npz", "safetensors"];
/// Most classes a tensor dataset may have.
const MAX_CLASSES: i64 = 1 << 20;

const LAYOUT_HINT: &str = "give DIR/train and DIR/val (and optionally DIR/test), each a .npz (np.savez(path, \
    x=x, y=y)) or .safetensors file with arrays x of shape (N, C, H, W), float, and y of shape (N,), integer labels";

/// One split of a tensor dataset: the samples of one file, held as float32.
pub struct TensorFile {
    path: PathBuf,
    /// N × C × H × W floats (plain memory, so the dataset can be shared across threads).
    x: Vec<f32>,
    shape: [i64; 3],
    labels: Vec<i64>,
    class_names: Vec<String>,
}

/// The arrays of a split file, checked and converted.
struct Arrays {
    path: PathBuf,
    samples: Samples,
    labels: Vec<i64>,
}

/// A split's inputs: images, or token ids.
enum Samples {
    /// N × C × H × W floats.
    Images { x: Vec<f32>, shape: [i64; 3] },
    /// Each sample's token ids, its padding (per `mask`) removed.
    Tokens { ids: Vec<Vec<i64>> },
}

impl Samples {
    fn describe(&self) -> String {
        match self {
            Samples::Images { shape, .. } => format!("images of shape (C, H, W) = {shape:?}"),
            Samples::Tokens { .. } => "token ids".into(),
        }
    }
}

/// Most tokens per sample of a token dataset.
const MAX_TOKENS: i64 = 1 << 16;

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::CorruptData { what: "tensor dataset file".into(), path: path.into(), reason: reason.into() }
}

/// The file of split `name` in `dir`, if any; both a .npz and a .safetensors is an error.
fn find_split(dir: &Path, name: &str) -> Result<Option<PathBuf>> {
    let found: Vec<PathBuf> =
        EXTENSIONS.iter().map(|e| dir.join(format!("{name}.{e}"))).filter(|p| p.is_file()).collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        _ => crate::bail!(
            "tensor dataset {}: both {name}.npz and {name}.safetensors exist; keep one of them",
            dir.display()
        ),
    }
}

/// Reads and checks the splits of a tensor dataset in `dir` (see the module documentation).
pub fn load_splits(dir: &Path) -> Result<Splits> {
    if !dir.is_dir() {
        return Err(Error::DataNotFound {
            what: "tensor dataset folder".into(),
            path: dir.into(),
            hint: LAYOUT_HINT.into(),
        });
    }
    let required = |name: &str| -> Result<PathBuf> {
        find_split(dir, name)?.ok_or_else(|| {
            let npy = dir.join(format!("{name}.npy"));
            let hint = if npy.is_file() {
                format!(
                    "{} holds one array (np.save); save x and y together with np.savez(path, x=x, y=y)",
                    npy.display()
                )
            } else {
                LAYOUT_HINT.to_string()
            };
            Error::DataNotFound {
                what: format!("split `{name}` (`{name}.npz` or `{name}.safetensors`)"),
                path: dir.into(),
                hint,
            }
        })
    };
    let train = read_arrays(&required("train")?)?;
    let val = read_arrays(&required("val")?)?;
    let test = find_split(dir, "test")?.map(|p| read_arrays(&p)).transpose()?;
    let splits: Vec<&Arrays> = [Some(&train), Some(&val), test.as_ref()].into_iter().flatten().collect();
    for s in &splits[1..] {
        let same = match (&s.samples, &train.samples) {
            (Samples::Images { shape: a, .. }, Samples::Images { shape: b, .. }) => a == b,
            (Samples::Tokens { .. }, Samples::Tokens { .. }) => true,
            _ => false,
        };
        if !same {
            return Err(corrupt(
                &s.path,
                format!(
                    "its samples are {} but those of {} are {}; every split needs the same kind and shape",
                    s.samples.describe(),
                    train.path.display(),
                    train.samples.describe()
                ),
            ));
        }
    }
    let class_names = class_names(dir, &splits)?;
    for s in &splits {
        if let Some((i, l)) = s.labels.iter().enumerate().find(|(_, &l)| l >= class_names.len() as i64) {
            let source = if dir.join("classes.txt").is_file() { "classes.txt names" } else { "there are" };
            return Err(corrupt(
                &s.path,
                format!(
                    "y[{i}] = {l} is not a class: {source} {} classes (labels 0..={})",
                    class_names.len(),
                    class_names.len() - 1
                ),
            ));
        }
    }
    let dataset = |a: Arrays| -> Arc<dyn Dataset> {
        match a.samples {
            Samples::Images { x, shape } => {
                Arc::new(TensorFile { path: a.path, x, shape, labels: a.labels, class_names: class_names.clone() })
            }
            Samples::Tokens { ids } => {
                let description = format!(
                    "token file {} ({} samples, {} classes)",
                    a.path.display(),
                    a.labels.len(),
                    class_names.len()
                );
                Arc::new(TokenizedTexts::new(ids, a.labels, class_names.clone(), description))
            }
        }
    };
    let train = dataset(train);
    let val = dataset(val);
    let shuffled = |ds: Arc<dyn Dataset>| {
        let indices = permutation(ds.len(), super::fashion_mnist::SPLIT_SEED);
        Subset { data: ds, indices }
    };
    let (val, test) = match test {
        Some(t) => (shuffled(val), shuffled(dataset(t))),
        None => {
            let perm = permutation(val.len(), super::fashion_mnist::SPLIT_SEED);
            let half = perm.len() / 2;
            let (a, b) = (perm[..half].to_vec(), perm[half..].to_vec());
            (Subset { data: val.clone(), indices: a }, Subset { data: val, indices: b })
        }
    };
    Ok(Splits { train: Subset::all(train), val, test })
}

/// The class names: `classes.txt`, else `0..K-1` for the largest label K-1 of all splits.
fn class_names(dir: &Path, splits: &[&Arrays]) -> Result<Vec<String>> {
    let file = dir.join("classes.txt");
    let names: Vec<String> = if file.is_file() {
        let bad = |reason: String| Error::CorruptData { what: "class list".into(), path: file.clone(), reason };
        let text = crate::util::read_text(&file)?;
        // The limit before any per-line work (a file from elsewhere may hold millions of lines).
        if text.lines().nth(MAX_CLASSES as usize + 1).is_some() {
            return Err(bad(format!("it names more than the limit of {MAX_CLASSES} classes")));
        }
        let mut names: Vec<String> = text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect();
        if names.last().is_some_and(|l| l.trim().is_empty()) {
            names.pop();
        }
        if let Some(i) = names.iter().position(|n| n.trim().is_empty()) {
            return Err(bad(format!("line {} is empty; give one class name per line", i + 1)));
        }
        let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::with_capacity(names.len());
        for (i, n) in names.iter().enumerate() {
            if let Some(j) = seen.insert(n.as_str(), i) {
                return Err(bad(format!("`{n}` is on lines {} and {}; class names must differ", j + 1, i + 1)));
            }
        }
        if names.len() < 2 {
            return Err(bad(format!("it names {} class(es); a classifier needs at least two", names.len())));
        }
        names
    } else {
        let largest = splits.iter().flat_map(|s| s.labels.iter().copied()).max().unwrap_or(0);
        // Checked before the +1 (a label of i64::MAX would overflow) and before any name is built.
        if largest >= MAX_CLASSES {
            crate::bail!(
                "tensor dataset {}: the largest label is {largest}, more classes than the limit of {MAX_CLASSES}; \
                 labels are class indices 0..K-1 (a classes.txt names them)",
                dir.display()
            );
        }
        let k = largest + 1;
        if k < 2 {
            crate::bail!(
                "tensor dataset {}: every label is 0, so there is one class; a classifier needs at least two (or add \
                 a classes.txt naming them)",
                dir.display()
            );
        }
        (0..k).map(|i| i.to_string()).collect()
    };
    if names.len() as i64 > MAX_CLASSES {
        crate::bail!("tensor dataset {}: {} classes, more than the limit of {MAX_CLASSES}", dir.display(), names.len());
    }
    Ok(names)
}

/// Reads `x` and `y` (and `mask`, for token ids) of one split file and checks them.
fn read_arrays(path: &Path) -> Result<Arrays> {
    let is_npz = path.extension().is_some_and(|e| e == "npz");
    let (x, y, mask) = if is_npz { read_npz(path)? } else { read_safetensors(path)? };
    let xs = x.size();
    if xs.len() == 2 && is_integer(x.kind()) {
        let ids = read_tokens(path, &x, mask.as_ref())?;
        let labels = read_labels(path, &y, xs[0])?;
        return Ok(Arrays { path: path.into(), samples: Samples::Tokens { ids }, labels });
    }
    if mask.is_some() {
        return Err(corrupt(path, "it holds a `mask`, which goes with integer token ids x of shape (N, T)"));
    }
    let [n, c, h, w] = xs[..] else {
        return Err(corrupt(
            path,
            format!(
                "x has shape {xs:?} (rank {}); it must be images of rank 4, (N, C, H, W), or integer token ids of \
                 rank 2, (N, T)",
                xs.len()
            ),
        ));
    };
    let labels = read_labels(path, &y, n)?;
    if [c, h, w].contains(&0) {
        return Err(corrupt(path, format!("x has shape {xs:?}: each sample has no values")));
    }
    if c > crate::graph::MAX_FIELD || h > crate::graph::MAX_SPATIAL || w > crate::graph::MAX_SPATIAL {
        return Err(corrupt(path, format!("x has shape {xs:?}, beyond the limits on channels and image sides")));
    }
    let x = match x.kind() {
        Kind::Float => x,
        Kind::Double | Kind::Half | Kind::BFloat16 => x.f_to_kind(Kind::Float)?,
        Kind::Uint8 => {
            return Err(corrupt(
                path,
                "x is uint8; relprune does not guess how such pixels were scaled for the model: convert x as in \
                 training, e.g. x.astype(np.float32) / 255 and then the model's normalisation",
            ))
        }
        k => {
            return Err(corrupt(
                path,
                format!("x has dtype {}; x must hold floats (float32, float64 or float16)", kind_name(k)),
            ))
        }
    };
    // Per sample: does it hold a NaN or an infinity (also one made by the conversion to float32)?
    let bad = x.f_isfinite()?.f_logical_not()?.f_reshape([n, -1])?.f_any_dim(1, false)?;
    if bad.f_any()?.int64_value(&[]) != 0 {
        let first = bad.f_to_kind(Kind::Int64)?.f_argmax(0, false)?.int64_value(&[]);
        return Err(corrupt(
            path,
            format!("x holds NaN or infinite values (first in sample {first}); every input value must be finite"),
        ));
    }
    let x = Vec::<f32>::try_from(&x.f_contiguous()?.f_reshape([-1])?)?;
    Ok(Arrays { path: path.into(), samples: Samples::Images { x, shape: [c, h, w] }, labels })
}

fn is_integer(k: Kind) -> bool {
    matches!(k, Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8)
}

/// `y`: one non-negative integer label per sample, for `n` samples (≥ 1).
fn read_labels(path: &Path, y: &Tensor, n: i64) -> Result<Vec<i64>> {
    let ys = y.size();
    let [ny] = ys[..] else {
        return Err(corrupt(
            path,
            format!("y has shape {ys:?} (rank {}); it must have rank 1, (N,): one class index per sample", ys.len()),
        ));
    };
    if n != ny {
        return Err(corrupt(path, format!("x has {n} samples but y has {ny} labels; they must have as many")));
    }
    if n == 0 {
        return Err(corrupt(path, "the split is empty (x and y have no samples)"));
    }
    let labels: Vec<i64> = match y.kind() {
        k if is_integer(k) => Vec::<i64>::try_from(&y.f_to_kind(Kind::Int64)?.f_contiguous()?)?,
        k => {
            return Err(corrupt(
                path,
                format!("y has dtype {}; labels must be integers (e.g. y.astype(np.int64))", kind_name(k)),
            ))
        }
    };
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l < 0) {
        return Err(corrupt(path, format!("y[{i}] = {l} is negative; labels are class indices 0..K-1")));
    }
    Ok(labels)
}

/// Token ids `x` (N, T) and their attention `mask` (N, T; 1 = a token, 0 = padding after the
/// last token): each sample's ids without its padding. Without a mask every position is a token.
fn read_tokens(path: &Path, x: &Tensor, mask: Option<&Tensor>) -> Result<Vec<Vec<i64>>> {
    let [n, t] = x.size()[..] else { unreachable!("rank 2 checked") };
    if t == 0 || t > MAX_TOKENS {
        return Err(corrupt(path, format!("x has {t} tokens per sample; give 1 to {MAX_TOKENS}")));
    }
    let ids = Vec::<i64>::try_from(&x.f_to_kind(Kind::Int64)?.f_contiguous()?.f_reshape([-1])?)?;
    if let Some((i, v)) = ids.iter().enumerate().find(|(_, &v)| v < 0) {
        return Err(corrupt(path, format!("x holds the negative token id {v} (sample {})", i as i64 / t)));
    }
    let lengths: Vec<usize> = match mask {
        None => vec![t as usize; n as usize],
        Some(m) => {
            if m.size() != [n, t] || !is_integer(m.kind()) && m.kind() != Kind::Bool {
                return Err(corrupt(
                    path,
                    format!(
                        "mask has shape {:?}; it must be integers of x's shape {:?} (1 = token, 0 = padding)",
                        m.size(),
                        [n, t]
                    ),
                ));
            }
            let m = Vec::<i64>::try_from(&m.f_to_kind(Kind::Int64)?.f_contiguous()?.f_reshape([-1])?)?;
            m.chunks(t as usize)
                .enumerate()
                .map(|(i, row)| {
                    let len = row.iter().take_while(|&&v| v == 1).count();
                    if len == 0 || row[len..].iter().any(|&v| v != 0) {
                        return Err(corrupt(
                            path,
                            format!(
                                "mask row {i} is not 1s then 0s (tokens, then padding at the end) with at least one \
                                 token; relprune pads on the right"
                            ),
                        ));
                    }
                    Ok(len)
                })
                .collect::<Result<_>>()?
        }
    };
    Ok(ids.chunks(t as usize).zip(lengths).map(|(row, len)| row[..len].to_vec()).collect())
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Uint8 => "uint8",
        Kind::Int8 => "int8",
        Kind::Int16 => "int16",
        Kind::Int => "int32",
        Kind::Int64 => "int64",
        Kind::Half => "float16",
        Kind::BFloat16 => "bfloat16",
        Kind::Float => "float32",
        Kind::Double => "float64",
        Kind::Bool => "bool",
        _ => "of another kind",
    }
}

/// The arrays `x`, `y` and (if present) `mask` of a safetensors file.
fn read_safetensors(path: &Path) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let mut store = crate::graph::ParamStore::read_safetensors(path)?;
    let names: Vec<String> = store.keys().cloned().collect();
    let mut take = |name: &str| {
        store.remove(name).ok_or_else(|| {
            corrupt(path, format!("it has no tensor `{name}` (it has {}); save {{\"x\": x, \"y\": y}}", list(&names)))
        })
    };
    let mask = if names.iter().any(|n| n == "mask") { Some(take("mask")?) } else { None };
    Ok((take("x")?, take("y")?, mask))
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The arrays `x`, `y` and (if present) `mask` of a .npz file (a zip of .npy files, stored or
/// deflated).
fn read_npz(path: &Path) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    crate::util::regular_file(path)?;
    let file = std::fs::File::open(path).map_err(Error::io("open", path))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| corrupt(path, format!("not a .npz (zip) archive: {e}")))?;
    let names: Vec<String> = zip.file_names().map(|n| n.trim_end_matches(".npy").to_string()).collect();
    let mut take = |name: &str| -> Result<Tensor> {
        let mut member = zip.by_name(&format!("{name}.npy")).map_err(|_| {
            corrupt(
                path,
                format!("it has no array `{name}` (it has {}); save it with np.savez(path, x=x, y=y)", list(&names)),
            )
        })?;
        // The header first: the size it declares is bounded before anything is inflated (a
        // small deflated member may inflate to gigabytes), then exactly that much is read.
        let bad = |reason: String| corrupt(path, format!("array `{name}`: {reason}"));
        let mut bytes = Vec::new();
        let mut prefix = (&mut member).take(12);
        prefix.read_to_end(&mut bytes).map_err(|e| bad(e.to_string()))?;
        let (_, header_end) = npy_header_span(&bytes).map_err(bad)?;
        if header_end > MAX_NPY_HEADER {
            return Err(bad(format!("its header declares {header_end} bytes, more than a .npy header holds")));
        }
        (&mut member)
            .take((header_end - bytes.len()) as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(e.to_string()))?;
        let data = npy_header(&bytes).map_err(bad)?.data_bytes;
        if data > MAX_NPY_BYTES {
            return Err(bad(format!(
                "its header declares {data} bytes of data, more than the limit of {MAX_NPY_BYTES} for an array"
            )));
        }
        crate::util::check_affordable(data, format_args!("array `{name}` of {}", path.display()))?;
        // One byte more than declared, to tell a too-long member from an exact one.
        (&mut member).take(data + 1).read_to_end(&mut bytes).map_err(|e| bad(e.to_string()))?;
        parse_npy(&bytes).map_err(bad)
    };
    let mask = if names.iter().any(|n| n == "mask") { Some(take("mask")?) } else { None };
    Ok((take("x")?, take("y")?, mask))
}

/// An element type of the .npy format that a tensor dataset reads.
#[derive(Clone, Copy)]
enum NpyType {
    /// A type libtorch holds.
    Torch(Kind),
    /// Unsigned 16-, 32- or 64-bit integers (labels only), converted to int64.
    Unsigned,
}

/// Most bytes of one array's data in a tensor dataset (the machine's memory is the real bound;
/// this stops a file's header from asking for more than any sane dataset holds).
const MAX_NPY_BYTES: u64 = 1 << 36;
/// Most bytes of a .npy header (numpy writes a few hundred).
const MAX_NPY_HEADER: usize = 1 << 20;

/// Where the header text of a .npy file starts and ends (from its first 10 or 12 bytes).
fn npy_header_span(bytes: &[u8]) -> std::result::Result<(usize, usize), String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy array (bad magic bytes)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let end = start.checked_add(header_len).ok_or("the header length overflows")?;
    Ok((start, end))
}

/// A parsed .npy header.
struct NpyHeader {
    end: usize,
    shape: Vec<i64>,
    descr: String,
    ty: NpyType,
    size: usize,
    big_endian: bool,
    fortran: bool,
    data_bytes: u64,
}

/// Parses the header of a .npy file (`bytes` holds at least the header).
fn npy_header(bytes: &[u8]) -> std::result::Result<NpyHeader, String> {
    let (start, end) = npy_header_span(bytes)?;
    if end > bytes.len() {
        return Err("the header is truncated".into());
    }
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| "the header is not text")?;
    let descr = dict_value(header, "descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or("a structured dtype (record array) is not supported; save plain numeric arrays")?;
    let fortran = match dict_value(header, "fortran_order")? {
        v if v.starts_with("True") => true,
        v if v.starts_with("False") => false,
        v => return Err(format!("bad fortran_order {v}")),
    };
    let shape_text = dict_value(header, "shape")?;
    let shape_text = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| format!("bad shape {shape_text}"))?;
    let shape: Vec<i64> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i64>().map_err(|_| format!("bad dimension `{s}` in the shape")))
        .collect::<std::result::Result<_, _>>()?;
    if shape.len() > 32 {
        return Err(format!("{} dimensions", shape.len()));
    }
    let (order, code) = descr.split_at(descr.len().min(1));
    let big_endian = match order {
        "<" | "|" | "=" => false,
        ">" => true,
        _ => return Err(format!("unknown dtype `{descr}`")),
    };
    let (ty, size) = match code {
        "f2" => (NpyType::Torch(Kind::Half), 2),
        "f4" => (NpyType::Torch(Kind::Float), 4),
        "f8" => (NpyType::Torch(Kind::Double), 8),
        "u1" => (NpyType::Torch(Kind::Uint8), 1),
        "i1" => (NpyType::Torch(Kind::Int8), 1),
        "i2" => (NpyType::Torch(Kind::Int16), 2),
        "i4" => (NpyType::Torch(Kind::Int), 4),
        "i8" => (NpyType::Torch(Kind::Int64), 8),
        "b1" => (NpyType::Torch(Kind::Bool), 1),
        "u2" => (NpyType::Unsigned, 2),
        "u4" => (NpyType::Unsigned, 4),
        "u8" => (NpyType::Unsigned, 8),
        _ => return Err(format!("dtype `{descr}` is not supported; use float32 for x and an integer type for y")),
    };
    let count = shape
        .iter()
        .try_fold(1u64, |acc, &d| u64::try_from(d).ok().and_then(|d| acc.checked_mul(d)))
        .ok_or_else(|| format!("shape {shape:?} is invalid or too large"))?;
    let data_bytes = count.checked_mul(size as u64).ok_or_else(|| format!("shape {shape:?} is too large"))?;
    Ok(NpyHeader { end, shape, descr: descr.to_string(), ty, size, big_endian, fortran, data_bytes })
}

/// Parses one .npy file (format versions 1 to 3) into a tensor. C and Fortran order, either
/// byte order; the data must be exactly the header's shape × element size.
pub(crate) fn parse_npy(bytes: &[u8]) -> std::result::Result<Tensor, String> {
    let NpyHeader { end, shape, descr, ty, size, big_endian, fortran, data_bytes: nbytes } = npy_header(bytes)?;
    let data = &bytes[end..];
    if nbytes != data.len() as u64 {
        return Err(format!(
            "shape {shape:?} of dtype `{descr}` needs {nbytes} bytes of data but the array holds {} (truncated?)",
            data.len()
        ));
    }
    let mut data = data.to_vec();
    if big_endian && size > 1 {
        data.chunks_exact_mut(size).for_each(<[u8]>::reverse);
    }
    // Fortran order: the data is the C-order array of the reversed shape, transposed.
    let stored: Vec<i64> = if fortran { shape.iter().rev().copied().collect() } else { shape.clone() };
    let t = match ty {
        NpyType::Torch(kind) => {
            Tensor::f_from_data_size(&data, &stored, kind).map_err(|e| crate::error::torch_message(&e))?
        }
        NpyType::Unsigned => {
            let values: Vec<i64> = data
                .chunks_exact(size)
                .map(|b| {
                    let mut v = [0u8; 8];
                    v[..size].copy_from_slice(b);
                    i64::try_from(u64::from_le_bytes(v)).map_err(|_| "a value beyond int64".to_string())
                })
                .collect::<std::result::Result<_, _>>()?;
            Tensor::from_slice(&values).f_reshape(&stored).map_err(|e| crate::error::torch_message(&e))?
        }
    };
    if fortran {
        let dims: Vec<i64> = (0..shape.len() as i64).rev().collect();
        return t.f_permute(&dims).and_then(|t| t.f_contiguous()).map_err(|e| crate::error::torch_message(&e));
    }
    Ok(t)
}

/// The text after `'key':` in a .npy header dict, trimmed.
fn dict_value<'a>(header: &'a str, key: &str) -> std::result::Result<&'a str, String> {
    let pat = format!("'{key}':");
    let at = header.find(&pat).ok_or_else(|| format!("the header has no `{key}`"))?;
    Ok(header[at + pat.len()..].trim_start())
}

impl TensorFile {
    /// The file the samples come from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Dataset for TensorFile {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn labels(&self) -> &[i64] {
        &self.labels
    }
    fn class_names(&self) -> &[String] {
        &self.class_names
    }
    fn batch(&self, indices: &[usize]) -> Result<Batch> {
        let [c, h, w] = self.shape;
        let per = (c * h * w) as usize; // checked when read: N × C × H × W floats are in memory
        let mut data = Vec::with_capacity(indices.len().saturating_mul(per));
        for &i in indices {
            if i >= self.labels.len() {
                crate::bail!("sample {i} is out of range: {} holds {} samples", self.path.display(), self.labels.len());
            }
            data.extend_from_slice(&self.x[i * per..(i + 1) * per]);
        }
        let x = Tensor::from_slice(&data).f_reshape([indices.len() as i64, c, h, w])?;
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i]).collect();
        Ok(Batch { inputs: vec![x], labels: Tensor::from_slice(&labels) })
    }
    fn sample_shape(&self) -> Option<[i64; 3]> {
        Some(self.shape)
    }
    fn describe(&self) -> String {
        let [c, h, w] = self.shape;
        format!(
            "tensor file {} ({} samples of {c}×{h}×{w}, {} classes)",
            self.path.display(),
            self.labels.len(),
            self.class_names.len()
        )
    }
}
