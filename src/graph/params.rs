//! Named tensors (parameters and buffers) and their safetensors form.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;

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

    /// Reads every tensor of a safetensors file.
    pub fn read_safetensors(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::DataNotFound {
                what: "weights file".into(),
                path: path.to_path_buf(),
                hint: "pass the path of a .safetensors file (in PyTorch: \
                       safetensors.torch.save_file(model.state_dict(), path))"
                    .into(),
            });
        }
        let tensors = Tensor::read_safetensors(path).map_err(|e| Error::CorruptData {
            what: "safetensors file".into(),
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(ParamStore { map: tensors.into_iter().collect() })
    }

    /// Writes every tensor to a safetensors file; the file appears complete or not at all.
    pub fn write_safetensors(&self, path: &Path) -> Result<()> {
        let tensors: Vec<(&str, Tensor)> =
            self.map.iter().map(|(k, v)| (k.as_str(), v.detach().contiguous())).collect();
        crate::util::with_atomic_path(path, |tmp| {
            Tensor::write_safetensors(&tensors, tmp).map_err(|e| Error::CorruptData {
                what: "safetensors output".into(),
                path: tmp.to_path_buf(),
                reason: e.to_string(),
            })
        })
    }
}
