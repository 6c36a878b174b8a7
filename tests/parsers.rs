//! Parsers of untrusted files answer Ok or Err, never panic and never hang: valid IDX,
//! safetensors, graph.json and search-space files are truncated at many lengths, bit-flipped
//! and overwritten (seeded, so every failure is reproducible), and each parse runs under
//! `catch_unwind` in a time-boxed worker that names the mutation behind any panic.

use rand::RngExt;
use relprune::data::fashion_mnist::{self, GreyImages};
use relprune::data::idx::{encode_idx, parse_idx, read_idx};
use relprune::data::Dataset;
use relprune::graph::{Graph, InputKind, Mode, ParamStore};
use relprune::models::Architecture;
use relprune::optimize::{ModelTraits, SearchSpace};
use relprune::Error;
use serde_json::Value;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use tch::{Device, Kind, Tensor};

/// Wall-clock budget of one format's whole mutation loop.
const LIMIT: Duration = Duration::from_secs(60);

/// A damaged copy of a valid file, with how it was damaged.
struct Mutant {
    what: String,
    bytes: Vec<u8>,
}

/// Truncations (every length for small files, else 200 random cut points), single- and
/// multi-bit flips and byte overwrites of `valid`: about `n_random` of the latter.
fn byte_mutants(valid: &[u8], seed: u64, n_random: usize) -> Vec<Mutant> {
    let mut rng = relprune::util::rng(seed);
    let len = valid.len();
    let mut out = Vec::new();
    let cuts: Vec<usize> = if len <= 600 {
        (0..len).collect()
    } else {
        let mut c: Vec<usize> = vec![0, 1, 7, 8, 9, len / 2, len - 1];
        c.extend((0..200).map(|_| rng.random_range(0..len)));
        c
    };
    for cut in cuts {
        out.push(Mutant { what: format!("truncated to {cut} of {len} bytes"), bytes: valid[..cut].to_vec() });
    }
    const SPECIAL: [u8; 8] = [0x00, 0xff, 0x7f, 0x80, b'"', b'{', b'9', b'-'];
    for k in 0..n_random {
        let mut bytes = valid.to_vec();
        let what = match k % 3 {
            0 => {
                let (i, b) = (rng.random_range(0..len), rng.random_range(0..8u32));
                bytes[i] ^= 1 << b;
                format!("bit {b} of byte {i} flipped")
            }
            1 => {
                let n = rng.random_range(2..=8);
                let flips: Vec<(usize, u32)> =
                    (0..n).map(|_| (rng.random_range(0..len), rng.random_range(0..8u32))).collect();
                for &(i, b) in &flips {
                    bytes[i] ^= 1 << b;
                }
                format!("bits flipped (byte, bit): {flips:?}")
            }
            _ => {
                let n = rng.random_range(1..=4);
                let writes: Vec<(usize, u8)> = (0..n)
                    .map(|_| {
                        let v = if rng.random::<bool>() {
                            rng.random::<u8>()
                        } else {
                            SPECIAL[rng.random_range(0..SPECIAL.len())]
                        };
                        (rng.random_range(0..len), v)
                    })
                    .collect();
                for &(i, v) in &writes {
                    bytes[i] = v;
                }
                format!("bytes overwritten (offset, value): {writes:?}")
            }
        };
        out.push(Mutant { what, bytes });
    }
    out
}

/// Outcomes of one format's loop.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    err: usize,
}

/// Runs `check` on every mutant in a worker thread. Fails naming the mutation (and the panic
/// message) for every panic, and naming the mutation in progress if the loop runs past
/// [`LIMIT`]. `check` returns whether the parser accepted the input.
fn run_all<F>(format: &'static str, mutants: Vec<Mutant>, check: F) -> Tally
where
    F: Fn(&[u8]) -> bool + Send + 'static,
{
    let current = Arc::new(Mutex::new(String::from("(not started)")));
    let (tx, rx) = mpsc::channel();
    let cur = current.clone();
    std::thread::spawn(move || {
        let mut tally = Tally::default();
        let mut panics = Vec::new();
        for m in mutants {
            *cur.lock().unwrap() = m.what.clone();
            match catch_unwind(AssertUnwindSafe(|| check(&m.bytes))) {
                Ok(true) => tally.ok += 1,
                Ok(false) => tally.err += 1,
                Err(payload) => {
                    let msg = payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    panics.push(format!("{}: {msg}", m.what));
                }
            }
        }
        let _ = tx.send((tally, panics));
    });
    match rx.recv_timeout(LIMIT) {
        Ok((tally, panics)) => {
            assert!(panics.is_empty(), "{format}: {} input(s) panicked:\n{}", panics.len(), panics.join("\n"));
            tally
        }
        Err(_) => panic!("{format}: no answer within {LIMIT:?}; stuck on: {}", current.lock().unwrap()),
    }
}

/// Runs one call under `catch_unwind`, failing with `what` if it panics.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => panic!("{what} panicked"),
    }
}

// ---------------------------------------------------------------------------------------------
// IDX

/// Feeds an accepted IDX array through the dataset it would become, as the loader does.
fn use_idx(a: &relprune::data::idx::IdxArray) {
    let n: usize = a.dims.iter().product();
    assert_eq!(a.data.len(), n, "accepted dims {:?} must match the data", a.dims);
    if let [n, h, w] = a.dims[..] {
        if let Ok(ds) = GreyImages::from_bytes(&a.data, n, h, w, vec![0; n], "fuzz".into()) {
            if n > 0 && h * w <= 1 << 16 {
                ds.batch(&[0, n - 1]).expect("valid indices of an accepted dataset");
            }
            assert!(ds.batch(&[n]).is_err(), "an index past the end is an error");
        }
    }
}

