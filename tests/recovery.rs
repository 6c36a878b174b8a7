//! Recovery fine-tuning after pruning: it raises validation accuracy, is deterministic under
//! its seed, resumes after an interruption to the same weights, and its distillation loss is
//! the textbook formula.

mod common;

use relprune::data::Splits;
use relprune::evaluate::{accuracy, EvalOptions};
use relprune::graph::Graph;
use relprune::models::Architecture;
use relprune::prune::components::{ComponentKind, ComponentSet};
use relprune::prune::ranking::PruneOrder;
use relprune::prune::surgery::{prune, GroupRanking};
use relprune::recovery::{finetune, FinetuneConfig};
use relprune::train::{distill_loss, Distill, EpochRecord, TrainObserver};
use tch::Tensor;

struct StopAfter(Option<usize>, usize);
impl TrainObserver for StopAfter {
    fn epoch_done(&mut self, _r: &EpochRecord) {
        self.1 += 1;
    }
    fn should_stop(&mut self) -> bool {
        self.0.is_some_and(|n| self.1 >= n)
    }
}

fn setup(dir: &std::path::Path) -> (Graph, Graph, Splits) {
    common::synthetic_fmnist(dir, 1200, 200);
    let splits = relprune::data::fashion_mnist::load_splits(dir).unwrap();
    let mut teacher = Architecture::parse("cifar_resnet18:width=8,in=1,size=8,classes=10").unwrap().build(4).unwrap();
    // Train the teacher itself (the same loop) so that pruning has something to lose.
    let cfg_t = FinetuneConfig { epochs: 3, lr: Some(0.05), batch_size: 64, val_samples: 100, ..Default::default() };
    let t2 = teacher.deep_clone();
    finetune(&mut teacher, &t2, &splits, None, &cfg_t, &dir.join("teacher"), &mut StopAfter(None, 0)).unwrap();
    let comps = ComponentSet::find(&teacher, ComponentKind::Filters).unwrap();
    use rand::RngExt;
    let mut rng = relprune::util::rng(9);
    let scores = relprune::attribution::Scores { values: (0..comps.total).map(|_| rng.random::<f64>()).collect() };
    let ranking = GroupRanking::new(&teacher, &comps, &scores, PruneOrder::LeastRelevantFirst).unwrap();
    let (small, _) = prune(&teacher, &comps, &ranking, &ranking.selection(0.6).unwrap()).unwrap();
    (teacher, small, splits)
}

fn weights_equal(a: &Graph, b: &Graph) -> bool {
    a.params().len() == b.params().len()
        && a.params().iter().all(|(k, t)| b.params().get(k).is_some_and(|u| t.equal(u)))
}

#[test]
fn fine_tuning_recovers_accuracy_deterministically_and_resumes_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let (teacher, small, splits) = setup(tmp.path());
    let val = splits.val.head(100);
    let opts = EvalOptions { batch_size: 64, classes: None };
    let pruned_acc = accuracy(&small, &val, &opts).unwrap();
    for distill in [None, Some(Distill { temperature: 4.0, alpha: 0.5 })] {
        let cfg = FinetuneConfig {
            epochs: 2,
            lr: Some(0.02),
            batch_size: 64,
            val_samples: 100,
            distill,
            ..Default::default()
        };
        let run = |dir: &str, stop: Option<usize>| {
            let mut g = small.deep_clone();
            let r = finetune(&mut g, &teacher, &splits, None, &cfg, &tmp.path().join(dir), &mut StopAfter(stop, 0));
            (g, r)
        };
        let (a, ra) = run(&format!("a-{distill:?}"), None);
        let (b, _) = run(&format!("b-{distill:?}"), None);
        assert!(weights_equal(&a, &b), "deterministic under the seed ({distill:?})");
        let tuned = accuracy(&a, &val, &opts).unwrap();
        assert!(tuned > pruned_acc, "{distill:?}: {pruned_acc} → {tuned}");
        assert_eq!(ra.unwrap().history.len(), 2);
        // Interrupted after the first epoch, then run again: the same weights as straight through.
        let dir = format!("c-{distill:?}");
        let (_, r) = run(&dir, Some(1));
        assert!(matches!(r, Err(relprune::Error::Interrupted(_))), "{r:?}");
        let (c, _) = run(&dir, None);
        assert!(weights_equal(&a, &c), "resumed to the same weights ({distill:?})");
    }
    // A resume with another recipe is refused rather than mixed.
    let cfg = FinetuneConfig { epochs: 2, lr: Some(0.03), batch_size: 64, val_samples: 100, ..Default::default() };
    let e = finetune(
        &mut small.deep_clone(),
        &teacher,
        &splits,
        None,
        &cfg,
        &tmp.path().join("c-None"),
        &mut StopAfter(None, 0),
    );
    assert!(e.is_ok() || e.unwrap_err().to_string().contains("different recipe"));
}

