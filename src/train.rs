//! Training a graph with tch's autograd: seeded, resumable, checkpointing the best
//! validation accuracy. Used to build the model zoo on the data that installs offline.

use crate::data::{Splits, Subset};
use crate::error::{Error, Result};
use crate::graph::ops::*;
use crate::graph::{Graph, Mode};
use crate::metrics::{accuracy, EvalOptions};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Kind, Reduction, Tensor};

/// The optimiser and its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Optimizer {
    /// SGD with (Nesterov) momentum, PyTorch semantics.
    Sgd { lr: f64, momentum: f64, nesterov: bool, weight_decay: f64 },
    /// AdamW (decoupled weight decay), PyTorch semantics.
    AdamW { lr: f64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64 },
}

/// Light augmentation for small images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Random crop after padding each side by this many pixels (0: off).
    pub crop_padding: i64,
    /// Random horizontal flip with probability 1/2.
    pub hflip: bool,
    /// Value of padded pixels, in the normalised input space (black after normalisation).
    pub fill: f64,
}

/// A complete, seeded training recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: Optimizer,
    /// Epochs of linear learning-rate warm-up before the cosine decay to zero.
    pub warmup_epochs: f64,
    pub label_smoothing: f64,
    pub augment: Augment,
    pub seed: u64,
    /// Validation samples used to pick the best epoch (0: the whole split).
    pub val_samples: usize,
    /// Train only the output Linear layer, on features the frozen rest of the graph computes
    /// once (a classification head on a pretrained encoder).
    #[serde(default)]
    pub head_only: bool,
    /// The starting weights compete with every epoch on validation, and win ties (recovery
    /// fine-tuning: a run that makes the pruned model worse hands back the pruned model, and
    /// says so).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_start: bool,
    /// An epoch is this many batches, drawn in turn from a stream of seeded permutations of the
    /// train split, instead of one pass over it: a language model's text is far longer than a
    /// recovery run needs, and validation and checkpoints still come once per epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_per_epoch: Option<usize>,
}

/// One epoch's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_accuracy: f64,
    /// A language model's validation perplexity (its `val_accuracy` is next-token accuracy,
    /// which picks the kept epoch as it ranks curves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_perplexity: Option<f64>,
    pub seconds: f64,
}

/// What a finished training run reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainReport {
    pub history: Vec<EpochRecord>,
    pub best_epoch: usize,
    pub best_val_accuracy: f64,
    pub wall_seconds: f64,
    /// Validation accuracy of the starting weights (with [`TrainConfig::keep_start`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_val_accuracy: Option<f64>,
    /// No epoch beat the starting weights on validation: they were kept, and `best_epoch`
    /// names the best epoch that lost to them.
    #[serde(default)]
    pub kept_start: bool,
}

/// Knowledge distillation from a teacher (the unpruned model when fine-tuning after pruning):
/// loss = (1 − alpha)·CE(student, labels) + alpha·T²·KL(softmax(teacher/T) ‖ softmax(student/T)),
/// Hinton et al.'s soft targets with the T² gradient scale.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distill {
    pub temperature: f64,
    pub alpha: f64,
}

impl Distill {
    fn check(&self) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite() && (0.0..=1.0).contains(&self.alpha)) {
            crate::bail!(
                "distillation needs a temperature > 0 and a weight alpha in [0, 1], got T={} alpha={}",
                self.temperature,
                self.alpha
            );
        }
        Ok(())
    }
}

/// Outputs and labels one row per target: a language model's (B, T, V) logits and (B, T)
/// next-token targets become (B·T, V) and (B·T,); class outputs stay as they are.
fn per_target(logits: Tensor, labels: &Tensor) -> Result<(Tensor, Tensor)> {
    if logits.dim() == 3 && labels.dim() == 2 {
        let v = logits.size()[2];
        Ok((logits.f_reshape([-1, v])?, labels.f_reshape([-1])?))
    } else {
        Ok((logits, labels.shallow_clone()))
    }
}

