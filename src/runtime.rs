//! Process-wide settings: thread count and version information for reports.

use serde::Serialize;

/// Sets the number of threads libtorch uses for its kernels (intra-op parallelism).
pub fn set_threads(n: usize) {
    tch::set_num_threads(n.max(1) as i32);
}

/// Versions and settings recorded in every result file.
#[derive(Clone, Debug, Serialize)]
pub struct VersionInfo {
    pub relprune: &'static str,
    pub tch: &'static str,
    pub libtorch_lib: &'static str,
    pub threads: i32,
    pub host_cpus: usize,
}

pub fn version_info() -> VersionInfo {
    VersionInfo {
        relprune: env!("CARGO_PKG_VERSION"),
        tch: "0.26.0",
        libtorch_lib: env!("RELPRUNE_LIBTORCH_LIB"),
        threads: tch::get_num_threads(),
        host_cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    }
}
