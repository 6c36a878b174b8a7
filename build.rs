//! Embeds libtorch's library folder as an rpath so `relprune` runs without
//! `LD_LIBRARY_PATH`. torch-sys exports the folder it linked against as
//! `DEP_TCH_LIBTORCH_LIB` (its `links = "tch"` key); that is the venv's
//! `torch/lib` under `LIBTORCH_USE_PYTORCH=1`, or `$LIBTORCH/lib` otherwise.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(dir) if !dir.is_empty() => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
            println!("cargo:rustc-env=RELPRUNE_LIBTORCH_LIB={dir}");
        }
        _ => println!("cargo:rustc-env=RELPRUNE_LIBTORCH_LIB=unknown"),
    }
}