#[test]
fn idx_mutations_never_panic() {
    let data: Vec<u8> = (0..3 * 4 * 5).map(|i| (i * 7) as u8).collect();
    let valid = encode_idx(&[3, 4, 5], &data);
    let a = parse_idx(&valid).expect("the valid file parses");
    assert_eq!((a.dims, a.data), (vec![3, 4, 5], data));
    let tally = run_all("IDX", byte_mutants(&valid, 1, 450), |bytes| match parse_idx(bytes) {
        Ok(a) => {
            use_idx(&a);
            true
        }
        Err(_) => false,
    });
    assert!(tally.err > 100 && tally.ok > 10, "{tally:?}");
}

/// The header of an IDX file with dimensions `dims` (no data).
fn idx_header(dims: &[u32]) -> Vec<u8> {
    let mut h = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        h.extend_from_slice(&d.to_be_bytes());
    }
    h
}

#[test]
fn idx_header_dimensions_past_2_64_are_an_error() {
    // 4 · 2^31 · 2^31 = 2^64: wrapped to 0 before, which matched an empty data section.
    let header = idx_header(&[4, 1 << 31, 1 << 31]);
    for extra in [0usize, 1, 16] {
        let mut bytes = header.clone();
        bytes.resize(bytes.len() + extra, 0);
        let e = no_panic("parse_idx", || parse_idx(&bytes)).err().expect("overflowing dims are an error");
        assert!(e.contains("[4, 2147483648, 2147483648]") && e.contains("multiply past"), "{e}");
    }
    // Huge but representable: compared with the real data size.
    let e = parse_idx(&idx_header(&[1 << 31, 1 << 31, 1])).err().unwrap();
    assert!(e.contains("need 4611686018427387904 bytes") && e.contains("holds 0"), "{e}");
    assert!(parse_idx(&[]).err().unwrap().contains("empty"));
    // The dataset constructor checks its own arithmetic too.
    let e = no_panic("from_bytes", || GreyImages::from_bytes(&[], 4, 1 << 31, 1 << 31, vec![0; 4], "x".into()));
    assert!(e.is_err());
    let e = GreyImages::from_bytes(&[], 4, 0, 7, vec![0; 4], "x".into()).err().unwrap();
    assert!(e.to_string().contains("at least 1"), "{e}");
    let e = GreyImages::from_bytes(&[0; 8], 2, 2, 2, vec![0; 3], "x".into()).err().unwrap();
    assert!(e.to_string().contains("3 labels for 2 images"), "{e}");
}

/// A Fashion-MNIST folder whose train images are `train_images` (other files valid, 4 samples).
fn fmnist_folder(dir: &Path, train_images: &[u8]) {
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
    write("train-images-idx3-ubyte", train_images);
    write("train-labels-idx1-ubyte", &encode_idx(&[4], &[1, 2, 3, 4]));
    write("t10k-images-idx3-ubyte", &encode_idx(&[2, 2, 2], &[0; 8]));
    write("t10k-labels-idx1-ubyte", &encode_idx(&[2], &[0, 1]));
}

#[test]
fn fashion_mnist_with_bad_headers_is_corrupt_data() {
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("overflowing dims", idx_header(&[4, 1 << 31, 1 << 31]), "multiply past"),
        ("zero-sized images", encode_idx(&[4, 0, 5], &[]), "at least 1"),
        ("empty file", Vec::new(), "empty"),
        ("header only", idx_header(&[4, 28, 28]), "need 3136 bytes"),
    ];
    for (what, bytes, cause) in cases {
        let dir = tempfile::tempdir().unwrap();
        fmnist_folder(dir.path(), &bytes);
        let e = no_panic(what, || fashion_mnist::load_splits(dir.path())).err().expect(what);
        assert!(matches!(e, Error::CorruptData { .. }), "{what}: {e}");
        assert!(e.to_string().contains(cause) && e.to_string().contains("train-images"), "{what}: {e}");
    }
    let dir = tempfile::tempdir().unwrap();
    fmnist_folder(dir.path(), &encode_idx(&[4, 2, 2], &[0; 16]));
    assert_eq!(fashion_mnist::load_splits(dir.path()).unwrap().train.len(), 3);
}

#[test]
fn gzip_idx_mutations_never_panic() {
    let data: Vec<u8> = (0..5 * 4 * 4).map(|i| (i % 13) as u8).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&encode_idx(&[5, 4, 4], &data)).unwrap();
    let valid = gz.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x-idx3-ubyte.gz");
    std::fs::write(&path, &valid).unwrap();
    assert_eq!(read_idx(&path).expect("the valid file reads").data, data);
    let mut truncated = valid.clone();
    truncated.truncate(valid.len() / 2);
    std::fs::write(&path, &truncated).unwrap();
    let e = read_idx(&path).err().unwrap();
    assert!(matches!(e, Error::CorruptData { .. }) && e.to_string().contains("gzip"), "{e}");
    let tally = run_all("gzip IDX", byte_mutants(&valid, 2, 300), move |bytes| {
        std::fs::write(&path, bytes).unwrap();
        match read_idx(&path) {
            Ok(a) => {
                use_idx(&a);
                true
            }
            Err(e) => {
                assert!(matches!(e, Error::CorruptData { .. }), "{e}");
                false
            }
        }
    });
    assert!(tally.err > 100, "{tally:?}");
}

// ---------------------------------------------------------------------------------------------
// safetensors

