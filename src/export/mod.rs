//! Exporting graphs to other formats.

pub mod onnx;