/// A fine-tune that makes the pruned model worse on validation (a learning rate far too high,
/// finite losses) hands back the pruned weights and says so; one that helps reports the pruned
/// model's validation accuracy beside its own.
#[test]
fn a_fine_tune_that_makes_things_worse_keeps_the_pruned_model_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (teacher, small, splits) = setup(tmp.path());
    let cfg = FinetuneConfig { epochs: 1, lr: Some(40.0), batch_size: 64, val_samples: 100, ..Default::default() };
    let mut g = small.deep_clone();
    match finetune(&mut g, &teacher, &splits, None, &cfg, &tmp.path().join("bad"), &mut StopAfter(None, 0)) {
        Ok(r) => {
            let start = r.start_val_accuracy.expect("the pruned model is measured first");
            assert!(r.kept_start, "{r:?}");
            assert!(r.history[0].val_accuracy <= start, "{r:?}");
            assert_eq!(r.best_val_accuracy, start);
            assert!(weights_equal(&g, &small), "the pruned weights are handed back");
        }
        // A loss that became infinite is the other honest outcome.
        Err(e) => assert!(e.to_string().contains("diverged"), "{e}"),
    }
    let cfg = FinetuneConfig { epochs: 2, lr: Some(0.02), batch_size: 64, val_samples: 100, ..Default::default() };
    let mut g = small.deep_clone();
    let r = finetune(&mut g, &teacher, &splits, None, &cfg, &tmp.path().join("good"), &mut StopAfter(None, 0)).unwrap();
    assert!(!r.kept_start && r.best_val_accuracy > r.start_val_accuracy.unwrap(), "{r:?}");
    assert!(!weights_equal(&g, &small));
}

#[test]
fn the_distillation_loss_is_the_textbook_formula() {
    let s = Tensor::from_slice(&[1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0]).reshape([2, 3]);
    let t = Tensor::from_slice(&[0.5f32, 2.5, 0.0, 1.0, -1.0, 2.0]).reshape([2, 3]);
    let y = Tensor::from_slice(&[1i64, 2]);
    let d = Distill { temperature: 2.0, alpha: 0.3 };
    let got = distill_loss(&s, &t, &y, &d, 0.0).unwrap().double_value(&[]);
    // By hand, in f64.
    let sv = [[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0]];
    let tv = [[0.5, 2.5, 0.0], [1.0, -1.0, 2.0]];
    let labels = [1usize, 2];
    let softmax = |v: &[f64; 3], temp: f64| {
        let m = v.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = v.iter().map(|x| ((x - m) / temp).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|x| x / z).collect::<Vec<f64>>()
    };
    let (mut ce, mut kl) = (0.0, 0.0);
    for i in 0..2 {
        ce -= softmax(&sv[i], 1.0)[labels[i]].ln();
        let (ps, pt) = (softmax(&sv[i], 2.0), softmax(&tv[i], 2.0));
        kl += (0..3).map(|j| pt[j] * (pt[j].ln() - ps[j].ln())).sum::<f64>();
    }
    let want = 0.7 * ce / 2.0 + 0.3 * 4.0 * kl / 2.0;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    // alpha = 0 is plain cross-entropy.
    let plain = s.cross_entropy_for_logits(&y).double_value(&[]);
    let d0 = Distill { temperature: 3.0, alpha: 0.0 };
    assert!((distill_loss(&s, &t, &y, &d0, 0.0).unwrap().double_value(&[]) - plain).abs() < 1e-6);
}