/// The distillation loss of one batch (mean over samples); see [`Distill`].
pub fn distill_loss(
    student: &Tensor,
    teacher: &Tensor,
    labels: &Tensor,
    d: &Distill,
    label_smoothing: f64,
) -> Result<Tensor> {
    let hard = student.f_cross_entropy_loss(labels, None::<Tensor>, Reduction::Mean, -100, label_smoothing)?;
    let t = d.temperature;
    let log_s = student.f_div_scalar(t)?.f_log_softmax(-1, Kind::Float)?;
    let log_t = teacher.f_div_scalar(t)?.f_log_softmax(-1, Kind::Float)?;
    let kl =
        log_t.f_exp()?.f_mul(&log_t.f_sub(&log_s)?)?.f_sum_dim_intlist(-1, false, Kind::Float)?.f_mean(Kind::Float)?;
    Ok(hard.f_mul_scalar(1.0 - d.alpha)?.f_add(&kl.f_mul_scalar(d.alpha * t * t)?)?)
}

/// Saved after every epoch so an interrupted run resumes where it stopped.
#[derive(Serialize, Deserialize)]
struct ResumeState {
    config: TrainConfig,
    #[serde(default)]
    distill: Option<Distill>,
    history: Vec<EpochRecord>,
    best_epoch: usize,
    best_val_accuracy: f64,
    #[serde(default)]
    start_val_accuracy: Option<f64>,
}

/// Progress notifications during training.
pub trait TrainObserver {
    fn epoch_started(&mut self, _epoch: usize, _batches: usize) {}
    fn batch_done(&mut self, _batch: usize, _loss: f64) {}
    fn epoch_done(&mut self, _record: &EpochRecord) {}
    /// Asked after each epoch's checkpoint; `true` stops the run (it can be resumed).
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// An observer that does nothing.
pub struct Silent;
impl TrainObserver for Silent {}

struct OptimState {
    step: i64,
    /// Momentum buffers (SGD) or first moments (AdamW), then second moments (AdamW).
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl TrainConfig {
    fn check(&self) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 || self.steps_per_epoch == Some(0) {
            crate::bail!("epochs, steps per epoch and batch size must be positive");
        }
        let lr = match self.optimizer {
            Optimizer::Sgd { lr, .. } | Optimizer::AdamW { lr, .. } => lr,
        };
        if !(lr > 0.0 && lr.is_finite()) {
            crate::bail!("learning rate must be positive, got {lr}");
        }
        Ok(())
    }

