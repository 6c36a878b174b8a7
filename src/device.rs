//! Where tensors live: the one module that names a device.
//!
//! A graph is built and loaded on the host ([`HOST`]), then moved as a whole to the device a
//! command runs on ([`crate::graph::Graph::to_device`]). Everything downstream follows the graph:
//! a forward pass moves its input batch to the graph's device, criteria bring their per-unit
//! scores back to the host (rankings, curves and reports are host-side bookkeeping), surgery
//! indexes each parameter on the device it lives on, and files (safetensors, ONNX) are written
//! from host copies. So no module but this one chooses a device.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use tch::Device;

/// The host: where files are read and written, data are decoded, and graphs are built.
pub const HOST: Device = Device::Cpu;

/// A user's choice of device: `cpu`, `cuda`, `cuda:N` or `auto` (CUDA device 0 when libtorch
/// sees a GPU, else the CPU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum DeviceChoice {
    /// CUDA device 0 when one is usable, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// A CUDA device (index 0 when not given).
    Cuda(Option<usize>),
}

impl DeviceChoice {
    /// The device this choice names on this machine. Asking for CUDA where libtorch sees no GPU
    /// (no driver, or a CPU-only libtorch) or for a device index that does not exist is an error
    /// that says what was found, never a silent fallback to the CPU.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(HOST),
            DeviceChoice::Auto => Ok(if cuda_count() > 0 { Device::Cuda(0) } else { HOST }),
            DeviceChoice::Cuda(i) => {
                let n = cuda_count();
                let i = i.unwrap_or(0);
                if n == 0 {
                    return Err(Error::invalid(format!(
                        "--device {self}: libtorch sees no CUDA device (no GPU or driver on this machine, or a \
                         CPU-only libtorch; this binary {}); use --device cpu or auto",
                        if cuda_linked() {
                            "links libtorch's CUDA library"
                        } else {
                            "was built without libtorch's CUDA library"
                        }
                    )));
                }
                if i >= n {
                    return Err(Error::invalid(format!(
                        "--device {self}: there is no CUDA device {i}; libtorch sees {n} (cuda:0 to cuda:{})",
                        n - 1
                    )));
                }
                Ok(Device::Cuda(i))
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(None) => f.write_str("cuda"),
            DeviceChoice::Cuda(Some(i)) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("unknown device `{s}`: expected cpu, cuda, cuda:N (N = 0, 1, …) or auto");
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(None)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse::<usize>().map(|i| DeviceChoice::Cuda(Some(i))).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl From<DeviceChoice> for String {
    fn from(d: DeviceChoice) -> String {
        d.to_string()
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

/// CUDA devices libtorch can use (0 without a GPU, a driver, or libtorch's CUDA library).
pub fn cuda_count() -> usize {
    if tch::Cuda::is_available() {
        tch::Cuda::device_count().max(0) as usize
    } else {
        0
    }
}

/// Whether this binary was linked against libtorch's CUDA library (build.rs links it whenever
/// the libtorch it builds against has one, so `--device cuda` works where a GPU is present).
pub fn cuda_linked() -> bool {
    env!("RELPRUNE_TORCH_CUDA") == "linked"
}

/// A device's name as the CLI spells it: `cpu`, `cuda:0`, … (reports and JSON headers).
pub fn name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}

/// `t` on the host (a shallow clone when it is there already).
pub fn to_host(t: &tch::Tensor) -> tch::Tensor {
    t.to_device(HOST)
}

/// Waits for the device's queued kernels (timings on CUDA are otherwise of the launch only).
pub fn synchronize(d: Device) {
    if let Device::Cuda(i) = d {
        tch::Cuda::synchronize(i as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for (s, d) in [
            ("auto", DeviceChoice::Auto),
            ("cpu", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(None)),
            ("cuda:2", DeviceChoice::Cuda(Some(2))),
        ] {
            assert_eq!(s.parse::<DeviceChoice>().unwrap(), d);
            assert_eq!(d.to_string(), s);
        }
        assert_eq!("CUDA:1".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(Some(1)));
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "mps", ""] {
            let e = bad.parse::<DeviceChoice>().unwrap_err();
            assert!(e.contains("expected cpu, cuda, cuda:N"), "{bad}: {e}");
        }
    }

    #[test]
    fn cpu_and_auto_resolve_without_a_gpu_and_cuda_is_refused_with_a_reason() {
        assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), HOST);
        let n = cuda_count();
        let auto = DeviceChoice::Auto.resolve().unwrap();
        assert_eq!(auto, if n > 0 { Device::Cuda(0) } else { HOST });
        let beyond = DeviceChoice::Cuda(Some(n + 3)).resolve().unwrap_err().to_string();
        if n == 0 {
            assert!(beyond.contains("libtorch sees no CUDA device"), "{beyond}");
        } else {
            assert!(beyond.contains("there is no CUDA device"), "{beyond}");
        }
    }

    #[test]
    fn round_trips_through_serde() {
        let d: DeviceChoice = serde_json::from_str("\"cuda:1\"").unwrap();
        assert_eq!(d, DeviceChoice::Cuda(Some(1)));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"cuda:1\"");
        assert!(serde_json::from_str::<DeviceChoice>("\"tpu\"").is_err());
    }
}