/// A store with one tensor of every dtype the format and tch share, plus a scalar and an
/// empty tensor.
fn mixed_store() -> ParamStore {
    let mut s = ParamStore::default();
    let cpu = Device::Cpu;
    let base = Tensor::arange(12, (Kind::Float, cpu)).f_sub_scalar(5.5).unwrap();
    s.insert("a.f32".into(), base.reshape([3, 4]));
    s.insert("b.f64".into(), base.to_kind(Kind::Double).narrow(0, 0, 3));
    s.insert("c.f16".into(), base.to_kind(Kind::Half).reshape([2, 2, 3]));
    s.insert("d.bf16".into(), base.to_kind(Kind::BFloat16).narrow(0, 2, 4));
    s.insert("e.i64".into(), base.to_kind(Kind::Int64).narrow(0, 0, 2));
    s.insert("f.i32".into(), base.to_kind(Kind::Int).narrow(0, 0, 3));
    s.insert("g.i16".into(), base.to_kind(Kind::Int16).narrow(0, 5, 2));
    s.insert("h.i8".into(), base.to_kind(Kind::Int8).narrow(0, 1, 5));
    s.insert("i.u8".into(), base.abs().to_kind(Kind::Uint8).narrow(0, 0, 3));
    s.insert("j.bool".into(), base.gt(0.0).narrow(0, 4, 4));
    s.insert("k.scalar".into(), Tensor::from(2.5f32));
    s.insert("l.empty".into(), Tensor::zeros([0, 3], (Kind::Float, cpu)));
    s
}

/// A safetensors file from its header JSON and data bytes.
fn safetensors_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Structured damage to the header: numbers set to edge values, dtypes renamed, entries
/// dropped; the length field is kept consistent so the damage reaches the entry checks.
fn safetensors_header_mutants(valid: &[u8], seed: u64, n: usize) -> Vec<Mutant> {
    let mut rng = relprune::util::rng(seed);
    let hlen = u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&valid[8..8 + hlen]).unwrap();
    let data = &valid[8 + hlen..];
    let names: Vec<String> = header.keys().filter(|k| *k != "__metadata__").cloned().collect();
    let numbers: [u64; 8] = [0, 1, 3, 1 << 31, 1 << 32, 1 << 63, u64::MAX, data.len() as u64 + 1];
    let dtypes = ["F32", "U16", "U64", "F8_E4M3", "BOOL", "I64", "X", ""];
    let mut out = Vec::new();
    for k in 0..n {
        let mut h = header.clone();
        let name = &names[rng.random_range(0..names.len())];
        let entry = h.get_mut(name).unwrap().as_object_mut().unwrap();
        let what = match k % 4 {
            0 => {
                let shape = entry["shape"].as_array_mut().unwrap();
                let v = numbers[rng.random_range(0..numbers.len())];
                if shape.is_empty() || rng.random::<bool>() {
                    shape.push(v.into());
                } else {
                    let i = rng.random_range(0..shape.len());
                    shape[i] = v.into();
                }
                format!("shape of `{name}` -> {:?}", entry["shape"])
            }
            1 => {
                let i = rng.random_range(0..2);
                let v = numbers[rng.random_range(0..numbers.len())];
                entry.get_mut("data_offsets").unwrap().as_array_mut().unwrap()[i] = v.into();
                format!("data_offsets[{i}] of `{name}` -> {v}")
            }
            2 => {
                let d = dtypes[rng.random_range(0..dtypes.len())];
                entry.insert("dtype".into(), d.into());
                format!("dtype of `{name}` -> {d:?}")
            }
            _ => {
                h.remove(name);
                format!("entry `{name}` removed")
            }
        };
        let text = serde_json::to_string(&h).unwrap();
        out.push(Mutant { what, bytes: safetensors_bytes(&text, data) });
    }
    out
}

/// Checks what the reader accepted, then reports whether it accepted.
fn check_safetensors(path: &Path) -> bool {
    match ParamStore::read_safetensors(path) {
        Ok(store) => {
            for (k, t) in store.iter() {
                let n: i64 = t.size().iter().product();
                assert_eq!(n, t.numel() as i64, "{k}");
            }
            true
        }
        Err(e) => {
            assert!(
                matches!(&e, Error::CorruptData { what, reason, .. } if what == "safetensors file" && !reason.is_empty()),
                "{e}"
            );
            false
        }
    }
}

/// A safetensors file's header (JSON) and data bytes.
fn safetensors_parts(bytes: &[u8]) -> (serde_json::Map<String, Value>, &[u8]) {
    let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + hlen]).unwrap(), &bytes[8 + hlen..])
}

/// Our file is tch's writer's (same entries, same data bytes in the same order) plus the
/// metadata PyTorch's writer adds, `{"format": "pt"}`, which transformers requires.
#[test]
fn safetensors_round_trip_matches_tch_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let store = mixed_store();
    let ours = dir.path().join("ours.safetensors");
    store.write_safetensors(&ours).unwrap();
    // tch's writer (the `safetensors` crate) is what PyTorch interoperability was tested with.
    let named: Vec<(String, Tensor)> = store.iter().map(|(k, t)| (k.clone(), t.contiguous())).collect();
    let theirs = dir.path().join("tch.safetensors");
    Tensor::write_safetensors(&named, &theirs).unwrap();
    let (ours_bytes, theirs_bytes) = (std::fs::read(&ours).unwrap(), std::fs::read(&theirs).unwrap());
    let ((mut ours_header, ours_data), (theirs_header, theirs_data)) =
        (safetensors_parts(&ours_bytes), safetensors_parts(&theirs_bytes));
    assert_eq!(ours_header.remove("__metadata__"), Some(serde_json::json!({"format": "pt"})));
    assert_eq!(ours_header, theirs_header, "same entries as tch's writer");
    assert_eq!(ours_data, theirs_data, "same data bytes as tch's writer");
    let back = ParamStore::read_safetensors(&ours).unwrap();
    assert_eq!(back.len(), store.len());
    for (k, t) in store.iter() {
        let b = back.get(k).unwrap();
        assert_eq!((b.kind(), b.size()), (t.kind(), t.size()), "{k}");
        assert!(b.equal(t), "{k}");
    }
    // tch's reader agrees with ours.
    let tch_read = Tensor::read_safetensors(&ours).unwrap();
    assert_eq!(tch_read.len(), store.len());
    for (k, t) in &tch_read {
        assert!(back.get(k).unwrap().equal(t), "{k}");
    }
}