    fn lr_at(&self, step: usize, steps_per_epoch: usize) -> f64 {
        let base = match self.optimizer {
            Optimizer::Sgd { lr, .. } | Optimizer::AdamW { lr, .. } => lr,
        };
        let total = (self.epochs * steps_per_epoch) as f64;
        let warm = self.warmup_epochs * steps_per_epoch as f64;
        let s = step as f64;
        if s < warm {
            base * (s + 1.0) / warm
        } else {
            0.5 * base * (1.0 + (std::f64::consts::PI * (s - warm) / (total - warm).max(1.0)).cos())
        }
    }
}

/// Files a run keeps in its work folder.
pub struct TrainPaths {
    /// Best weights so far (by validation accuracy).
    pub best: PathBuf,
    /// Weights after the last finished epoch, with optimiser state, for resuming.
    pub last: PathBuf,
    pub state: PathBuf,
}

impl TrainPaths {
    pub fn in_dir(dir: &Path) -> Self {
        TrainPaths {
            best: dir.join("best.safetensors"),
            last: dir.join("last.safetensors"),
            state: dir.join("train-state.json"),
        }
    }
}

/// Trains `graph` in place on `splits.train`, choosing the best epoch on `splits.val`; on
/// return `graph` holds the best weights. Each epoch's end is checkpointed atomically in
/// `work_dir`; calling again with the same config resumes after the last finished epoch.
pub fn train(
    graph: &mut Graph,
    splits: &Splits,
    cfg: &TrainConfig,
    work_dir: &Path,
    observer: &mut dyn TrainObserver,
) -> Result<TrainReport> {
    train_with_teacher(graph, splits, cfg, work_dir, None, observer)
}

/// Like [`train`], with an optional teacher for distillation (e.g. recovery fine-tuning of a
/// pruned model against the unpruned one). The teacher runs in eval mode on the same inputs.
pub fn train_with_teacher(
    graph: &mut Graph,
    splits: &Splits,
    cfg: &TrainConfig,
    work_dir: &Path,
    teacher: Option<(&Graph, Distill)>,
    observer: &mut dyn TrainObserver,
) -> Result<TrainReport> {
    cfg.check()?;
    if let Some((_, d)) = &teacher {
        d.check()?;
        if cfg.head_only {
            crate::bail!("distillation trains the whole model; it cannot be combined with head-only training");
        }
    }
    let distill = teacher.as_ref().map(|(_, d)| *d);
    std::fs::create_dir_all(work_dir).map_err(Error::io("create directory", work_dir))?;
    if cfg.head_only {
        return train_head(graph, splits, cfg, work_dir, observer);
    }
    let paths = TrainPaths::in_dir(work_dir);
    let params = graph.trainable();
    let mut opt = OptimState {
        step: 0,
        m: params.iter().map(|(_, p)| p.zeros_like()).collect(),
        v: params.iter().map(|(_, p)| p.zeros_like()).collect(),
    };
    let mut history: Vec<EpochRecord> = Vec::new();
    let (mut best_epoch, mut best_val) = (0usize, -1.0f64);
    let mut start_val: Option<f64> = None;

    if paths.state.is_file() && paths.last.is_file() {
        let st: ResumeState = crate::util::read_json(&paths.state)?;
        if st.config != *cfg || st.distill != distill {
            crate::bail!(
                "{} holds an interrupted run with a different recipe; delete the folder to start over",
                work_dir.display()
            );
        }
        graph.load_safetensors_with_extra(&paths.last, |k, t| {
            if let Some(i) = k.strip_prefix("optim.m.").and_then(|i| i.parse::<usize>().ok()) {
                tch::no_grad(|| opt.m[i].copy_(t));
            } else if let Some(i) = k.strip_prefix("optim.v.").and_then(|i| i.parse::<usize>().ok()) {
                tch::no_grad(|| opt.v[i].copy_(t));
            } else if k == "optim.step" {
                opt.step = t.int64_value(&[]);
            }
        })?;
        history = st.history;
        best_epoch = st.best_epoch;
        best_val = st.best_val_accuracy;
        start_val = st.start_val_accuracy;
    }

    let val: Subset = if cfg.val_samples > 0 { splits.val.head(cfg.val_samples) } else { splits.val.clone() };
    if cfg.keep_start && history.is_empty() && start_val.is_none() {
        // The starting weights are the first candidate: an epoch must beat them to be kept.
        let acc = accuracy(graph, &val, &EvalOptions::default())?;
        start_val = Some(acc);
        best_val = acc;
        graph.save_safetensors(&paths.best)?;
    }
    // The best epoch among those run (for the report, even where the start wins).
    let mut best_run: Option<(usize, f64)> =
        history.iter().map(|r| (r.epoch, r.val_accuracy)).fold(None, |b, (e, a)| match b {
            Some((_, ba)) if ba >= a => b,
            _ => Some((e, a)),
        });
    graph.set_requires_grad(true);
    let params = graph.trainable();
    let n_train = splits.train.len();
    // Long token sequences cap the batch (Dataset::max_batch), as everywhere else.
    let batch_size = cfg.batch_size.min(splits.train.data.max_batch()).max(1);
    let steps_per_epoch = cfg.steps_per_epoch.unwrap_or_else(|| n_train.div_ceil(batch_size));

    for epoch in history.len()..cfg.epochs {
        let t0 = std::time::Instant::now();
        // Dropout draws from libtorch's generator: seed it per epoch so a resumed run matches.
        tch::manual_seed(crate::util::derive_seed(cfg.seed, &format!("torch/{epoch}")) as i64);
        let batches = epoch_batches(n_train, batch_size, cfg.seed, epoch, cfg.steps_per_epoch);
        let mut aug_rng = crate::util::rng(crate::util::derive_seed(cfg.seed, &format!("augment/{epoch}")));
        observer.epoch_started(epoch, steps_per_epoch);
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for (b, chunk) in batches.iter().enumerate() {
            let idx: Vec<usize> = chunk.iter().map(|&i| splits.train.indices[i]).collect();
            let batch = splits.train.data.batch(&idx)?.to_device(graph.device())?;
            let mut inputs = batch.inputs;
            if inputs[0].kind() == Kind::Float && inputs[0].dim() == 4 {
                inputs[0] = augment(&inputs[0], &cfg.augment, &mut aug_rng)?;
            }
            let (logits, labels) = per_target(graph.forward(&inputs, Mode::Train)?, &batch.labels)?;
            let loss = match &teacher {
                Some((t, d)) => {
                    let (soft, _) = per_target(tch::no_grad(|| t.forward(&inputs, Mode::Eval))?, &batch.labels)?;
                    distill_loss(&logits, &soft, &labels, d, cfg.label_smoothing)?
                }
                None => {
                    logits.f_cross_entropy_loss(&labels, None::<Tensor>, Reduction::Mean, -100, cfg.label_smoothing)?
                }
            };
            let lv = loss.double_value(&[]);
            if !lv.is_finite() {
                crate::bail!("training diverged at epoch {epoch}, batch {b} (loss {lv}); lower the learning rate");
            }
            let grads =
                Tensor::f_run_backward(&[&loss], &params.iter().map(|(_, p)| p).collect::<Vec<_>>(), false, false)?;
            let lr = cfg.lr_at(epoch * steps_per_epoch + b, steps_per_epoch);
            step(&cfg.optimizer, lr, &params, &grads, &mut opt)?;
            loss_sum += lv * chunk.len() as f64;
            seen += chunk.len();
            observer.batch_done(b, lv);
        }
        let val_hits = crate::metrics::evaluate_split(graph, &val, &EvalOptions::default())?;
        let val_acc = val_hits.accuracy();
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / seen as f64,
            val_accuracy: val_acc,
            val_perplexity: val_hits.next_token().map(|s| s.perplexity),
            seconds: t0.elapsed().as_secs_f64(),
        };
        observer.epoch_done(&record);
        history.push(record);
        if best_run.is_none_or(|(_, a)| val_acc > a) {
            best_run = Some((epoch, val_acc));
        }
        if val_acc > best_val {
            best_val = val_acc;
            best_epoch = epoch;
            graph.save_safetensors(&paths.best)?;
        }
        save_resume(graph, &opt, &paths)?;
        crate::util::write_json_atomic(
            &paths.state,
            &ResumeState {
                config: cfg.clone(),
                distill,
                history: history.clone(),
                best_epoch,
                best_val_accuracy: best_val,
                start_val_accuracy: start_val,
            },
        )?;
        if epoch + 1 < cfg.epochs && observer.should_stop() {
            graph.set_requires_grad(false);
            return Err(Error::Interrupted(format!(
                "training stopped after epoch {}; run the same command again to resume from {}",
                epoch + 1,
                work_dir.display()
            )));
        }
    }
    graph.set_requires_grad(false);
    graph.load_safetensors(&paths.best)?;
    // Summed over epochs, so time spent before a resume counts too.
    let wall: f64 = history.iter().map(|r| r.seconds).sum();
    let kept_start = start_val.is_some_and(|s| best_run.is_none_or(|(_, a)| a <= s));
    if kept_start {
        best_epoch = best_run.map_or(0, |(e, _)| e);
    }
    Ok(TrainReport {
        history,
        best_epoch,
        best_val_accuracy: best_val,
        wall_seconds: wall,
        start_val_accuracy: start_val,
        kept_start,
    })
}

