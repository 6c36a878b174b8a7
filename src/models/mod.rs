//! Builders that produce graphs with torchvision / Hugging Face parameter names.
//!
//! An [`Architecture`] is plain data: it is written into zoo manifests and parsed from the
//! command line as `NAME[:key=value,...]`, e.g. `resnet50`, `vgg16_bn:classes=10`,
//! `cifar_resnet18:width=16,in=1,size=28`.

pub mod bert;
pub mod convnext;
pub mod densenet;
pub mod efficientnet;
pub mod llama;
pub mod mobilenet;
pub mod regnet;
pub mod resnet;
pub mod vgg;
pub mod vit;
pub mod zoo;

pub use bert::{BertConfig, Pooling};
pub use convnext::ConvNextConfig;
pub use densenet::DenseNetConfig;
pub use efficientnet::EfficientNetConfig;
pub use llama::LlamaConfig;
pub use mobilenet::{MobileNetConfig, MobileNetVersion};
pub use regnet::RegNetConfig;
pub use resnet::{ResNetConfig, Stem};
pub use vgg::{VggConfig, VggStyle};
pub use vit::VitConfig;

use crate::error::Result;
use crate::graph::Graph;
use serde::{Deserialize, Serialize};

/// A buildable architecture and its configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "snake_case")]
pub enum Architecture {
    Resnet(ResNetConfig),
    Vgg(VggConfig),
    Vit(VitConfig),
    Bert(BertConfig),
    #[serde(rename = "mobilenet")]
    MobileNet(MobileNetConfig),
    #[serde(rename = "efficientnet")]
    EfficientNet(EfficientNetConfig),
    #[serde(rename = "densenet")]
    DenseNet(DenseNetConfig),
    #[serde(rename = "regnet")]
    RegNet(RegNetConfig),
    #[serde(rename = "convnext")]
    ConvNext(ConvNextConfig),
    /// A LLaMA-family decoder language model (LLaMA, Qwen2, Mistral).
    Llama(LlamaConfig),
}

/// Refuses a folder whose `config.json` declares more parameters than its weight files can hold
/// (two bytes each at the least), before the graph is built: the sizes in a config are the
/// file's word, and building allocates them.
fn check_weights_hold(arch: &Architecture, folder: &std::path::Path, files: &[std::path::PathBuf]) -> Result<()> {
    let declared = match arch {
        Architecture::Llama(c) => c.num_parameters(),
        Architecture::Bert(c) => c.num_parameters(),
        _ => return Ok(()),
    };
    let mut bytes: u128 = 0;
    for f in files {
        bytes += crate::util::regular_file(f).map_err(|_| crate::error::Error::DataNotFound {
            what: "the model's weights".into(),
            path: f.clone(),
            hint: "a Hugging Face folder holds the safetensors files its config describes".into(),
        })? as u128;
    }
    if declared * 2 > bytes {
        crate::bail!(
            "{}: config.json declares {declared} parameter values, but the weight files hold {} (at least 2 bytes \
             per value); the config does not describe these weights",
            folder.display(),
            crate::util::human_bytes(bytes as u64)
        );
    }
    Ok(())
}

/// The most layers a configuration read from a file may declare (the largest published
/// transformers have a few hundred): bounds the graph's node list before it is built.
pub const MAX_LAYERS: i64 = 4096;

/// Refuses a configuration's size field outside `1..=MAX_FIELD`, naming it.
fn check_sizes(fields: &[(&str, i64)]) -> Result<()> {
    for &(field, v) in fields {
        if !(1..=crate::graph::MAX_FIELD).contains(&v) {
            crate::bail!("{field} = {v} is outside 1..={}", crate::graph::MAX_FIELD);
        }
    }
    Ok(())
}

/// Refuses a configuration that declares more than [`MAX_LAYERS`] layers or more than
/// `MAX_PARAMETERS` parameter values, before any node or tensor exists.
fn check_layers_and_parameters(layers: i64, parameters: u128) -> Result<()> {
    if layers > MAX_LAYERS {
        crate::bail!("num_hidden_layers = {layers} is more than the limit of {MAX_LAYERS}");
    }
    let limit = crate::graph::MAX_PARAMETERS;
    if parameters > limit as u128 {
        crate::bail!("the configuration declares {parameters} parameter values, more than the limit of {limit}");
    }
    Ok(())
}