#[test]
fn safetensors_mutations_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    mixed_store().write_safetensors(&path).unwrap();
    let valid = std::fs::read(&path).unwrap();
    assert!(check_safetensors(&path), "the valid file reads");
    let mut mutants = byte_mutants(&valid, 3, 300);
    mutants.extend(safetensors_header_mutants(&valid, 4, 200));
    let tally = run_all("safetensors", mutants, move |bytes| {
        std::fs::write(&path, bytes).unwrap();
        check_safetensors(&path)
    });
    assert!(tally.err > 300, "{tally:?}");
}

#[test]
fn safetensors_known_bad_headers_name_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let read = |bytes: &[u8]| -> String {
        std::fs::write(&path, bytes).unwrap();
        let e = no_panic("read_safetensors", || ParamStore::read_safetensors(&path)).err().expect("an error");
        assert!(matches!(e, Error::CorruptData { .. }), "{e}");
        e.to_string()
    };
    // A length field claiming 2^63 bytes, in front of a real header.
    let mut bytes = safetensors_bytes(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]);
    bytes[..8].copy_from_slice(&(1u64 << 63).to_le_bytes());
    let e = read(&bytes);
    assert!(e.contains("claims 9223372036854775808 bytes"), "{e}");
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(read(&bytes).contains("claims"));
    assert!(read(&[]).contains("too short"));
    assert!(read(&[1, 0, 0]).contains("too short"));
    let one = |entry: &str, data: &[u8]| read(&safetensors_bytes(&format!(r#"{{"a":{entry}}}"#), data));
    // An element count past 2^64.
    let e = one(r#"{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}"#, &[]);
    assert!(e.contains("overflows"), "{e}");
    // Offsets at the end of the address space (overflowed the `safetensors` crate's size sum).
    let e = one(r#"{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,18446744073709551615]}"#, &[]);
    assert!(e.contains("beyond 2^63"), "{e}");
    let e = one(r#"{"dtype":"U8","shape":[9223372036854775807],"data_offsets":[0,9223372036854775807]}"#, &[]);
    assert!(e.contains("outside"), "{e}");
    let e = one(r#"{"dtype":"F32","shape":[2],"data_offsets":[0,4]}"#, &[0; 4]);
    assert!(e.contains("needs 8 bytes"), "{e}");
    let e = one(r#"{"dtype":"U16","shape":[2],"data_offsets":[0,4]}"#, &[0; 4]);
    assert!(e.contains("U16"), "{e}");
    let e = one(r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#, &[0; 8]);
    assert!(e.contains("cover 4 bytes"), "{e}");
    let e = read(&safetensors_bytes(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 8],
    ));
    assert!(e.contains("starts at byte 0"), "{e}");
    assert!(read(&safetensors_bytes("[1, 2]", &[])).contains("`{`"));
}

/// A full disk is an I/O error with the OS's words, not "corrupt output". Needs a small file
/// system: `RELPRUNE_TEST_SMALL_FS=<dir on a tmpfs of 64 KiB>` (e.g. `mount -t tmpfs -o size=64k
/// tmpfs <dir>`); skipped without it.
#[test]
fn safetensors_write_on_a_full_disk_is_an_io_error() {
    let Some(dir) = std::env::var_os("RELPRUNE_TEST_SMALL_FS") else { return };
    let mut store = ParamStore::default();
    store.insert("big".into(), Tensor::zeros([1 << 16], (Kind::Float, Device::Cpu)));
    let path = Path::new(&dir).join("w.safetensors");
    let e = store.write_safetensors(&path).unwrap_err();
    assert!(matches!(&e, Error::Io { action: "write", .. }), "{e}");
    assert!(e.to_string().contains("No space left on device"), "{e}");
    assert!(!path.exists(), "no partial file is left behind");
}

// ---------------------------------------------------------------------------------------------
// graph.json

/// A small saved graph folder; returns its graph.json bytes.
fn saved_graph(dir: &Path, arch: &str) -> Vec<u8> {
    Architecture::parse(arch).unwrap().build(5).unwrap().save(dir).unwrap();
    std::fs::read(dir.join("graph.json")).unwrap()
}

/// Whether an image input of this declared shape is small enough to allocate in a test.
fn small_image(channels: i64, height: i64, width: i64) -> bool {
    [channels, height, width].iter().all(|&d| d >= 1)
        && channels.checked_mul(height).and_then(|v| v.checked_mul(width)).is_some_and(|n| n <= 1 << 16)
}

/// Whether a tensor of these dimensions could exist at all (non-negative, no overflow).
fn is_allocatable(dims: &[i64]) -> bool {
    dims.iter().all(|&d| d >= 0) && dims.iter().try_fold(1i64, |a, &d| a.checked_mul(d)).is_some()
}

/// Tensors for the graph's inputs: what it declares when small, else a small image (which the
/// graph then refuses).
fn tiny_inputs(g: &Graph) -> Vec<Tensor> {
    let cpu = Device::Cpu;
    g.input_kinds()
        .into_iter()
        .map(|k| match *k {
            InputKind::Image { channels, height, width } if small_image(channels, height, width) => {
                Tensor::zeros([1, channels, height, width], (Kind::Float, cpu))
            }
            InputKind::Image { .. } => Tensor::zeros([1, 1, 12, 12], (Kind::Float, cpu)),
            InputKind::TokenIds { max_len } => Tensor::zeros([1, max_len.clamp(1, 6)], (Kind::Int64, cpu)),
            InputKind::AttentionMask { max_len } => Tensor::ones([1, max_len.clamp(1, 6)], (Kind::Int64, cpu)),
        })
        .collect()
}

/// Loads the folder; for a graph that loads, runs what consumers of a loaded graph run.
fn check_graph(dir: &Path) -> bool {
    match Graph::load(dir) {
        Ok(g) => {
            let _ = g.num_parameters();
            let _ = relprune::prune::components::depth_groups(&g);
            let inputs = tiny_inputs(&g);
            let _ = tch::no_grad(|| g.forward(&inputs, Mode::Eval));
            // MAC counts allocate an example input of the declared shape: run them unless that
            // is a real but large shape (degenerate shapes must have been refused by the loader).
            let affordable = g.input_kinds().iter().all(|k| match **k {
                InputKind::Image { channels, height, width } => {
                    small_image(channels, height, width) || !is_allocatable(&[channels, height, width])
                }
                _ => true,
            });
            if affordable {
                let _ = relprune::graph::stats::macs(&g, 6);
            }
            true
        }
        Err(_) => false,
    }
}

/// Paths (as JSON pointers) of every integer in a graph.json, with the name of its field.
fn integer_paths(v: &Value, path: String, field: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => out.push((path, field.to_string())),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                integer_paths(x, format!("{path}/{i}"), field, out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                integer_paths(x, format!("{path}/{k}"), k, out);
            }
        }
        _ => {}
    }
}

/// Structured damage to graph.json: every integer field kind set to each edge value at least
/// once, random integers set to edge values, and node inputs rewired to random earlier nodes.
fn graph_json_mutants(valid: &[u8], seed: u64, n_random: usize) -> Vec<Mutant> {
    let mut rng = relprune::util::rng(seed);
    let spec: Value = serde_json::from_slice(valid).unwrap();
    let mut paths = Vec::new();
    integer_paths(&spec, String::new(), "", &mut paths);
    let values: [Value; 8] = [
        0.into(),
        (-1).into(),
        (1i64 << 40).into(),
        i64::MAX.into(),
        i64::MIN.into(),
        u64::MAX.into(),
        1.into(),
        2.into(),
    ];
    let mut chosen: Vec<(String, Value)> = Vec::new();
    let mut fields: Vec<&String> = paths.iter().map(|(_, f)| f).collect();
    fields.sort();
    fields.dedup();
    for f in fields {
        let of_field: Vec<&String> = paths.iter().filter(|(_, g)| g == f).map(|(p, _)| p).collect();
        for v in &values[..6] {
            chosen.push((of_field[rng.random_range(0..of_field.len())].clone(), v.clone()));
        }
    }
    for _ in 0..n_random {
        let (p, _) = &paths[rng.random_range(0..paths.len())];
        chosen.push((p.clone(), values[rng.random_range(0..values.len())].clone()));
    }
    let mut out: Vec<Mutant> = chosen
        .into_iter()
        .map(|(p, v)| {
            let mut s = spec.clone();
            *s.pointer_mut(&p).unwrap() = v.clone();
            Mutant { what: format!("graph.json {p} = {v}"), bytes: serde_json::to_vec(&s).unwrap() }
        })
        .collect();
    for inputs in [Value::Array(vec![]), serde_json::json!([0, 0])] {
        let mut s = spec.clone();
        s["inputs"] = inputs.clone();
        out.push(Mutant { what: format!("graph inputs = {inputs}"), bytes: serde_json::to_vec(&s).unwrap() });
    }
    let nodes = spec["nodes"].as_array().unwrap().len();
    for _ in 0..n_random / 2 {
        let id = rng.random_range(1..nodes);
        let mut s = spec.clone();
        let inputs = s["nodes"][id]["inputs"].as_array_mut().unwrap();
        if inputs.is_empty() {
            continue;
        }
        let (k, to) = (rng.random_range(0..inputs.len()), rng.random_range(0..id));
        inputs[k] = to.into();
        out.push(Mutant {
            what: format!("node {id} input {k} rewired to node {to}"),
            bytes: serde_json::to_vec(&s).unwrap(),
        });
    }
    out
}

/// Fuzzes one architecture's saved folder with byte-level and structured damage.
fn fuzz_graph(arch: &'static str, seed: u64, n_bytes: usize, n_structured: usize) -> Tally {
    let dir = tempfile::tempdir().unwrap();
    let valid = saved_graph(dir.path(), arch);
    assert!(check_graph(dir.path()), "{arch}: the saved folder loads");
    let mut mutants = if n_bytes > 0 { byte_mutants(&valid, seed, n_bytes) } else { Vec::new() };
    mutants.extend(graph_json_mutants(&valid, seed + 1, n_structured));
    let folder: PathBuf = dir.path().to_path_buf();
    let tally = run_all(arch, mutants, move |bytes| {
        std::fs::write(folder.join("graph.json"), bytes).unwrap();
        check_graph(&folder)
    });
    drop(dir);
    tally
}

#[test]
fn graph_json_mutations_never_panic() {
    let tally = fuzz_graph("cifar_resnet18:width=4,in=1,size=12,classes=5", 10, 300, 150);
    assert!(tally.err > 300 && tally.ok > 10, "{tally:?}");
}

#[test]
fn transformer_graph_json_mutations_never_panic() {
    let vit = fuzz_graph("vit:size=8,patch=4,layers=1,heads=2,dim=8,mlp=16,classes=3", 20, 0, 150);
    let bert = fuzz_graph(
        "bert:vocab=20,dim=8,layers=1,heads=2,mlp=16,positions=8,max_len=8,pooling=mean,classes=3",
        30,
        0,
        150,
    );
    assert!(vit.err > 50 && bert.err > 50, "{vit:?} {bert:?}");
}

#[test]
fn graph_json_known_bad_numbers_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let valid = saved_graph(dir.path(), "cifar_resnet18:width=4,in=1,size=12,classes=5");
    let spec: Value = serde_json::from_slice(&valid).unwrap();
    let conv = spec["nodes"].as_array().unwrap().iter().position(|n| n["op"]["type"] == "conv2d").unwrap();
    let flatten = spec["nodes"].as_array().unwrap().iter().position(|n| n["op"]["type"] == "flatten").unwrap();
    let mut paths = Vec::new();
    integer_paths(&spec, String::new(), "", &mut paths);
    let height = paths.iter().find(|(_, f)| f == "height").unwrap().0.clone();
    let cases: [(String, Value, &str); 6] = [
        (format!("/nodes/{conv}/op/groups"), 0.into(), "groups = 0"),
        (format!("/nodes/{conv}/op/stride/0"), 0.into(), "stride = 0"),
        (format!("/nodes/{conv}/op/padding/1"), (1i64 << 40).into(), "padding = 1099511627776"),
        (format!("/nodes/{flatten}/op/start_dim"), (-1).into(), "start_dim = -1"),
        (height, i64::MAX.into(), "height = 9223372036854775807"),
        ("/inputs".into(), Value::Array(vec![]), "not listed among the graph inputs"),
    ];
    for (p, v, cause) in cases {
        let mut s = spec.clone();
        *s.pointer_mut(&p).unwrap() = v;
        std::fs::write(dir.path().join("graph.json"), serde_json::to_vec(&s).unwrap()).unwrap();
        let e = no_panic(&p, || Graph::load(dir.path())).err().unwrap_or_else(|| panic!("{p}: loads"));
        assert!(e.to_string().contains(cause), "{p}: {e}");
    }
}

#[test]
fn graph_json_with_rank_deficient_inputs_is_an_error() {
    // Token ids (B, T) → select token 0 → (B): a position table indexes dimension 1 of its input.
    let dir = tempfile::tempdir().unwrap();
    let mut store = ParamStore::default();
    store.insert("pos.weight".into(), Tensor::zeros([4, 2], (Kind::Float, Device::Cpu)));
    store.write_safetensors(&dir.path().join("model.safetensors")).unwrap();
    let graph = serde_json::json!({
        "format": 1,
        "nodes": [
            {"name": "ids", "op": {"type": "input", "token_ids": {"max_len": 4}}, "inputs": []},
            {"name": "first", "op": {"type": "select_token", "index": 0}, "inputs": [0]},
            {"name": "pos", "op": {"type": "position_embedding", "max_len": 4, "dim": 2, "leading_one": false},
             "inputs": [1], "params": {"weight": "pos.weight"}}
        ],
        "inputs": [0],
        "output": 2
    });
    std::fs::write(dir.path().join("graph.json"), serde_json::to_vec(&graph).unwrap()).unwrap();
    let r = no_panic("load and run", || {
        let g = Graph::load(dir.path())?;
        let ids = Tensor::zeros([1, 4], (Kind::Int64, Device::Cpu));
        tch::no_grad(|| g.forward(&[ids], Mode::Eval))
    });
    let e = r.expect_err("a rank-1 input to a position table is refused");
    assert!(e.to_string().contains("at least 2 dimensions, gets 1"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// search-space YAML

#[test]
fn search_space_yaml_mutations_never_panic() {
    for transformer in [false, true] {
        let default =
            SearchSpace::default_for(ModelTraits { attention: transformer, gates: transformer, language_model: false });
        let yaml = default.to_yaml();
        assert_eq!(SearchSpace::from_yaml(&yaml).expect("the default space parses"), default);
        let tally = run_all("search-space YAML", byte_mutants(yaml.as_bytes(), 40 + transformer as u64, 500), |b| {
            SearchSpace::from_yaml(&String::from_utf8_lossy(b)).is_ok()
        });
        // Most mutants are refused: every LRP option is conditional on `method: lrp`, so a
        // mutated condition (its name, its value, its braces) fails validation. Both outcomes
        // must still occur.
        assert!(tally.err > 100 && tally.ok >= 5, "{tally:?}");
    }
}

#[test]
fn search_space_yaml_known_bad_inputs_are_errors() {
    // Unclosed brackets: the YAML parser's time grows quadratically with their number.
    let deep = format!("low_rule: {}", "[".repeat(100_000));
    let huge = format!("low_rule: [epsilon, zplus]\n#{}\n", "x".repeat(2 << 20));
    let nested = format!("low_rule: {}", "[".repeat(4000));
    let laughs = "a: &a [epsilon, epsilon, epsilon, epsilon, epsilon, epsilon, epsilon, epsilon]\n".to_string()
        + &(b'b'..=b'z')
            .map(|c| {
                let prev = (c - 1) as char;
                format!(
                    "{}: &{} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n",
                    c as char, c as char
                )
            })
            .collect::<String>();
    let cases: [(&str, &str); 10] = [
        ("", "no free parameter"),
        ("- a\n- b\n", "not a YAML mapping"),
        ("low_rule: [epsilon]\n", "no free parameter"),
        ("low_rule: [sideways, zplus]\n", "`low_rule` takes"),
        ("low_epsilon: {log: [1.0, 0.5]}\n", "is empty"),
        ("low_epsilon: {log: [.nan, 1.0]}\n", "low_epsilon"),
        (&deep, "more than the limit of 4096"),
        (&huge, "larger than the limit"),
        (&nested, "recursion limit"),
        (&laughs, ""),
    ];
    let (tx, rx) = mpsc::channel();
    let cases: Vec<(String, String)> = cases.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    std::thread::spawn(move || {
        for (text, cause) in cases {
            let r = catch_unwind(|| SearchSpace::from_yaml(&text).map(|_| ()).map_err(|e| e.to_string()));
            let _ = tx.send((text.chars().take(40).collect::<String>(), cause, r.ok()));
        }
    });
    for _ in 0..10 {
        let (text, cause, r) = rx.recv_timeout(LIMIT).expect("each search space answers in time");
        let r = r.unwrap_or_else(|| panic!("{text:?} panicked"));
        let e = r.err().unwrap_or_else(|| panic!("{text:?} is accepted"));
        assert!(e.contains(&cause), "{text:?}: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Size fields: a file's own length and every size it declares are bounded before anything is
// allocated, so a sparse file, a decompression bomb or a config declaring billions of values
// gives an error at once instead of an abort.

/// Peak resident memory of this test process so far (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The most memory any size-field case may leave this process at (libtorch included).
const PEAK_LIMIT: u64 = 4 << 30;

/// Runs `f` in a worker, failing on a panic, on an answer later than 10 s and on a peak memory
/// past [`PEAK_LIMIT`]; returns the error message (failing if `f` succeeds).
fn refused(what: &str, f: impl FnOnce() -> relprune::Result<()> + Send + 'static) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)).map(|r| r.map_err(|e| e.to_string())));
    });
    let r = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("{what}: no answer within 10 s"));
    let e = r.unwrap_or_else(|_| panic!("{what}: panicked")).err().unwrap_or_else(|| panic!("{what}: accepted"));
    assert!(peak_rss() < PEAK_LIMIT, "{what}: peak memory {} bytes", peak_rss());
    assert_eq!(e.lines().count(), 1, "{what}: {e}");
    e
}

/// A sparse file of 64 GiB (it takes no disk): every reader of a whole file refuses it by its
/// length, naming it, without reading it.
#[test]
fn every_whole_file_reader_refuses_a_sparse_64_gib_file() {
    use relprune::attribution::CriterionSpec;
    use relprune::data::preprocess::Preprocess;
    let dir = tempfile::tempdir().unwrap();
    let sparse = |name: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::File::create(&p).unwrap().set_len(64 << 30).unwrap();
        p
    };
    let graph = sparse("g/graph.json");
    let config = sparse("hf/config.json");
    std::fs::write(dir.path().join("hf/model.safetensors"), b"").unwrap();
    let weights = sparse("w.safetensors");
    let tokenizer = sparse("tokenizer.json");
    let onnx = sparse("m.onnx");
    let npy = sparse("x.npy");
    let idx = sparse("train-images-idx3-ubyte");
    let rules = sparse("rules.yaml");
    let preprocess = sparse("preprocess.yaml");
    let text = sparse("corpus.txt");
    type Reader = Box<dyn FnOnce() -> relprune::Result<()> + Send>;
    let cases: Vec<(&str, Reader)> = vec![
        ("graph.json", Box::new(move || Graph::load(graph.parent().unwrap()).map(|_| ()))),
        (
            "config.json",
            Box::new(move || Architecture::parse(&format!("hf:{}", config.parent().unwrap().display())).map(|_| ())),
        ),
        ("safetensors", Box::new(move || ParamStore::read_safetensors(&weights).map(|_| ()))),
        ("tokenizer.json", Box::new(move || relprune::data::text::read_tokenizer(&tokenizer).map(|_| ()))),
        ("ONNX", Box::new(move || relprune::import::import(&onnx).map(|_| ()))),
        (".npy", Box::new(move || relprune::data::npy::read(&npy).map(|_| ()))),
        ("IDX", Box::new(move || read_idx(&idx).map(|_| ()))),
        ("rules file", Box::new(move || CriterionSpec::from_file(&rules).map(|_| ()))),
        ("preprocessing file", Box::new(move || Preprocess::from_yaml_file(&preprocess).map(|_| ()))),
        (
            "text corpus",
            Box::new(move || {
                let spec = relprune::data::corpus::CorpusSpec::parse(&format!("text:{}", text.display()))?;
                relprune::data::corpus::read_part(&spec, relprune::data::corpus::Part::Test).map(|_| ())
            }),
        ),
    ];
    for (what, read) in cases {
        let e = refused(what, read);
        assert!(e.contains("64.0 GiB") || e.contains("68719476736"), "{what}: {e}");
    }
}

/// The IDX header is inflated first and the data it declares bounds what is inflated: a gzip
/// stream that would inflate to 1 GiB past a small declared array stops one byte past it.
#[test]
fn a_gzip_idx_that_inflates_past_its_header_is_refused_without_inflating_it() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&encode_idx(&[4, 2, 2], &[7; 16])).unwrap();
    let zeros = vec![0u8; 1 << 24];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x-idx3-ubyte.gz");
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    let e = refused("gzip bomb", move || read_idx(&path).map(|_| ()));
    assert!(e.contains("inflates past the 16 bytes of data its header declares"), "{e}");
}

/// Edge values a size field is set to: zero, negative, just past 2^31 and 2^32, the i64
/// extremes, and sizes whose products overflow.
const EDGE_SIZES: [i64; 10] = [0, -1, 1, 3, 1 << 24, (1 << 31) + 1, 1 << 32, 1 << 40, i64::MAX, i64::MIN];

/// A tiny LLaMA folder (config.json and model.safetensors written by relprune itself).
fn tiny_llama_folder(dir: &Path) -> serde_json::Value {
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 11, "hidden_size": 8,
        "intermediate_size": 6, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 4, "max_position_embeddings": 16, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": true
    });
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let arch = Architecture::parse(&format!("hf:{}", dir.display()));
    let g = arch.expect("the tiny config reads").build(0).unwrap();
    g.save_safetensors(&dir.join("model.safetensors")).unwrap();
    config
}

/// A tiny BERT folder (BertModel, mean pooling).
fn tiny_bert_folder(dir: &Path) -> serde_json::Value {
    let config = serde_json::json!({
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": 13, "hidden_size": 8,
        "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 12,
        "max_position_embeddings": 10, "type_vocab_size": 2
    });
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let g = Architecture::parse(&format!("hf:{}", dir.display())).unwrap().build(0).unwrap();
    g.save_safetensors(&dir.join("model.safetensors")).unwrap();
    config
}

/// Every integer field of a Hugging Face config.json, at every edge value: the folder loads
/// (and runs) or is refused with an error, never a panic, an abort or an allocation of what the
/// config declares beyond what its weights hold.
#[test]
fn hf_config_size_fields_are_bounded_before_building() {
    for (family, write) in
        [("llama", tiny_llama_folder as fn(&Path) -> Value), ("bert", tiny_bert_folder as fn(&Path) -> Value)]
    {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().to_path_buf();
        let valid = write(&folder);
        let spec = format!("hf:{}", folder.display());
        relprune::models::load_model(&spec, None, 0).expect("the valid folder loads");
        let fields: Vec<String> =
            valid.as_object().unwrap().iter().filter(|(_, v)| v.is_i64()).map(|(k, _)| k.clone()).collect();
        let mut mutants = Vec::new();
        for f in &fields {
            for v in EDGE_SIZES {
                let mut c = valid.clone();
                c[f] = v.into();
                mutants.push(Mutant { what: format!("{family} {f} = {v}"), bytes: serde_json::to_vec(&c).unwrap() });
            }
        }
        let (config, spec2) = (folder.join("config.json"), spec.clone());
        let tally = run_all("config.json sizes", mutants, move |bytes| {
            std::fs::write(&config, bytes).unwrap();
            match relprune::models::load_model(&spec2, None, 0) {
                Ok(m) => {
                    let ids = Tensor::zeros([1, 3], (Kind::Int64, Device::Cpu));
                    let mask = Tensor::ones([1, 3], (Kind::Int64, Device::Cpu));
                    let _ = tch::no_grad(|| m.graph.forward(&[ids, mask], Mode::Eval));
                    true
                }
                Err(e) => {
                    assert_eq!(e.to_string().lines().count(), 1, "{e}");
                    false
                }
            }
        });
        assert!(peak_rss() < PEAK_LIMIT, "{family}: peak memory {} bytes", peak_rss());
        assert!(tally.err >= fields.len() * 6, "{family}: {tally:?}");
    }
}

/// The shape in a .npy header at every edge value, with every element type: read or refused,
/// never a panic or an allocation of the declared size.
#[test]
fn npy_header_shapes_are_bounded_before_reading() {
    // The data: what the shape declares where that is small, else 96 bytes.
    let header = |descr: &str, dims: &[i64]| -> Vec<u8> {
        let item = match descr {
            "|u1" | "|b1" => 1,
            "<f2" => 2,
            "<f4" | ">f4" => 4,
            _ => 8,
        };
        let declared = dims.iter().try_fold(item, |a: i64, &d| if d < 0 { None } else { a.checked_mul(d) });
        let data = declared.filter(|&n| n <= 4096).unwrap_or(96) as usize;
        let shape = match dims {
            [d] => format!("({d},)"),
            _ => format!("({})", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
        };
        let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + dict.len() + 1) % 64 != 0 {
            dict.push(' ');
        }
        dict.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        out.extend_from_slice(dict.as_bytes());
        out.extend(std::iter::repeat_n(0u8, data));
        out
    };
    let mut mutants = Vec::new();
    let mut rng = relprune::util::rng(77);
    for descr in ["<f4", "<f8", "<i8", "|u1", ">f4", "<f2", "|b1", "<c8"] {
        for a in EDGE_SIZES {
            for dims in [vec![a], vec![2, a], vec![a, a, 3]] {
                mutants.push(Mutant { what: format!("{descr} shape {dims:?}"), bytes: header(descr, &dims) });
            }
        }
        for _ in 0..10 {
            let dims: Vec<i64> = (0..rng.random_range(1..5)).map(|_| EDGE_SIZES[rng.random_range(0..10)]).collect();
            mutants.push(Mutant { what: format!("{descr} shape {dims:?}"), bytes: header(descr, &dims) });
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let tally = run_all(".npy shapes", mutants, move |bytes| {
        std::fs::write(&path, bytes).unwrap();
        relprune::data::npy::read(&path).is_ok()
    });
    assert!(peak_rss() < PEAK_LIMIT, "peak memory {} bytes", peak_rss());
    assert!(tally.err > 200 && tally.ok >= 8, "{tally:?}");
}

/// An image whose header declares 60000 × 60000 pixels is refused by the decoder's limits
/// before its pixels are allocated.
#[test]
fn an_image_declaring_billions_of_pixels_is_refused_before_decoding() {
    let mut png = Vec::new();
    image::RgbImage::new(1, 1).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    // IHDR's width and height are bytes 16..24; its CRC covers bytes 12..29.
    png[16..20].copy_from_slice(&60000u32.to_be_bytes());
    png[20..24].copy_from_slice(&60000u32.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&png[12..29]);
    png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    let dir = tempfile::tempdir().unwrap();
    for class in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join("train").join(class)).unwrap();
        std::fs::write(dir.path().join("train").join(class).join("x.png"), &png).unwrap();
    }
    let root = dir.path().to_path_buf();
    let e = refused("60000×60000 PNG", move || {
        let f = relprune::data::image_folder::ImageFolder::open(&root.join("train"), 36, 32)?;
        f.batch(&[0]).map(|_| ())
    });
    assert!(e.to_lowercase().contains("limit"), "{e}");
}