/// The train-split positions of each batch of `epoch`: one pass over a seeded permutation in
/// batches of `batch` (the last one smaller), or with `steps` set, `steps` full batches taken
/// in turn from a stream of seeded permutations (pass k: the permutation of "epoch/k"), so that
/// epochs of any length cover the text evenly and a resumed run draws the same batches.
fn epoch_batches(n: usize, batch: usize, seed: u64, epoch: usize, steps: Option<usize>) -> Vec<Vec<usize>> {
    let pass = |k: usize| crate::data::permutation(n, crate::util::derive_seed(seed, &format!("epoch/{k}")));
    let Some(steps) = steps else {
        return pass(epoch).chunks(batch).map(<[usize]>::to_vec).collect();
    };
    let per_batch = batch.min(n).max(1);
    let start = epoch * steps * per_batch;
    let (mut k, mut order) = (start / n, pass(start / n));
    (0..steps)
        .map(|b| {
            (0..per_batch)
                .map(|j| {
                    let at = start + b * per_batch + j;
                    if at / n != k {
                        k = at / n;
                        order = pass(k);
                    }
                    order[at % n]
                })
                .collect()
        })
        .collect()
}

fn save_resume(graph: &Graph, opt: &OptimState, paths: &TrainPaths) -> Result<()> {
    let mut store = graph.params().clone_shallow();
    for (i, t) in opt.m.iter().enumerate() {
        store.insert(format!("optim.m.{i}"), t.shallow_clone());
    }
    for (i, t) in opt.v.iter().enumerate() {
        store.insert(format!("optim.v.{i}"), t.shallow_clone());
    }
    store.insert("optim.step".into(), Tensor::from(opt.step));
    store.write_safetensors(&paths.last)
}

