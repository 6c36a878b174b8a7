//! Faults by class: bad input, broken files and failing storage must give a clear error (never a
//! panic, a libtorch backtrace or a silent default), and nothing may be lost. Each test names
//! the class it covers and drives the real command line where a user would meet the fault:
//! exit code, message and the files left on disk are all checked.

mod common;

use relprune::models::Architecture;
use relprune::optimize::storage::{worker_id, Sql};
use relprune::optimize::{
    best_trial, connect, run_worker, ModelTraits, Objective, Params, SamplerKind, SearchSpace, StudyDefinition,
    StudyObserver, StudyStore, TrialOutcome, TrialState,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TINY: &str = "cifar_resnet18:width=4,in=1,size=8,classes=10";

fn relprune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_relprune")).arg("--threads").arg("1").args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failed run: the exit code is not 0, the message says `want` (all of them), and nothing
/// crashed.
fn assert_clear_error(o: &Output, want: &[&str]) {
    let e = stderr(o);
    assert!(!o.status.success(), "expected a failure, got success: {e}");
    for w in want {
        assert!(e.contains(w), "message should say `{w}`: {e}");
    }
    for crash in ["panicked", "RUST_BACKTRACE", "Exception raised from", "frame #", "libc10", "Internal torch error"] {
        assert!(!e.contains(crash), "crash marker `{crash}` in: {e}");
    }
}

fn fmnist(dir: &Path) -> PathBuf {
    let d = dir.join("fmnist");
    std::fs::create_dir_all(&d).unwrap();
    common::synthetic_fmnist(&d, 600, 120);
    d
}

/// Every file under `dir` with its bytes (to show that outputs stayed untouched).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

// --- Crashes: numeric options are validated at parse time ---------------------------------------

#[test]
fn numeric_options_out_of_range_are_refused_at_parse_time_with_their_range() {
    let cases: &[&[&str]] = &[
        &["prune", "--model", TINY, "--rate", "0.3", "--latency-runs", "100001"],
        &["prune", "--model", TINY, "--rate", "0.3", "--seq-len", "0"],
        &["prune", "--model", TINY, "--rate", "NaN"],
        &["prune", "--model", TINY, "--rate", "1.5"],
        &["info", "--model", TINY, "--seq-len=-4"],
        &["curve", "--model", TINY, "--eval-batch", "0"],
        &["curve", "--model", TINY, "--attribution-batch", "0"],
        &["curve", "--model", TINY, "--refs-per-class", "0"],
        &["curve", "--model", TINY, "--classes", "1"],
        &["curve", "--model", TINY, "--eval-samples=-1"],
        &["optimize", "--model", TINY, "--trials", "0"],
        &["demo", "--eval-samples", "0"],
        &["--threads", "0", "info", "--model", TINY],
        &["--threads", "100000000", "info", "--model", TINY],
    ];
    for args in cases {
        let o = Command::new(env!("CARGO_BIN_EXE_relprune")).args(*args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains("allowed range") || e.contains("outside [0, 1)") || e.contains("not a"), "{args:?}: {e}");
        assert_clear_error(&o, &[]);
    }
    // The environment goes through the same parser.
    let o = Command::new(env!("CARGO_BIN_EXE_relprune"))
        .env("RELPRUNE_THREADS", "999999")
        .args(["info", "--model", TINY])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_clear_error(&o, &["allowed range 1..=256"]);
    // Every range is stated in --help.
    let help = Command::new(env!("CARGO_BIN_EXE_relprune")).args(["prune", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for opt in ["--latency-runs", "--seq-len", "--rate", "--eval-batch", "--refs-per-class", "--threads"] {
        // The option's own entry (not its mention in the usage line).
        let pos = help.find(&format!("\n      {opt} ")).unwrap_or_else(|| panic!("{opt} in help"));
        let section = &help[pos..(pos + 400).min(help.len())];
        assert!(section.contains("[range:"), "{opt} help states its range: {section}");
    }
}

#[test]
fn absurd_resource_requests_are_refused_before_allocation() {
    // A rate grid of a trillion points.
    let o = relprune(&["curve", "--model", TINY, "--rates", "0:0.9:1e-12"]);
    assert_clear_error(&o, &["at most 1000"]);
    // More tokens than the model's positions.
    let bert = "bert:vocab=100,dim=32,layers=1,heads=4,mlp=64,positions=16,max_len=16,pooling=cls,classes=3";
    let o = relprune(&["info", "--model", bert, "--seq-len", "4096"]);
    assert_clear_error(&o, &["--seq-len 4096", "1 to 16 tokens"]);
    // An architecture too large to allocate.
    let o = relprune(&["info", "--model", "cifar_resnet18:width=1000000,in=1,size=8,classes=10"]);
    assert_clear_error(&o, &["width"]);
    let o = relprune(&["info", "--model", "cifar_resnet18:width=4,in=1,size=1000000,classes=10"]);
    assert_clear_error(&o, &["size"]);
}

#[test]
fn an_idx_header_past_two_to_the_32_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = fmnist(tmp.path());
    // 4 × 2^31 × 2^31 images with a few bytes of data.
    let mut bytes = vec![0, 0, 8, 3];
    for dim in [4u32, 1 << 31, 1 << 31] {
        bytes.extend_from_slice(&dim.to_be_bytes());
    }
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(d.join("train-images-idx3-ubyte"), bytes).unwrap();
    let o = relprune(&["curve", "--model", TINY, "--fmnist-dir", d.to_str().unwrap()]);
    assert_clear_error(&o, &["IDX", "train-images-idx3-ubyte"]);
}

// --- Silently wrong results ----------------------------------------------------------------------

fn image_folder(root: &Path, layout: &[(&str, &str, usize)]) {
    for (split, class, n) in layout {
        let d = root.join(split).join(class);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..*n {
            image::RgbImage::from_pixel(40, 30, image::Rgb([(i * 40) as u8, 90, 200]))
                .save(d.join(format!("{i}.png")))
                .unwrap();
        }
    }
}

#[test]
fn image_folder_splits_must_agree_on_their_classes() {
    use relprune::data::image_folder::{load_splits, FolderOptions};
    let strict = FolderOptions::default();
    // val lacks a class: indices would shift.
    let t = tempfile::tempdir().unwrap();
    image_folder(
        t.path(),
        &[("train", "ant", 2), ("train", "bee", 2), ("train", "cat", 2), ("val", "ant", 2), ("val", "cat", 2)],
    );
    let e = load_splits(t.path(), strict).err().unwrap().to_string();
    assert!(e.contains("lacks the class folder(s) `bee`") && e.contains("val"), "{e}");
    // An extra class in test.
    let t = tempfile::tempdir().unwrap();
    image_folder(
        t.path(),
        &[
            ("train", "ant", 2),
            ("train", "bee", 2),
            ("val", "ant", 2),
            ("val", "bee", 2),
            ("test", "ant", 1),
            ("test", "bee", 1),
            ("test", "cow", 1),
        ],
    );
    let e = load_splits(t.path(), strict).err().unwrap().to_string();
    assert!(e.contains("`cow`") && e.contains("train/ does not have"), "{e}");
    // A differently named class: both sides are named.
    let t = tempfile::tempdir().unwrap();
    image_folder(t.path(), &[("train", "ant", 2), ("train", "bee", 2), ("val", "ant", 2), ("val", "Bee", 2)]);
    let e = load_splits(t.path(), strict).err().unwrap().to_string();
    assert!(e.contains("`bee`") && e.contains("`Bee`"), "{e}");
    // Hidden and empty folders outside train's classes are not classes.
    let t = tempfile::tempdir().unwrap();
    image_folder(
        t.path(),
        &[
            ("train", "ant", 2),
            ("train", "bee", 2),
            ("train", ".cache", 2),
            ("val", "ant", 2),
            ("val", "bee", 2),
            ("val", ".ipynb_checkpoints", 1),
        ],
    );
    std::fs::create_dir_all(t.path().join("val/unused")).unwrap();
    let s = load_splits(t.path(), strict).unwrap();
    assert_eq!(s.train.data.class_names(), &["ant".to_string(), "bee".to_string()]);
    assert_eq!(s.val.len() + s.test.len(), 4);
    // Labels follow the class name, not the folder's position in the split.
    let t = tempfile::tempdir().unwrap();
    image_folder(
        t.path(),
        &[
            ("train", "ant", 1),
            ("train", "bee", 1),
            ("train", "cat", 3),
            ("val", "ant", 1),
            ("val", "bee", 1),
            ("val", "cat", 1),
            ("test", "ant", 1),
            ("test", "bee", 1),
            ("test", "cat", 2),
        ],
    );
    let s = load_splits(t.path(), strict).unwrap();
    let test_labels: Vec<i64> = (0..s.test.len()).map(|i| s.test.label(i)).collect();
    assert_eq!(test_labels.iter().filter(|&&l| l == 2).count(), 2, "{test_labels:?}");
}

#[test]
fn an_empty_class_folder_in_train_is_an_error_unless_skipped() {
    use relprune::data::image_folder::{load_splits, FolderOptions};
    let t = tempfile::tempdir().unwrap();
    image_folder(
        t.path(),
        &[("train", "ant", 2), ("train", "cat", 2), ("val", "ant", 2), ("val", "bee", 1), ("val", "cat", 2)],
    );
    std::fs::create_dir_all(t.path().join("train/bee")).unwrap();
    let e = load_splits(t.path(), FolderOptions::default()).err().unwrap().to_string();
    assert!(e.contains("`bee`") && e.contains("hold no") && e.contains("--skip-empty-classes"), "{e}");
    // Through the CLI: exit 1 and the same message, before any model work.
    let data = format!("imagefolder:{}", t.path().display());
    let o = relprune(&["curve", "--model", "cifar_resnet18:width=4,in=3,size=224,classes=3", "--data", &data]);
    assert_clear_error(&o, &["`bee`", "--skip-empty-classes"]);
    // Asked to skip it: the class keeps its index (labels still match the model) and gets no
    // references.
    let s = load_splits(t.path(), FolderOptions { skip_empty_classes: true }).unwrap();
    assert_eq!(s.train.data.class_names().len(), 3);
    let refs = relprune::data::select_references(&s.train, 1, 0, None).unwrap();
    let labels: Vec<i64> = (0..refs.len()).map(|i| refs.label(i)).collect();
    assert_eq!(labels, vec![0, 2]);
}

#[test]
fn a_model_with_non_finite_weights_is_an_error_naming_the_first_bad_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let d = fmnist(tmp.path());
    let mut g = Architecture::parse(TINY).unwrap().build(1).unwrap();
    let key = "layer1.0.conv2.weight";
    let _ = g.params_mut().get_mut(key).unwrap().get(0).get(0).get(0).get(0).fill_(f64::NAN);
    let w = tmp.path().join("nan.safetensors");
    g.save_safetensors(&w).unwrap();
    for criterion in ["random", "weight", "lrp-epsilon"] {
        let out = tmp.path().join(format!("out-{criterion}"));
        let o = relprune(&[
            "curve",
            "--model",
            TINY,
            "--weights",
            w.to_str().unwrap(),
            "--fmnist-dir",
            d.to_str().unwrap(),
            "--criterion",
            criterion,
            "--refs-per-class",
            "2",
            "--eval-samples",
            "40",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_clear_error(&o, &["not finite", "layer1.0.conv2", key]);
        assert!(!out.exists(), "no output folder is left behind");
    }
    // Without data too.
    let o = relprune(&[
        "prune",
        "--model",
        TINY,
        "--weights",
        w.to_str().unwrap(),
        "--data",
        "none",
        "--criterion",
        "weight",
        "--rate",
        "0.2",
        "--out",
        tmp.path().join("p").to_str().unwrap(),
    ]);
    assert_clear_error(&o, &["not finite", "layer1.0.conv2"]);
}

#[test]
fn a_model_whose_outputs_do_not_match_the_data_classes_is_named_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let d = fmnist(tmp.path());
    for cmd in ["curve", "optimize"] {
        let o = relprune(&[
            cmd,
            "--model",
            "cifar_resnet18:width=4,in=1,size=8,classes=4",
            "--fmnist-dir",
            d.to_str().unwrap(),
            "--out",
            tmp.path().join(cmd).to_str().unwrap(),
        ]);
        assert_clear_error(&o, &["4 outputs", "10 classes"]);
        assert!(!stderr(&o).contains("one_hot"));
    }
}

// --- The baseline trial of a study --------------------------------------------------------------

struct Quiet;
impl StudyObserver for Quiet {}

/// The baseline (the space's default) scores 0.5 at every step; other configurations score
/// 0.3–0.9 by a hash of their parameters, so the median pruner would stop the baseline once
/// better trials exist.
struct Fake {
    baseline: Params,
    evaluated_baseline: usize,
}

impl Objective for Fake {
    fn evaluate(&mut self, p: &Params, report: &mut dyn FnMut(i64, f64) -> bool) -> relprune::Result<TrialOutcome> {
        use std::hash::{Hash, Hasher};
        let v = if *p == self.baseline {
            self.evaluated_baseline += 1;
            0.5
        } else {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            serde_json::to_string(p).unwrap().hash(&mut h);
            0.55 + 0.35 * (h.finish() % 1000) as f64 / 1000.0
        };
        for step in 0..6 {
            if report(step, v) {
                return Ok(TrialOutcome::Pruned(v));
            }
        }
        Ok(TrialOutcome::Complete(v))
    }
}

/// Inserts a trial left `running` by a worker of this host that no longer exists (what a kill
/// leaves behind).
fn dead_running_trial(url: &str, number: i64, params: &Params) {
    let mut conn = connect(url).unwrap();
    let host = worker_id().split(':').next().unwrap().to_string();
    let json = serde_json::to_string(params).unwrap();
    conn.execute(
        "INSERT INTO relprune_trials (study_id, number, state, params, worker, started, heartbeat) VALUES (1, $1, 'running', $2, $3, 0, 0)",
        &[Sql::Int(number), Sql::Text(json), Sql::Text(format!("{host}:4000000000"))],
    )
    .unwrap();
}

fn completed(url: &str, number: i64, params: &Params, value: f64) {
    let mut conn = connect(url).unwrap();
    conn.execute(
        "INSERT INTO relprune_trials (study_id, number, state, params, value, worker, started, finished, heartbeat) VALUES (1, $1, 'complete', $2, $3, 'w:1', 0, 0, 0)",
        &[Sql::Int(number), Sql::Text(serde_json::to_string(params).unwrap()), Sql::Real(value)],
    )
    .unwrap();
    for step in 0..6 {
        conn.execute(
            "INSERT INTO relprune_intermediate (trial_id, step, value) SELECT id, $2, $3 FROM relprune_trials WHERE number = $1",
            &[Sql::Int(number), Sql::Int(step), Sql::Real(value)],
        )
        .unwrap();
    }
}

#[test]
fn the_baseline_is_evaluated_exactly_once_whatever_the_kill_pattern_or_sampler() {
    for kind in [SamplerKind::Tpe, SamplerKind::Gp, SamplerKind::Random, SamplerKind::Grid] {
        // The grid sampler needs a categorical space.
        let space = if kind == SamplerKind::Grid {
            SearchSpace::from_yaml(
                "low_rule: [zplus, epsilon, gamma]\nmid_rule: [gamma, epsilon, zplus]\nhigh_rule: [epsilon, zplus]\nabsolute: [false, true]\n",
            )
            .unwrap()
        } else {
            SearchSpace::default_for(ModelTraits::default())
        };
        baseline_once(kind, &space);
    }
}

fn baseline_once(kind: SamplerKind, space: &SearchSpace) {
    let space = space.clone();
    let baseline = space.default_params();
    let def = StudyDefinition { space: space.clone(), objective: serde_json::json!({"fake": 1}) };
    let other = |i: u64| {
        let s = SamplerKind::Random.build(100 + i);
        s.sample(&space, &[], i as i64).unwrap()
    };
    // Kill patterns, as what storage holds when the next worker starts.
    type Pattern<'a> = (&'static str, Box<dyn Fn(&str) + 'a>);
    let patterns: Vec<Pattern<'_>> = vec![
        ("killed during trial 0", Box::new(|url: &str| dead_running_trial(url, 0, &baseline))),
        (
            "killed during trial 0 twice",
            Box::new(|url: &str| {
                dead_running_trial(url, 0, &baseline);
                dead_running_trial(url, 1, &baseline);
            }),
        ),
        (
            "killed during trial 0 after better trials completed elsewhere",
            Box::new(|url: &str| {
                dead_running_trial(url, 0, &baseline);
                for i in 1..8 {
                    completed(url, i, &other(i as u64), 0.8 + 0.01 * i as f64);
                }
            }),
        ),
        ("never killed", Box::new(|_: &str| {})),
    ];
    {
        for (name, setup) in &patterns {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite:{}", dir.path().join("s.sqlite").display());
            drop(StudyStore::open(connect(&url).unwrap(), "s", &def).unwrap());
            setup(&url);
            let mut store = StudyStore::open(connect(&url).unwrap(), "s", &def).unwrap();
            let mut objective = Fake { baseline: baseline.clone(), evaluated_baseline: 0 };
            let sampler = kind.build(3);
            run_worker(
                &mut store,
                &space,
                sampler.as_ref(),
                Some(relprune::optimize::EarlyStop::Median(relprune::optimize::MedianStop {
                    startup_trials: 2,
                    warmup_steps: 1,
                })),
                &mut objective,
                12,
                std::slice::from_ref(&baseline),
                &mut Quiet,
            )
            .unwrap();
            let trials = store.trials().unwrap();
            let runs: Vec<_> =
                trials.iter().filter(|t| t.params == baseline && t.state != TrialState::Interrupted).collect();
            assert_eq!(runs.len(), 1, "{kind:?}, {name}: baseline trials {runs:?}");
            assert_eq!(runs[0].state, TrialState::Complete, "{kind:?}, {name}: the pruner never stops the baseline");
            assert_eq!(objective.evaluated_baseline, 1, "{kind:?}, {name}");
            let best = best_trial(&trials).unwrap().value.unwrap();
            assert!(best >= runs[0].value.unwrap(), "{kind:?}, {name}: best {best} below the baseline");
        }
    }
}

#[test]
fn non_finite_trial_values_in_storage_are_refused() {
    let space = SearchSpace::default_for(ModelTraits::default());
    let def = StudyDefinition { space: space.clone(), objective: serde_json::json!({"fake": 2}) };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("s.sqlite").display());
    drop(StudyStore::open(connect(&url).unwrap(), "s", &def).unwrap());
    completed(&url, 0, &space.default_params(), f64::INFINITY);
    let mut store = StudyStore::open(connect(&url).unwrap(), "s", &def).unwrap();
    let e = store.trials().err().unwrap().to_string();
    assert!(e.contains("trial 0") && e.contains("finite"), "{e}");
}