/// Architecture names accepted by [`Architecture::parse`].
pub const KNOWN_ARCHITECTURES: &str = "resnet18, resnet34, resnet50, resnet101, resnet152, \
    vgg11, vgg13, vgg16, vgg19 (each also with _bn), cifar_ variants of all of them \
    (e.g. cifar_resnet18, cifar_vgg16_bn), vit_b_16, vit_b_32, vit_l_16, vit_l_32, vit_h_14, vit (custom), \
    resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, wide_resnet50_2, wide_resnet101_2, \
    convnext_tiny, convnext_small, convnext_base, convnext_large, regnet_x_400mf … regnet_x_32gf, regnet_y_400mf … regnet_y_128gf, densenet121, densenet161, densenet169, densenet201, efficientnet_b0 … efficientnet_b7, mobilenet_v2, mobilenet_v3_small, mobilenet_v3_large (each also cifar_), \
    bert (custom), minilm (all-MiniLM-L6-v2's shape), hf-bert:FOLDER (a Hugging Face BERT folder), \
    hf:FOLDER (a Hugging Face folder: BERT encoders, and LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM decoders)";

impl Architecture {
    /// Builds the graph with freshly initialised (seeded) parameters.
    pub fn build(&self, seed: u64) -> Result<Graph> {
        match self {
            Architecture::Resnet(c) => resnet::build(c, seed),
            Architecture::Vgg(c) => vgg::build(c, seed),
            Architecture::Vit(c) => vit::build(c, seed),
            Architecture::Bert(c) => bert::build(c, seed),
            Architecture::MobileNet(c) => mobilenet::build(c, seed),
            Architecture::EfficientNet(c) => efficientnet::build(c, seed),
            Architecture::DenseNet(c) => densenet::build(c, seed),
            Architecture::RegNet(c) => regnet::build(c, seed),
            Architecture::ConvNext(c) => convnext::build(c, seed),
            Architecture::Llama(c) => llama::build(c, seed),
        }
    }