/// One optimiser step on every parameter.
fn step(o: &Optimizer, lr: f64, params: &[(String, Tensor)], grads: &[Tensor], st: &mut OptimState) -> Result<()> {
    st.step += 1;
    tch::no_grad(|| -> Result<()> {
        for (i, ((_, p), g)) in params.iter().zip(grads).enumerate() {
            // No weight decay on biases and normalisation parameters (1-D tensors).
            let decays = p.dim() > 1;
            let mut p = p.shallow_clone();
            match *o {
                Optimizer::Sgd { momentum, nesterov, weight_decay, .. } => {
                    let g = if decays && weight_decay > 0.0 {
                        g.f_add(&p.f_mul_scalar(weight_decay)?)?
                    } else {
                        g.shallow_clone()
                    };
                    let buf = &mut st.m[i];
                    let _ = buf.f_mul_scalar_(momentum)?.f_add_(&g)?;
                    let d = if nesterov { g.f_add(&buf.f_mul_scalar(momentum)?)? } else { buf.shallow_clone() };
                    let _ = p.f_sub_(&d.f_mul_scalar(lr)?)?;
                }
                Optimizer::AdamW { beta1, beta2, eps, weight_decay, .. } => {
                    if decays && weight_decay > 0.0 {
                        let _ = p.f_mul_scalar_(1.0 - lr * weight_decay)?;
                    }
                    let _ = st.m[i].f_mul_scalar_(beta1)?.f_add_(&g.f_mul_scalar(1.0 - beta1)?)?;
                    let _ = st.v[i].f_mul_scalar_(beta2)?.f_add_(&g.f_mul(g)?.f_mul_scalar(1.0 - beta2)?)?;
                    let bc1 = 1.0 - beta1.powi(st.step as i32);
                    let bc2 = 1.0 - beta2.powi(st.step as i32);
                    let denom = st.v[i].f_div_scalar(bc2)?.f_sqrt()?.f_add_scalar(eps)?;
                    let _ = p.f_sub_(&st.m[i].f_div(&denom)?.f_mul_scalar(lr / bc1)?)?;
                }
            }
        }
        Ok(())
    })
}

