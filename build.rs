//! Build steps:
//! - Embeds libtorch's library folder as an rpath so `relprune` runs without `LD_LIBRARY_PATH`.
//!   torch-sys exports the folder it linked against as `DEP_TCH_LIBTORCH_LIB` (its
//!   `links = "tch"` key); that is the venv's `torch/lib` under `LIBTORCH_USE_PYTORCH=1`, or
//!   `$LIBTORCH/lib` otherwise.
//! - Generates the ONNX protobuf types (prost) from the official `onnx.proto` that the pinned
//!   `onnx` Python package ships (`scripts/setup.sh` puts a copy at `$RELPRUNE_ONNX_PROTO`).
//!   protox compiles it in pure Rust, so no system `protoc` is needed. The file is not vendored:
//!   it is the ONNX project's, and the pinned package is the one version we test against.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(dir) if !dir.is_empty() => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
            println!("cargo:rustc-env=RELPRUNE_LIBTORCH_LIB={dir}");
            link_torch_cuda(Path::new(&dir));
        }
        _ => {
            println!("cargo:rustc-env=RELPRUNE_LIBTORCH_LIB=unknown");
            println!("cargo:rustc-env=RELPRUNE_TORCH_CUDA=absent");
        }
    }
    onnx_types();
}

/// Links libtorch's CUDA library when the libtorch at `dir` has one (the venv's torch wheel is a
/// CUDA build). torch-sys names it, but nothing in relprune calls into it directly, so the
/// linker's `--as-needed` drops it and libtorch then registers no CUDA backend: `--device cuda`
/// would see no GPU on a machine that has one. `--no-as-needed` keeps it; a CPU-only libtorch
/// has no such file and links as before. `RELPRUNE_TORCH_CUDA` tells the binary which it got.
fn link_torch_cuda(dir: &Path) {
    let lib = dir.join("libtorch_cuda.so");
    println!("cargo:rerun-if-changed={}", lib.display());
    if lib.is_file() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,{},--as-needed", lib.display());
        println!("cargo:rustc-env=RELPRUNE_TORCH_CUDA=linked");
    } else {
        println!("cargo:rustc-env=RELPRUNE_TORCH_CUDA=absent");
    }
}

/// Where `onnx.proto` is: `$RELPRUNE_ONNX_PROTO`, else the `onnx` package of the venv.
fn onnx_proto() -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=RELPRUNE_ONNX_PROTO");
    println!("cargo:rerun-if-env-changed=RELPRUNE_VENV");
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
    if let Some(p) = std::env::var_os("RELPRUNE_ONNX_PROTO").map(PathBuf::from) {
        if p.is_file() {
            return Some(p);
        }
    }
    for var in ["RELPRUNE_VENV", "VIRTUAL_ENV"] {
        let Some(venv) = std::env::var_os(var).map(PathBuf::from) else { continue };
        let Ok(libs) = std::fs::read_dir(venv.join("lib")) else { continue };
        for lib in libs.flatten() {
            let p = lib.path().join("site-packages/onnx/onnx.proto");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn onnx_types() {
    let Some(proto) = onnx_proto() else {
        panic!(
            "onnx.proto not found: run scripts/setup.sh (it installs the pinned `onnx` package and \
             copies its onnx.proto to $RELPRUNE_ONNX_PROTO), or set RELPRUNE_ONNX_PROTO to an onnx.proto file"
        )
    };
    println!("cargo:rerun-if-changed={}", proto.display());
    let dir = proto.parent().unwrap_or(Path::new("."));
    let fds = protox::compile([&proto], [dir]).unwrap_or_else(|e| panic!("compile {}: {e}", proto.display()));
    prost_build::Config::new()
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("generate ONNX types from {}: {e}", proto.display()));
}
