//! Builders that produce graphs with torchvision / Hugging Face parameter names.
//!
//! An [`Architecture`] is plain data: it is written into zoo manifests and parsed from the
//! command line as `NAME[:key=value,...]`, e.g. `resnet50`, `vgg16_bn:classes=10`,
//! `cifar_resnet18:width=16,in=1,size=28`.

pub mod resnet;
pub mod vgg;
pub mod zoo;

pub use resnet::{ResNetConfig, Stem};
pub use vgg::{VggConfig, VggStyle};

use crate::error::Result;
use crate::graph::Graph;
use serde::{Deserialize, Serialize};

/// A buildable architecture and its configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "snake_case")]
pub enum Architecture {
    Resnet(ResNetConfig),
    Vgg(VggConfig),
}

/// Architecture names accepted by [`Architecture::parse`].
pub const KNOWN_ARCHITECTURES: &str = "resnet18, resnet34, resnet50, resnet101, resnet152, \
    vgg11, vgg13, vgg16, vgg19 (each also with _bn), and cifar_ variants of all of them \
    (e.g. cifar_resnet18, cifar_vgg16_bn)";

impl Architecture {
    /// Builds the graph with freshly initialised (seeded) parameters.
    pub fn build(&self, seed: u64) -> Result<Graph> {
        match self {
            Architecture::Resnet(c) => resnet::build(c, seed),
            Architecture::Vgg(c) => vgg::build(c, seed),
        }
    }

    /// A short human name (e.g. `resnet18`, `cifar_vgg16_bn`).
    pub fn name(&self) -> String {
        match self {
            Architecture::Resnet(c) => {
                format!("{}resnet{}", if c.stem == Stem::Cifar { "cifar_" } else { "" }, c.depth)
            }
            Architecture::Vgg(c) => format!(
                "{}vgg{}{}",
                if c.style == VggStyle::Cifar { "cifar_" } else { "" },
                c.depth,
                if c.batch_norm { "_bn" } else { "" }
            ),
        }
    }

    /// Parses `NAME[:key=value,...]`. Options: `classes`, `in` (input channels), `size`
    /// (image side), `width` (first-stage channels), and for VGG `hidden`, `dropout`.
    pub fn parse(text: &str) -> Result<Self> {
        let (name, opts) = match text.split_once(':') {
            Some((n, o)) => (n.trim(), o.trim()),
            None => (text.trim(), ""),
        };
        let (cifar, base) = match name.strip_prefix("cifar_") {
            Some(rest) => (true, rest),
            None => (false, name),
        };
        let mut arch = if let Some(d) = base.strip_prefix("resnet") {
            let depth: u32 = d.parse().map_err(|_| unknown(text))?;
            let mut c = ResNetConfig::torchvision(depth, 1000);
            if cifar {
                c.stem = Stem::Cifar;
                c.image_size = 32;
            }
            Architecture::Resnet(c)
        } else if let Some(d) = base.strip_prefix("vgg") {
            let (d, bn) = match d.strip_suffix("_bn") {
                Some(d) => (d, true),
                None => (d, false),
            };
            let depth: u32 = d.parse().map_err(|_| unknown(text))?;
            let mut c = VggConfig::torchvision(depth, bn, 1000);
            if cifar {
                c.style = VggStyle::Cifar;
                c.image_size = 32;
                c.hidden = 512;
            }
            Architecture::Vgg(c)
        } else {
            return Err(unknown(text));
        };
        for kv in opts.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| crate::error::Error::invalid(format!("option `{kv}` in `{text}` is not key=value")))?;
            arch.set_option(k.trim(), v.trim())?;
        }
        arch.build_check()?;
        Ok(arch)
    }

    fn set_option(&mut self, key: &str, value: &str) -> Result<()> {
        let int = || -> Result<i64> {
            value.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
                crate::error::Error::invalid(format!("option `{key}` needs a positive integer, got `{value}`"))
            })
        };
        match (self, key) {
            (Architecture::Resnet(c), "classes") => c.num_classes = int()?,
            (Architecture::Resnet(c), "in") => c.in_channels = int()?,
            (Architecture::Resnet(c), "size") => c.image_size = int()?,
            (Architecture::Resnet(c), "width") => c.width = int()?,
            (Architecture::Vgg(c), "classes") => c.num_classes = int()?,
            (Architecture::Vgg(c), "in") => c.in_channels = int()?,
            (Architecture::Vgg(c), "size") => c.image_size = int()?,
            (Architecture::Vgg(c), "width") => c.width = int()?,
            (Architecture::Vgg(c), "hidden") => c.hidden = int()?,
            (Architecture::Vgg(c), "dropout") => {
                c.dropout =
                    value.parse::<f64>().ok().filter(|p| (0.0..1.0).contains(p)).ok_or_else(|| {
                        crate::error::Error::invalid(format!("dropout must be in [0, 1), got `{value}`"))
                    })?
            }
            (a, k) => crate::bail!(
                "unknown option `{k}` for {}; known options: {}",
                a.name(),
                match a {
                    Architecture::Resnet(_) => "classes, in, size, width",
                    Architecture::Vgg(_) => "classes, in, size, width, hidden, dropout",
                }
            ),
        }
        Ok(())
    }

    /// Validates without building tensors.
    fn build_check(&self) -> Result<()> {
        match self {
            Architecture::Resnet(c) if ![18, 34, 50, 101, 152].contains(&c.depth) => Err(unknown(&self.name())),
            Architecture::Vgg(c) if ![11, 13, 16, 19].contains(&c.depth) => Err(unknown(&self.name())),
            _ => Ok(()),
        }
    }
}

fn unknown(text: &str) -> crate::error::Error {
    crate::error::Error::invalid(format!("unknown architecture `{text}`; known: {KNOWN_ARCHITECTURES}"))
}

/// A graph ready to use, with where it came from.
pub struct LoadedModel {
    pub graph: Graph,
    /// Short name for reports (zoo name, architecture name or folder).
    pub name: String,
    /// Where the weights came from.
    pub origin: String,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoadedModel({}, {}, {} nodes)", self.name, self.origin, self.graph.nodes().len())
    }
}

/// Loads a model from `spec`: a zoo name, a folder written by `relprune prune` / [`Graph::save`]
/// (`graph.json` + `model.safetensors`), or an architecture (`resnet18`, …) with optional
/// `weights` (random initialisation from `seed` without).
pub fn load_model(spec: &str, weights: Option<&std::path::Path>, seed: u64) -> Result<LoadedModel> {
    if zoo::is_zoo_name(spec) {
        if weights.is_some() {
            crate::bail!("{spec} is a zoo model with its own weights; drop --weights");
        }
        return Ok(zoo::load(spec)?.0);
    }
    let path = std::path::Path::new(spec);
    if path.join("graph.json").is_file() {
        if weights.is_some() {
            crate::bail!("{spec} is a saved graph folder with its own weights; drop --weights");
        }
        return Ok(LoadedModel {
            graph: Graph::load(path)?,
            name: spec.to_string(),
            origin: format!("graph folder {spec}"),
        });
    }
    let arch = Architecture::parse(spec)?;
    let mut graph = arch.build(seed)?;
    let origin = match weights {
        Some(w) => {
            graph.load_safetensors(w)?;
            format!("weights {}", w.display())
        }
        None => format!("random initialisation (seed {seed})"),
    };
    Ok(LoadedModel { graph, name: arch.name(), origin })
}