/// Random crop with padding and horizontal flip, per sample.
fn augment(x: &Tensor, a: &Augment, rng: &mut rand_chacha::ChaCha8Rng) -> Result<Tensor> {
    if a.crop_padding == 0 && !a.hflip {
        return Ok(x.shallow_clone());
    }
    let s = x.size();
    let (h, w, p) = (s[2], s[3], a.crop_padding);
    let padded = if p > 0 {
        x.f_sub_scalar(a.fill)?.f_constant_pad_nd([p, p, p, p])?.f_add_scalar(a.fill)?
    } else {
        x.shallow_clone()
    };
    let mut out = Vec::with_capacity(s[0] as usize);
    for i in 0..s[0] {
        let (dy, dx) = if p > 0 { (rng.random_range(0..=2 * p), rng.random_range(0..=2 * p)) } else { (0, 0) };
        let mut img = padded.f_get(i)?.f_narrow(1, dy, h)?.f_narrow(2, dx, w)?;
        if a.hflip && rng.random::<bool>() {
            img = img.f_flip([2])?;
        }
        out.push(img);
    }
    Ok(Tensor::f_stack(&out, 0)?)
}

/// Inputs of the output layer for every sample of `split` (frozen graph, eval mode).
fn head_features(graph: &Graph, split: &Subset, observer: &mut dyn TrainObserver) -> Result<(Tensor, Tensor)> {
    let feat = graph.node(graph.output()).inputs[0];
    let batches = split.len().div_ceil(64);
    observer.epoch_started(usize::MAX, batches);
    let mut feats = Vec::with_capacity(batches);
    let mut labels = Vec::with_capacity(batches);
    for (i, b) in split.batches(64).enumerate() {
        let b = b?;
        let outs = tch::no_grad(|| graph.forward_all(&b.inputs, Mode::Eval))?;
        feats.push(outs[feat].shallow_clone());
        labels.push(b.labels.f_to_device(graph.device())?);
        observer.batch_done(i, 0.0);
    }
    Ok((Tensor::f_cat(&feats, 0)?, Tensor::f_cat(&labels, 0)?))
}

/// Head-only training: features once (cached in the work folder), then the output Linear.
fn train_head(
    graph: &mut Graph,
    splits: &Splits,
    cfg: &TrainConfig,
    work_dir: &Path,
    observer: &mut dyn TrainObserver,
) -> Result<TrainReport> {
    let out = graph.output();
    if !graph.node(out).op.kind().linear_classifier() {
        crate::bail!("head-only training needs a Linear output layer");
    }
    let cache = work_dir.join("features.safetensors");
    let t0 = std::time::Instant::now();
    let val: Subset = if cfg.val_samples > 0 { splits.val.head(cfg.val_samples) } else { splits.val.clone() };
    let cached = crate::graph::ParamStore::read_safetensors(&cache).ok().filter(|s| {
        s.get("train.x").is_some_and(|t| t.size()[0] == splits.train.len() as i64)
            && s.get("val.x").is_some_and(|t| t.size()[0] == val.len() as i64)
    });
    let store = match cached {
        Some(s) => s,
        None => {
            let (tx, ty) = head_features(graph, &splits.train, observer)?;
            let (vx, vy) = head_features(graph, &val, observer)?;
            let mut s = crate::graph::ParamStore::default();
            s.insert("train.x".into(), tx);
            s.insert("train.y".into(), ty);
            s.insert("val.x".into(), vx);
            s.insert("val.y".into(), vy);
            s.write_safetensors(&cache)?;
            s
        }
    };
    let feature_seconds = t0.elapsed().as_secs_f64();
    // Cached features are read on the host; the head trains where the graph lives.
    let on = |k: &str| store.get(k).expect("checked above").f_to_device(graph.device());
    let (tx, ty, vx, vy) = (&on("train.x")?, &on("train.y")?, &on("val.x")?, &on("val.y")?);
    let w = graph.require_param(out, Role::Weight)?.detach().set_requires_grad(true);
    let b = graph.require_param(out, Role::Bias)?.detach().set_requires_grad(true);
    let params = vec![("weight".to_string(), w.shallow_clone()), ("bias".to_string(), b.shallow_clone())];
    let mut opt =
        OptimState { step: 0, m: vec![w.zeros_like(), b.zeros_like()], v: vec![w.zeros_like(), b.zeros_like()] };
    let n = tx.size()[0] as usize;
    let steps_per_epoch = n.div_ceil(cfg.batch_size);
    let mut history = Vec::new();
    let (mut best_epoch, mut best_val, mut best) = (0, -1.0, (w.detach().copy(), b.detach().copy()));
    for epoch in 0..cfg.epochs {
        let t = std::time::Instant::now();
        let order = crate::data::permutation(n, crate::util::derive_seed(cfg.seed, &format!("epoch/{epoch}")));
        observer.epoch_started(epoch, steps_per_epoch);
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for (bi, chunk) in order.chunks(cfg.batch_size).enumerate() {
            let idx =
                Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>()).f_to_device(tx.device())?;
            let logits = tx.f_index_select(0, &idx)?.f_linear(&w, Some(&b))?;
            let loss = logits.f_cross_entropy_loss(
                &ty.f_index_select(0, &idx)?,
                None::<Tensor>,
                Reduction::Mean,
                -100,
                cfg.label_smoothing,
            )?;
            let grads = Tensor::f_run_backward(&[&loss], &[&w, &b], false, false)?;
            step(&cfg.optimizer, cfg.lr_at(epoch * steps_per_epoch + bi, steps_per_epoch), &params, &grads, &mut opt)?;
            loss_sum += loss.double_value(&[]) * chunk.len() as f64;
            seen += chunk.len();
            observer.batch_done(bi, loss.double_value(&[]));
        }
        let val_acc = tch::no_grad(|| -> Result<f64> {
            let pred = vx.f_linear(&w, Some(&b))?.f_argmax(-1, false)?;
            Ok(pred.f_eq_tensor(vy)?.f_to_kind(Kind::Double)?.f_mean(Kind::Double)?.double_value(&[]))
        })?;
        let mut seconds = t.elapsed().as_secs_f64();
        if epoch == 0 {
            seconds += feature_seconds;
        }
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / seen as f64,
            val_accuracy: val_acc,
            val_perplexity: None,
            seconds,
        };
        observer.epoch_done(&record);
        history.push(record);
        if val_acc > best_val {
            best_val = val_acc;
            best_epoch = epoch;
            best = (w.detach().copy(), b.detach().copy());
        }
    }
    for (role, t) in [(Role::Weight, best.0), (Role::Bias, best.1)] {
        let key = graph.node(out).params[&role].clone();
        graph.params_mut().insert(key, t);
    }
    let wall = history.iter().map(|r| r.seconds).sum();
    Ok(TrainReport {
        history,
        best_epoch,
        best_val_accuracy: best_val,
        wall_seconds: wall,
        start_val_accuracy: None,
        kept_start: false,
    })
}

