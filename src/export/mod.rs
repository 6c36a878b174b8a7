//! Exporting graphs to other formats.

pub mod hf;
pub mod onnx;