    /// A short human name (e.g. `resnet18`, `cifar_vgg16_bn`).
    pub fn name(&self) -> String {
        match self {
            Architecture::Resnet(c) => c.name(),
            Architecture::Vgg(c) => format!(
                "{}vgg{}{}",
                if c.style == VggStyle::Cifar { "cifar_" } else { "" },
                c.depth,
                if c.batch_norm { "_bn" } else { "" }
            ),
            Architecture::Vit(c) => format!(
                "vit(patch {}, {} layers, {} heads, width {})",
                c.patch_size, c.num_layers, c.num_heads, c.hidden_dim
            ),
            Architecture::Bert(c) => {
                format!(
                    "bert({} layers, {} heads, width {})",
                    c.num_hidden_layers, c.num_attention_heads, c.hidden_size
                )
            }
            Architecture::MobileNet(c) => c.name(),
            Architecture::EfficientNet(c) => c.name(),
            Architecture::DenseNet(c) => c.name(),
            Architecture::RegNet(c) => c.name.clone(),
            Architecture::ConvNext(c) => c.name(),
            Architecture::Llama(c) => format!(
                "{}({} layers, {} heads on {} key/value heads, width {})",
                c.family, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.hidden_size
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
        if let Some(folder) = text.strip_prefix("hf:") {
            return Self::from_hf_folder(std::path::Path::new(folder));
        }
        if let Some(folder) = text.strip_prefix("hf-bert:") {
            let cfg = BertConfig::from_hf_folder(std::path::Path::new(folder), Pooling::Cls)?;
            return Ok(Architecture::Bert(cfg));
        }
        let mut arch = if let Some(c) = ConvNextConfig::torchvision(name, 1000) {
            Architecture::ConvNext(c)
        } else if let Some(c) = RegNetConfig::torchvision(name, 1000) {
            Architecture::RegNet(c)
        } else if let Some(c) = DenseNetConfig::torchvision(name, 1000) {
            Architecture::DenseNet(c)
        } else if let Some(c) = EfficientNetConfig::torchvision(name, 1000) {
            Architecture::EfficientNet(c)
        } else if let Some(mut c) = MobileNetConfig::torchvision(base, 1000) {
            if cifar {
                c.cifar = true;
                c.image_size = 32;
            }
            Architecture::MobileNet(c)
        } else if let Some(c) = VitConfig::torchvision(name, 1000) {
            Architecture::Vit(c)
        } else if name == "vit" {
            Architecture::Vit(VitConfig::torchvision("vit_b_16", 1000).expect("known"))
        } else if name == "bert" || name == "minilm" {
            let (h, l, heads, inter) = if name == "bert" { (768, 12, 12, 3072) } else { (384, 6, 12, 1536) };
            Architecture::Bert(BertConfig {
                vocab_size: 30522,
                hidden_size: h,
                num_hidden_layers: l,
                num_attention_heads: heads,
                intermediate_size: inter,
                max_position_embeddings: 512,
                type_vocab_size: 2,
                layer_norm_eps: 1e-12,
                hidden_act: "gelu".into(),
                pooling: Pooling::Mean,
                num_classes: None,
                max_len: 512,
                key_prefix: String::new(),
            })
        } else if let Some(mut c) = ResNetConfig::torchvision_variant(base, 1000) {
            if cifar {
                c.stem = Stem::Cifar;
                c.image_size = 32;
            }
            Architecture::Resnet(c)
        } else if let Some(d) = base.strip_prefix("resnet") {
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
        let prob = |value: &str| -> Result<f64> {
            value
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..1.0).contains(p))
                .ok_or_else(|| crate::error::Error::invalid(format!("dropout must be in [0, 1), got `{value}`")))
        };
        // Bounded so that products of options cannot overflow; the graph's total size is
        // checked when it is built.
        const MAX_OPTION: i64 = 1 << 24;
        let int = || -> Result<i64> {
            value.parse::<i64>().ok().filter(|v| (1..=MAX_OPTION).contains(v)).ok_or_else(|| {
                crate::error::Error::invalid(format!(
                    "option `{key}` needs a whole number from 1 to {MAX_OPTION}, got `{value}`"
                ))
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
            (Architecture::Vit(c), "classes") => c.num_classes = int()?,
            (Architecture::Vit(c), "in") => c.in_channels = int()?,
            (Architecture::Vit(c), "size") => c.image_size = int()?,
            (Architecture::Vit(c), "patch") => c.patch_size = int()?,
            (Architecture::Vit(c), "layers") => c.num_layers = int()?,
            (Architecture::Vit(c), "heads") => c.num_heads = int()?,
            (Architecture::Vit(c), "dim") => c.hidden_dim = int()?,
            (Architecture::Vit(c), "mlp") => c.mlp_dim = int()?,
            (Architecture::Vit(c), "dropout") => c.dropout = prob(value)?,
            (Architecture::MobileNet(c), "classes") => c.num_classes = int()?,
            (Architecture::MobileNet(c), "in") => c.in_channels = int()?,
            (Architecture::MobileNet(c), "size") => c.image_size = int()?,
            (Architecture::MobileNet(c), "width_mult") => {
                c.width_mult = value.parse::<f64>().ok().filter(|w| *w > 0.0 && *w <= 16.0).ok_or_else(|| {
                    crate::error::Error::invalid(format!("width_mult must be in (0, 16], got `{value}`"))
                })?
            }
            (Architecture::MobileNet(c), "dropout") => c.dropout = prob(value)?,
            (Architecture::ConvNext(c), "classes") => c.num_classes = int()?,
            (Architecture::ConvNext(c), "in") => c.in_channels = int()?,
            (Architecture::ConvNext(c), "size") => c.image_size = int()?,
            (Architecture::RegNet(c), "classes") => c.num_classes = int()?,
            (Architecture::RegNet(c), "in") => c.in_channels = int()?,
            (Architecture::RegNet(c), "size") => c.image_size = int()?,
            (Architecture::DenseNet(c), "classes") => c.num_classes = int()?,
            (Architecture::DenseNet(c), "in") => c.in_channels = int()?,
            (Architecture::DenseNet(c), "size") => c.image_size = int()?,
            (Architecture::EfficientNet(c), "classes") => c.num_classes = int()?,
            (Architecture::EfficientNet(c), "in") => c.in_channels = int()?,
            (Architecture::EfficientNet(c), "size") => c.image_size = int()?,
            (Architecture::EfficientNet(c), "dropout") => c.dropout = prob(value)?,
            (Architecture::EfficientNet(c), "stochastic_depth") => c.stochastic_depth = prob(value)?,
            (Architecture::Bert(c), "classes") => c.num_classes = Some(int()?),
            (Architecture::Bert(c), "vocab") => c.vocab_size = int()?,
            (Architecture::Bert(c), "dim") => c.hidden_size = int()?,
            (Architecture::Bert(c), "layers") => c.num_hidden_layers = int()?,
            (Architecture::Bert(c), "heads") => c.num_attention_heads = int()?,
            (Architecture::Bert(c), "mlp") => c.intermediate_size = int()?,
            (Architecture::Bert(c), "positions") => c.max_position_embeddings = int()?,
            (Architecture::Bert(c), "max_len") => c.max_len = int()?,
            (Architecture::Bert(c), "pooling") => {
                c.pooling = match value {
                    "none" => Pooling::None,
                    "cls" => Pooling::Cls,
                    "mean" => Pooling::Mean,
                    v => crate::bail!("pooling must be none, cls or mean, got `{v}`"),
                }
            }
            (a, k) => crate::bail!(
                "unknown option `{k}` for {}; known options: {}",
                a.name(),
                match a {
                    Architecture::Resnet(_) => "classes, in, size, width",
                    Architecture::Vgg(_) => "classes, in, size, width, hidden, dropout",
                    Architecture::Vit(_) => "classes, in, size, patch, layers, heads, dim, mlp, dropout",
                    Architecture::Bert(_) => "classes, vocab, dim, layers, heads, mlp, positions, max_len, pooling",
                    Architecture::MobileNet(_) => "classes, in, size, width_mult, dropout",
                    Architecture::EfficientNet(_) => "classes, in, size, dropout, stochastic_depth",
                    Architecture::DenseNet(_) | Architecture::RegNet(_) | Architecture::ConvNext(_) =>
                        "classes, in, size",
                    Architecture::Llama(_) => "none (a decoder is read from its config.json)",
                }
            ),
        }
        Ok(())
    }

    /// The architecture of a Hugging Face model folder, by its `config.json`'s `model_type`: a
    /// BERT encoder or a LLaMA-family decoder.
    pub fn from_hf_folder(dir: &std::path::Path) -> Result<Self> {
        let path = dir.join("config.json");
        let raw: serde_json::Value = crate::util::read_json(&path).map_err(|e| match e {
            crate::error::Error::Io { .. } => crate::error::Error::DataNotFound {
                what: "Hugging Face config.json".into(),
                path: path.clone(),
                hint: "point at a Hugging Face model folder (config.json, model.safetensors, tokenizer.json)".into(),
            },
            other => other,
        })?;
        if llama::is_pruned_config(&raw) {
            crate::bail!(
                "{} holds a decoder pruned by relprune, with its own width per layer: load it as --model {} (its \
                 graph.json), not hf:",
                dir.display(),
                dir.display()
            );
        }
        if raw.get("model_type").and_then(|t| t.as_str()) == Some("bert") {
            return Ok(Architecture::Bert(BertConfig::from_hf_folder(dir, Pooling::Cls)?));
        }
        Ok(Architecture::Llama(LlamaConfig::from_hf_folder(dir)?))
    }

    /// Validates without building tensors.
    fn build_check(&self) -> Result<()> {
        match self {
            Architecture::Vit(c) => c.check(),
            Architecture::Bert(c) => c.check(),
            Architecture::Llama(c) => c.check(),
            Architecture::MobileNet(c) => c.check(),
            Architecture::EfficientNet(c) => c.check(),
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
    /// The dataset the model belongs to, when known (zoo models).
    pub dataset: Option<zoo::ZooData>,
    /// What an ONNX import recognised (ONNX files only).
    pub import: Option<crate::import::ImportReport>,
    /// The Hugging Face folder it was read from (`hf:FOLDER`, prepared models): where its
    /// tokenizer is.
    pub folder: Option<std::path::PathBuf>,
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
    if let Some(folder) = llama::prepared_folder(spec) {
        if weights.is_some() {
            crate::bail!("{spec} is a prepared model with its own weights; drop --weights");
        }
        let folder = folder?;
        let mut m = load_model(&format!("hf:{}", folder.display()), None, seed)?;
        m.name = spec.to_string();
        return Ok(m);
    }
    let path = std::path::Path::new(spec);
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
        if weights.is_some() {
            crate::bail!("{spec} is an ONNX file with its own weights; drop --weights");
        }
        if !path.is_file() {
            crate::bail!("ONNX file {spec} not found");
        }
        let imported = crate::import::import(path)?;
        return Ok(LoadedModel {
            graph: imported.graph,
            name: path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| spec.to_string()),
            origin: format!("ONNX file {spec} ({}, opset {})", imported.report.producer, imported.report.opset),
            dataset: None,
            import: Some(imported.report),
            folder: None,
        });
    }
    if path.join("graph.json").is_file() {
        if weights.is_some() {
            crate::bail!("{spec} is a saved graph folder with its own weights; drop --weights");
        }
        // A folder written by `relprune prune` says which data its model belongs to.
        let dataset = crate::util::read_json::<serde_json::Value>(&path.join("source.json"))
            .ok()
            .and_then(|v| serde_json::from_value(v.get("dataset")?.clone()).ok());
        return Ok(LoadedModel {
            graph: Graph::load(path)?,
            name: spec.to_string(),
            origin: format!("graph folder {spec}"),
            dataset,
            import: None,
            // A pruned decoder's folder is a Hugging Face folder too, with its tokenizer.
            folder: path.join("tokenizer.json").is_file().then(|| path.to_path_buf()),
        });
    }
    let arch = Architecture::parse(spec).map_err(|e| {
        // A Hugging Face folder's refusal is about its files, not about which names exist.
        if spec.starts_with("hf:") || spec.starts_with("hf-bert:") {
            return e;
        }
        let zoo_names: Vec<&str> = zoo::ZOO.iter().map(|e| e.name).collect();
        let folder = if path.is_dir() {
            format!("; {spec} is a folder but holds no graph.json (write one with `relprune prune`)")
        } else {
            String::new()
        };
        crate::error::Error::invalid(format!("{e}; zoo models: {}{folder}", zoo_names.join(", ")))
    })?;
    let folder = spec.strip_prefix("hf:").or_else(|| spec.strip_prefix("hf-bert:")).map(std::path::Path::new);
    let folder_weights = match folder {
        Some(f) if weights.is_some() => {
            crate::bail!("{} is a Hugging Face folder with its own weights; drop --weights", f.display())
        }
        Some(f) if matches!(arch, Architecture::Llama(_)) => llama::weight_files(f)?,
        Some(f) => vec![f.join("model.safetensors")],
        None => weights.map(|w| vec![w.to_path_buf()]).unwrap_or_default(),
    };
    if let Some(f) = folder {
        check_weights_hold(&arch, f, &folder_weights)?;
    }
    let mut graph = arch.build(seed)?;
    let origin = if folder_weights.is_empty() {
        format!("random initialisation (seed {seed})")
    } else {
        let paths: Vec<&std::path::Path> = folder_weights.iter().map(|p| p.as_path()).collect();
        graph.load_safetensors_files(&paths)?;
        match folder {
            Some(f) => format!("Hugging Face folder {}", f.display()),
            None => format!("weights {}", paths[0].display()),
        }
    };
    Ok(LoadedModel {
        graph,
        name: arch.name(),
        origin,
        dataset: None,
        import: None,
        folder: folder.map(|f| f.to_path_buf()),
    })
}