#[cfg(test)]
mod tests {
    use super::epoch_batches;

    #[test]
    fn a_pass_per_epoch_covers_the_split_once() {
        let b = epoch_batches(10, 4, 7, 2, None);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        let mut all: Vec<usize> = b.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn epochs_of_steps_walk_a_stream_of_passes() {
        // 3 steps of 4 over 10 samples: epochs 0 and 1 read positions 0..12 and 12..24 of the
        // stream, so pass 0 is read whole before pass 1 starts, and pass 1 whole by epoch 1.
        let (e0, e1) = (epoch_batches(10, 4, 7, 0, Some(3)), epoch_batches(10, 4, 7, 1, Some(3)));
        assert!(e0.iter().chain(&e1).all(|b| b.len() == 4));
        let stream: Vec<usize> = e0.concat().into_iter().chain(e1.concat()).collect();
        let mut pass0 = stream[..10].to_vec();
        pass0.sort();
        assert_eq!(pass0, (0..10).collect::<Vec<_>>());
        // The first pass is the same permutation as one-pass epochs use for epoch 0.
        assert_eq!(stream[..10], epoch_batches(10, 4, 7, 0, None).concat()[..]);
        let mut pass1 = stream[10..20].to_vec();
        pass1.sort();
        assert_eq!(pass1, (0..10).collect::<Vec<_>>());
        // Deterministic: a resumed run draws the same batches.
        assert_eq!(e1, epoch_batches(10, 4, 7, 1, Some(3)));
        // A batch larger than the split is the split.
        assert_eq!(epoch_batches(3, 8, 1, 0, Some(2)).iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3]);
    }
}
