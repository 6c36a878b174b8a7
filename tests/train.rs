//! Training: the loss falls, runs are deterministic under the seed, and an interrupted run
//! resumes to exactly the weights of an uninterrupted one.

use relprune::data::fashion_mnist::{split_train_file, GreyImages};
use relprune::data::{Dataset, Splits};
use relprune::graph::Graph;
use relprune::models::Architecture;
use relprune::train::{train, Augment, EpochRecord, Optimizer, TrainConfig, TrainObserver};
use std::sync::Arc;

/// 4 classes of 8×8 images: noise plus a bright bar whose row is the class.
fn synthetic(n: usize, seed: u64) -> Arc<dyn Dataset> {
    use rand::RngExt;
    let mut rng = relprune::util::rng(seed);
    let mut bytes = Vec::with_capacity(n * 64);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = (i % 4) as i64;
        for y in 0..8 {
            for _ in 0..8 {
                let base: u8 = rng.random_range(0..100);
                bytes.push(if y == 2 * c as usize { base.saturating_add(150) } else { base });
            }
        }
        labels.push(c);
    }
    Arc::new(GreyImages::from_bytes(&bytes, n, 8, 8, labels, "synthetic bars".into()).unwrap())
}

fn splits() -> Splits {
    split_train_file(synthetic(480, 1), synthetic(80, 2))
}

fn model() -> Graph {
    Architecture::parse("cifar_resnet18:width=4,in=1,size=8,classes=4").unwrap().build(5).unwrap()
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        optimizer: Optimizer::Sgd { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 5e-4 },
        warmup_epochs: 0.0,
        label_smoothing: 0.0,
        augment: Augment { crop_padding: 1, hflip: true, fill: 0.0 },
        seed: 11,
        val_samples: 0,
        head_only: false,
        keep_start: false,
        steps_per_epoch: None,
    }
}

struct Losses(Vec<f64>, Option<usize>);
impl TrainObserver for Losses {
    fn batch_done(&mut self, _b: usize, loss: f64) {
        self.0.push(loss);
    }
    fn epoch_done(&mut self, _r: &EpochRecord) {}
    fn should_stop(&mut self) -> bool {
        self.1.is_some_and(|n| self.0.len() >= n)
    }
}

fn weights_equal(a: &Graph, b: &Graph) -> bool {
    a.params().iter().all(|(k, t)| b.params().get(k).is_some_and(|u| t.equal(u)))
}

#[test]
fn one_epoch_lowers_the_loss_and_is_deterministic() {
    let s = splits();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut g1 = model();
    let mut obs = Losses(Vec::new(), None);
    let r1 = train(&mut g1, &s, &config(1), d1.path(), &mut obs).unwrap();
    let first: f64 = obs.0[..3].iter().sum::<f64>() / 3.0;
    let last: f64 = obs.0[obs.0.len() - 3..].iter().sum::<f64>() / 3.0;
    assert!(last < first * 0.9, "loss should fall within one epoch: {first:.3} -> {last:.3}");
    let mut g2 = model();
    let r2 = train(&mut g2, &s, &config(1), d2.path(), &mut Losses(Vec::new(), None)).unwrap();
    assert!(weights_equal(&g1, &g2), "same seed, same weights");
    assert_eq!(r1.history[0].train_loss, r2.history[0].train_loss);
}

#[test]
fn interrupted_training_resumes_to_the_same_weights() {
    let s = splits();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut straight = model();
    train(&mut straight, &s, &config(2), d1.path(), &mut Losses(Vec::new(), None)).unwrap();

    let mut g = model();
    let err = train(&mut g, &s, &config(2), d2.path(), &mut Losses(Vec::new(), Some(1))).unwrap_err();
    assert!(err.to_string().contains("resume"), "{err}");
    // No half-written files: only the finished checkpoint and state.
    let names: Vec<String> =
        std::fs::read_dir(d2.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    let mut resumed = model();
    let r = train(&mut resumed, &s, &config(2), d2.path(), &mut Losses(Vec::new(), None)).unwrap();
    assert_eq!(r.history.len(), 2);
    assert!(weights_equal(&straight, &resumed), "resumed run must end with the same weights");
    // A different recipe in the same folder is refused rather than silently mixed.
    let mut other = config(3);
    other.seed = 1;
    let err = train(&mut model(), &s, &other, d2.path(), &mut Losses(Vec::new(), None)).unwrap_err();
    assert!(err.to_string().contains("different recipe"), "{err}");
}