#[test]
fn storage_that_would_not_persist_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = fmnist(tmp.path());
    for storage in ["sqlite:", "sqlite::memory:", "sqlite:file::memory:?cache=shared", ""] {
        let out = tmp.path().join("out");
        let o = relprune(&[
            "optimize",
            "--model",
            TINY,
            "--fmnist-dir",
            d.to_str().unwrap(),
            "--storage",
            storage,
            "--trials",
            "2",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_clear_error(&o, &["would not be saved"]);
        assert!(!out.exists(), "{storage}: nothing written");
    }
}

// --- Lost or damaged output ------------------------------------------------------------------------

fn study_file(tmp: &Path) -> PathBuf {
    let space = SearchSpace::default_for(ModelTraits::default());
    let def = StudyDefinition { space: space.clone(), objective: serde_json::json!({"fake": 3}) };
    let path = tmp.join("study.sqlite");
    let mut store = StudyStore::open(connect(path.to_str().unwrap()).unwrap(), "s", &def).unwrap();
    let mut objective = Fake { baseline: space.default_params(), evaluated_baseline: 0 };
    run_worker(&mut store, &space, SamplerKind::Random.build(0).as_ref(), None, &mut objective, 30, &[], &mut Quiet)
        .unwrap();
    drop(store);
    path
}

#[test]
fn a_damaged_study_file_is_refused_before_any_write() {
    let tmp = tempfile::tempdir().unwrap();
    let path = study_file(tmp.path());
    // Empty the unique index on study names (its page keeps no cells): the table still holds
    // study `s`, the index no longer does, so an unchecked insert would add a second `s`.
    let root: i64 = {
        // One self-contained file (no write-ahead log beside it) to damage.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.query_row("PRAGMA journal_mode=DELETE", [], |_| Ok(())).unwrap();
        c.query_row("SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_relprune_studies_1'", [], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert!(!tmp.path().join("study.sqlite-wal").exists());
    let mut bytes = std::fs::read(&path).unwrap();
    let page = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
    let off = (root as usize - 1) * page;
    bytes[off + 3] = 0;
    bytes[off + 4] = 0;
    std::fs::write(&path, &bytes).unwrap();
    let space = SearchSpace::default_for(ModelTraits::default());
    let def = StudyDefinition { space, objective: serde_json::json!({"fake": 3}) };
    let e = connect(path.to_str().unwrap()).and_then(|c| StudyStore::open(c, "s", &def)).err().unwrap().to_string();
    assert!(e.contains("damaged") && e.contains("study.sqlite"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was written to the damaged file");
    // Heavier damage (every page but the schema) is refused the same way.
    for (i, b) in bytes.iter_mut().enumerate().skip(page) {
        if i % 7 != 0 {
            *b = (i * 31 % 251) as u8;
        }
    }
    std::fs::write(&path, &bytes).unwrap();
    let def = StudyDefinition {
        space: SearchSpace::default_for(ModelTraits::default()),
        objective: serde_json::json!({"fake": 3}),
    };
    assert!(connect(path.to_str().unwrap()).and_then(|c| StudyStore::open(c, "s", &def)).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn a_damaged_study_file_is_refused_by_the_cli_with_the_file_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let path = study_file(tmp.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let page = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
    for b in bytes.iter_mut().skip(page + 100).take(page) {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let o = relprune(&["study", "show", "--storage", &format!("sqlite:{}", path.display()), "--study", "s"]);
    assert_clear_error(&o, &[]);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn study_show_never_creates_a_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no/such/study.sqlite");
    let o = relprune(&["study", "show", "--storage", &format!("sqlite:{}", missing.display()), "--study", "x"]);
    assert_clear_error(&o, &["no study file"]);
    assert!(!tmp.path().join("no").exists());
}

#[test]
fn bad_out_and_report_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let d = fmnist(tmp.path());
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let started = std::time::Instant::now();
    for cmd in [&["optimize", "--trials", "50"][..], &["curve"], &["compare"], &["prune", "--rate", "0.3"]] {
        let mut args = cmd.to_vec();
        args.extend(["--model", TINY, "--fmnist-dir", d.to_str().unwrap(), "--out", file.to_str().unwrap()]);
        let o = relprune(&args);
        assert_clear_error(&o, &["a-file", "existing file"]);
    }
    let out = tmp.path().join("out");
    let o = relprune(&[
        "optimize",
        "--model",
        TINY,
        "--fmnist-dir",
        d.to_str().unwrap(),
        "--trials",
        "50",
        "--report",
        "lrp-epsilon,no-such-criterion",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clear_error(&o, &["no-such-criterion"]);
    assert!(!out.exists(), "no study was started");
    assert!(started.elapsed().as_secs() < 60, "refused before any trial ran");
}

/// A small tmpfs (root only); None, with a visible note, elsewhere.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let p = dir.join("fs");
        std::fs::create_dir_all(&p).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "relprune-test"])
            .arg(&p)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: full-disk cases need root to mount a tmpfs");
            return None;
        }
        Some(Tmpfs(p))
    }
    /// Fills the file system but `leave` bytes.
    fn fill(&self, leave: u64) {
        let free = {
            let o = Command::new("df").args(["--output=avail", "-B1"]).arg(&self.0).output().unwrap();
            String::from_utf8_lossy(&o.stdout).lines().nth(1).unwrap().trim().parse::<u64>().unwrap()
        };
        let _ = std::fs::write(self.0.join("filler"), vec![0u8; free.saturating_sub(leave) as usize]);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_run_and_leaves_the_previous_outputs_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let d = fmnist(tmp.path());
    let Some(fs) = Tmpfs::mount(tmp.path(), "3m") else { return };
    let out = fs.0.join("out");
    let prune = |criterion: &str| {
        relprune(&[
            "prune",
            "--model",
            TINY,
            "--fmnist-dir",
            d.to_str().unwrap(),
            "--criterion",
            criterion,
            "--rate",
            "0.2",
            "--refs-per-class",
            "2",
            "--eval-samples",
            "40",
            "--latency-runs",
            "1",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let first = prune("weight");
    assert!(first.status.success(), "{}", stderr(&first));
    let before = snapshot(&out);
    let names: Vec<_> = before.iter().map(|(p, _)| p.strip_prefix(&out).unwrap().display().to_string()).collect();
    for f in ["model/graph.json", "model/model.safetensors", "model/source.json", "model.onnx", "prune.json"] {
        assert!(names.contains(&f.to_string()), "{f} in {names:?}");
    }
    // Room for the new weights but not for the ONNX file as well: the case where the old
    // release exited 0 beside a stale model.onnx.
    fs.fill(std::fs::metadata(out.join("model/model.safetensors")).unwrap().len() + 40_000);
    let second = prune("random");
    assert_clear_error(&second, &["No space left", "free some space"]);
    assert_eq!(snapshot(&out), before, "the previous run's outputs are untouched and nothing partial is left");
    // The same for a curve (whose outputs are small: leave almost nothing).
    std::fs::remove_file(fs.0.join("filler")).unwrap();
    fs.fill(8_000);
    let curve_out = fs.0.join("curve");
    let o = relprune(&[
        "curve",
        "--model",
        TINY,
        "--fmnist-dir",
        d.to_str().unwrap(),
        "--criterion",
        "weight",
        "--refs-per-class",
        "2",
        "--eval-samples",
        "40",
        "--rates",
        "0,0.5",
        "--out",
        curve_out.to_str().unwrap(),
    ]);
    assert_clear_error(&o, &["No space left"]);
    assert!(!curve_out.join("curve.json").exists());
    // And the library's own writers say "no space", not "corrupt output".
    let g = Architecture::parse(TINY).unwrap().build(0).unwrap();
    let e = g.save_safetensors(&fs.0.join("w.safetensors")).err().unwrap().to_string();
    assert!(e.contains("No space left") && !e.contains("corrupt"), "{e}");
}

#[test]
fn outputs_replace_older_ones_as_a_set() {
    // A second run that cannot export ONNX must not leave the first run's model.onnx beside
    // its new report; a run that fails leaves no staging folder.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let dir = relprune::util::OutputDir::new(&out).unwrap();
    std::fs::write(dir.path().join("model.onnx"), b"old").unwrap();
    std::fs::write(dir.path().join("prune.json"), b"{\"run\": 1}").unwrap();
    dir.commit(&["model.onnx", "prune.json"]).unwrap();
    let dir = relprune::util::OutputDir::new(&out).unwrap();
    std::fs::write(dir.path().join("prune.json"), b"{\"run\": 2}").unwrap();
    dir.commit(&["model.onnx", "prune.json"]).unwrap();
    assert!(!out.join("model.onnx").exists());
    assert_eq!(std::fs::read(out.join("prune.json")).unwrap(), b"{\"run\": 2}");
    {
        let dir = relprune::util::OutputDir::new(&out).unwrap();
        std::fs::write(dir.path().join("prune.json"), b"{\"run\": 3}").unwrap();
        // dropped without commit: a failed run
    }
    assert_eq!(std::fs::read(out.join("prune.json")).unwrap(), b"{\"run\": 2}");
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("prune.json")], "no staging folder left");
}

// --- Unclear errors -----------------------------------------------------------------------------------

#[test]
fn postgresql_failures_show_the_servers_reason() {
    let pg = common::PgServer::start();
    let base = pg.url.rsplit_once('/').unwrap().0.to_string();
    let e = connect(&format!("{base}/no_such_db")).err().unwrap().to_string();
    assert!(e.contains("database \"no_such_db\" does not exist"), "{e}");
    let port = base.rsplit_once(':').unwrap().1;
    let e = connect(&format!("postgresql://nobody:secret@127.0.0.1:{port}/postgres")).err().unwrap().to_string();
    assert!(e.contains("role \"nobody\" does not exist") && !e.contains("secret"), "{e}");
    assert!(!e.contains("db error") || e.contains("does not exist"), "{e}");
}

/// What changes the objective's value (the axis, the group order, the per-layer normalisation)
/// is part of a study's objective: resuming under another one is refused, not mixed in.
#[test]
fn a_study_is_not_resumed_under_another_normalisation_or_axis() {
    let tmp = tempfile::tempdir().unwrap();
    let d = fmnist(tmp.path());
    let db = format!("sqlite:{}", tmp.path().join("study.sqlite").display());
    let run = |trials: &str, extra: &[&str]| {
        let out = tmp.path().join(format!("out{trials}{}", extra.len()));
        let _ = std::fs::remove_dir_all(&out);
        let mut args = vec!["optimize", "--model", TINY, "--fmnist-dir", d.to_str().unwrap(), "--storage", &db];
        args.extend(["--study", "s", "--trials", trials, "--refs-per-class", "1", "--val-samples", "40"]);
        args.extend(["--rates", "0:0.4:0.2", "--report", "none", "--out", out.to_str().unwrap()]);
        args.extend(extra);
        relprune(&args)
    };
    let o = run("1", &["--normalize", "mean", "--noise-draws", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Every study writes its plots and the objective's noise next to the gain.
    let out = tmp.path().join("out14");
    for f in ["history.png", "gain.png", "parallel.png", "importance.png", "best-rules.yaml"] {
        assert!(out.join(f).is_file(), "{f} written");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let noise = &summary["noise"];
    assert_eq!(noise["draws"], 3);
    assert_eq!(noise["first_draw"], 3, "held out: after the 3 draws the objective averages by default");
    assert_eq!(noise["baseline"].as_array().unwrap().len(), 3);
    // One trial: the best is LRP-ε itself, so the gain is exactly zero on every draw.
    assert_eq!(noise["baseline"], noise["best"]);
    assert_eq!(noise["gain"], 0.0);
    assert_clear_error(&run("2", &[]), &["different objective"]);
    assert_clear_error(&run("2", &["--normalize", "mean", "--axis", "macs"]), &["different objective"]);
    let o = run("2", &["--normalize", "mean"]);
    assert!(o.status.success(), "the same objective resumes: {}", stderr(&o));
}

// --- Exits: an interrupt or a failed rename leaves no partial output behind ---------------------

/// Staging folders and temporary files a run leaves in `dir` (none after any exit).
fn partials(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".relprune-partial-") || n.contains(".tmp-"))
        .collect()
}

#[test]
fn an_interrupt_removes_unfinished_outputs_and_keeps_the_previous_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let d = fmnist(tmp.path());
    let out = tmp.path().join("out");
    let args = ["compare", "--model", TINY, "--fmnist-dir", d.to_str().unwrap(), "--eval-samples", "120"];
    let o = relprune(&[&args[..], &["--criteria", "weight", "--out", out.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let before = snapshot(&out);
    for signal in ["INT", "TERM"] {
        // The default comparison runs long enough to be interrupted mid-way.
        let child = Command::new(env!("CARGO_BIN_EXE_relprune"))
            .args(["--threads", "1"])
            .args(args)
            .args(["--rates", "0:0.95:0.01", "--out", out.to_str().unwrap()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = std::time::Instant::now();
        while partials(&out).is_empty() {
            assert!(t0.elapsed().as_secs() < 60, "no staging folder appeared");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        let k = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status().unwrap();
        assert!(k.success());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(130), "SIG{signal}: {}", stderr(&o));
        assert!(stderr(&o).contains("interrupted"), "SIG{signal}: {}", stderr(&o));
        assert!(partials(&out).is_empty(), "SIG{signal} left {:?}", partials(&out));
        assert_eq!(snapshot(&out), before, "SIG{signal}: the previous outputs are untouched");
    }
}

/// A minimal float32 `.npy` file of `shape` filled with `value`.
fn write_npy(path: &Path, shape: &[usize], value: f32) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}", dims.join(", "));
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    for _ in 0..shape.iter().product::<usize>() {
        bytes.extend(value.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_failed_rename_leaves_no_temporary_file() {
    let tmp = tempfile::tempdir().unwrap();
    let x = tmp.path().join("x.npy");
    write_npy(&x, &[2, 1, 8, 8], 0.5);
    // The output path is an existing folder: the rename onto it fails.
    let target = tmp.path().join("y.npy");
    std::fs::create_dir(&target).unwrap();
    let o = relprune(&["run", "--model", TINY, "--input", x.to_str().unwrap(), "--output", target.to_str().unwrap()]);
    assert_clear_error(&o, &["y.npy"]);
    assert!(partials(tmp.path()).is_empty(), "left {:?}", partials(tmp.path()));
    // The same command to a file path works and leaves nothing else.
    let file = tmp.path().join("z.npy");
    let o = relprune(&["run", "--model", TINY, "--input", x.to_str().unwrap(), "--output", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(file.is_file() && partials(tmp.path()).is_empty());
    // Several arrays after one `--input` (here one model input given twice is refused by count,
    // not by the option parser).
    let o = relprune(&["run", "--model", TINY, "--input", x.to_str().unwrap(), x.to_str().unwrap()]);
    assert_clear_error(&o, &["input"]);
}

#[test]
fn a_condition_that_can_never_hold_is_refused() {
    let yaml = "low_rule: [epsilon, zplus]\nlow_gamma: {log: [0.01, 1.0], when: {low_rule: gamma}}\n";
    let e = SearchSpace::from_yaml(yaml).unwrap_err().to_string();
    assert!(e.contains("low_gamma") && e.contains("never"), "{e}");
    // The same condition with gamma among the choices is fine.
    SearchSpace::from_yaml("low_rule: [epsilon, gamma]\nlow_gamma: {log: [0.01, 1.0], when: {low_rule: gamma}}\n")
        .unwrap();
}

#[test]
fn a_stored_trial_with_invalid_parameters_is_named_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let d = fmnist(tmp.path());
    let db = tmp.path().join("study.sqlite");
    let url = format!("sqlite:{}", db.display());
    let run = |trials: &str| {
        let out = tmp.path().join(format!("out{trials}"));
        relprune(&[
            "optimize",
            "--model",
            TINY,
            "--fmnist-dir",
            d.to_str().unwrap(),
            "--storage",
            &url,
            "--study",
            "s",
            "--trials",
            trials,
            "--refs-per-class",
            "1",
            "--val-samples",
            "40",
            "--rates",
            "0:0.4:0.2",
            "--report",
            "none",
            "--noise-draws",
            "0",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let o = run("1");
    assert!(o.status.success(), "{}", stderr(&o));
    let mut bad = SearchSpace::default_for(ModelTraits::default()).default_params();
    bad.insert("low_rule".into(), "bogus".into());
    completed(&url, 1, &bad, 0.5);
    let started = std::time::Instant::now();
    let o = run("5");
    assert_clear_error(&o, &["trial 1", "study `s`", "bogus"]);
    assert!(started.elapsed().as_secs() < 20, "refused before any trial ran");
}

#[test]
fn the_launcher_without_home_says_what_to_set() {
    let launcher = Path::new(env!("CARGO_MANIFEST_DIR")).join("relprune");
    let o = Command::new(&launcher)
        .arg("--version")
        .env_remove("HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("RELPRUNE_CACHE")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_clear_error(&o, &["HOME is not set", "RELPRUNE_CACHE"]);
    assert!(!stderr(&o).contains("unbound variable"), "{}", stderr(&o));
}

/// `relprune run` on a token model with ids and a mask of different lengths names both files
/// (once a libtorch error).
#[test]
fn token_ids_and_a_mask_of_different_lengths_are_named() {
    let t = tempfile::tempdir().unwrap();
    let (ids, mask) = (t.path().join("ids.npy"), t.path().join("mask.npy"));
    relprune::data::npy::write(&ids, &(tch::Tensor::ones([2, 12], (tch::Kind::Int64, tch::Device::Cpu)) * 5)).unwrap();
    relprune::data::npy::write(&mask, &tch::Tensor::ones([2, 10], (tch::Kind::Int64, tch::Device::Cpu))).unwrap();
    let model = "bert:vocab=100,dim=32,layers=1,heads=4,mlp=64,positions=16,max_len=16,classes=3";
    let o = relprune(&["run", "--model", model, "--input", ids.to_str().unwrap(), mask.to_str().unwrap()]);
    assert_clear_error(&o, &["token ids and their attention mask must have the same shape", "ids.npy", "mask.npy"]);
}

/// Files the user names (weights, rules, search spaces, preprocessing, arrays, graph folders)
/// are read only when they are regular files: a FIFO would block forever and /dev/zero never
/// ends; both are refused at once, naming the path.
#[test]
fn special_files_named_as_inputs_are_refused_without_blocking() {
    let t = tempfile::tempdir().unwrap();
    let fifo = t.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let tiny = "cifar_resnet18:width=4,in=1,size=8,classes=10";
    for special in [fifo.to_str().unwrap(), "/dev/zero"] {
        let started = std::time::Instant::now();
        let rules = format!("file:{special}");
        for args in [
            vec!["info", "--model", tiny, "--weights", special],
            vec!["prune", "--model", tiny, "--data", "none", "--criterion", &rules, "--rate", "0.1"],
            vec!["run", "--model", tiny, "--input", special],
        ] {
            let o = relprune(&args);
            assert_clear_error(&o, &["not a regular file"]);
        }
        assert!(started.elapsed().as_secs() < 30, "{special}: {:?}", started.elapsed());
    }
}
