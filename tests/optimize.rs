//! Optimisation: samplers, studies in SQLite and PostgreSQL, resume after a kill, concurrent
//! workers, the objective and the rules file.

mod common;

use relprune::attribution::CriterionSpec;
use relprune::data::{fashion_mnist, SplitName};
use relprune::experiment::{score, RunOptions, Task, TaskSpec};
use relprune::models::Architecture;
use relprune::optimize::objective::PruningObjective;
use relprune::optimize::storage::Sql;
use relprune::optimize::{
    best_trial, connect, run_worker, ModelTraits, Objective, Params, SamplerKind, SearchSpace, StudyDefinition,
    StudyObserver, StudyStore, TrialOutcome, TrialState,
};
use relprune::prune::components::{ComponentKind, ComponentSet};
use std::process::Command;

struct Quiet;
impl StudyObserver for Quiet {}

/// f = 1 − (log10 γ)²/16 − 0.3·[softmax ≠ cp] − 0.1·[not absolute]: optimum γ = 1, cp, |R|.
struct Synthetic {
    fail_on_zplus: bool,
}
impl Objective for Synthetic {
    fn evaluate(&mut self, p: &Params, report: &mut dyn FnMut(i64, f64) -> bool) -> relprune::Result<TrialOutcome> {
        let g = p["mid_gamma"].as_f64().unwrap();
        let sm = p["softmax"].as_str().unwrap();
        if self.fail_on_zplus && sm == "zplus" {
            return Err(relprune::Error::invalid("synthetic failure for zplus"));
        }
        let v = 1.0
            - g.log10().powi(2) / 16.0
            - if sm == "cp" { 0.0 } else { 0.3 }
            - if p["absolute"] == true { 0.0 } else { 0.1 };
        report(0, v);
        Ok(TrialOutcome::Complete(v))
    }
}

fn synthetic_space() -> SearchSpace {
    SearchSpace::from_yaml(
        "mid_gamma: {log: [1.0e-3, 1000.0]}\nsoftmax: [attn_lrp, cp, zplus, zplus_bias]\nabsolute: [true, false]\n",
    )
    .unwrap()
}

fn def(space: &SearchSpace) -> StudyDefinition {
    StudyDefinition { space: space.clone(), objective: serde_json::json!({"synthetic": 1}) }
}

fn run_synthetic(kind: SamplerKind, trials: usize) -> Vec<relprune::optimize::Trial> {
    let dir = tempfile::tempdir().unwrap();
    let space = synthetic_space();
    let mut store =
        StudyStore::open(connect(dir.path().join("s.sqlite").to_str().unwrap()).unwrap(), "s", &def(&space)).unwrap();
    let sampler = kind.build(7);
    run_worker(
        &mut store,
        &space,
        sampler.as_ref(),
        None,
        &mut Synthetic { fail_on_zplus: false },
        trials,
        &[],
        &mut Quiet,
    )
    .unwrap();
    store.trials().unwrap()
}

#[test]
fn tpe_concentrates_on_the_optimum_of_a_synthetic_objective() {
    let tpe = run_synthetic(SamplerKind::Tpe, 60);
    let random = run_synthetic(SamplerKind::Random, 60);
    assert_eq!(tpe.len(), 60);
    let last = |t: &[relprune::optimize::Trial]| t[40..].to_vec();
    let cp_share = last(&tpe).iter().filter(|t| t.params["softmax"] == "cp").count() as f64 / 20.0;
    assert!(cp_share >= 0.6, "TPE should mostly sample the best category late in the study: {cp_share}");
    let mean = |t: &[relprune::optimize::Trial]| t.iter().map(|t| t.value.unwrap()).sum::<f64>() / t.len() as f64;
    assert!(
        mean(&last(&tpe)) > mean(&last(&random)) + 0.1,
        "TPE {} vs random {}",
        mean(&last(&tpe)),
        mean(&last(&random))
    );
    let best = best_trial(&tpe).unwrap();
    assert!(best.value.unwrap() > 0.97, "best {:?}", best.params);
    // The GP optimiser also finds the optimum region.
    let gp = run_synthetic(SamplerKind::Gp, 30);
    assert!(best_trial(&gp).unwrap().value.unwrap() > 0.9);
    // Seeded: the same study twice proposes the same parameters.
    let again = run_synthetic(SamplerKind::Tpe, 60);
    assert!(tpe.iter().zip(&again).all(|(a, b)| a.params == b.params));
}

#[test]
fn grid_enumerates_and_studies_record_failures() {
    let space = SearchSpace::from_yaml("softmax: [cp, zplus]\nabsolute: [true, false]\nmid_gamma: 1.0\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("g.sqlite");
    let mut store = StudyStore::open(connect(url.to_str().unwrap()).unwrap(), "g", &def(&space)).unwrap();
    let s = SamplerKind::Grid.build(0);
    let w =
        run_worker(&mut store, &space, s.as_ref(), None, &mut Synthetic { fail_on_zplus: true }, 4, &[], &mut Quiet)
            .unwrap();
    assert_eq!((w.completed, w.failed), (2, 2), "a failing trial is recorded and the study goes on");
    let trials = store.trials().unwrap();
    let mut seen: Vec<String> =
        trials.iter().map(|t| format!("{}{}", t.params["softmax"], t.params["absolute"])).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4, "each grid point exactly once");
    let failed: Vec<_> = trials.iter().filter(|t| t.state == TrialState::Failed).collect();
    assert!(failed.iter().all(|t| t.message.as_deref().unwrap().contains("synthetic failure")));
    // The budget is spent: another worker does nothing; the grid cannot give a fifth point.
    let w =
        run_worker(&mut store, &space, s.as_ref(), None, &mut Synthetic { fail_on_zplus: true }, 4, &[], &mut Quiet)
            .unwrap();
    assert_eq!(w.completed + w.failed + w.pruned, 0);
    let e =
        run_worker(&mut store, &space, s.as_ref(), None, &mut Synthetic { fail_on_zplus: true }, 5, &[], &mut Quiet)
            .unwrap_err();
    assert!(e.to_string().contains("all are tried"), "{e}");
}

#[test]
fn bad_spaces_and_storage_are_clear_errors() {
    for (yaml, want) in [
        ("softmax: cp\nabsolute: true\n", "no free parameter"),
        ("low_rule: [epsilon, gammma]\n", "epsilon, gamma, zplus or alphabeta"),
        ("lowrule: [epsilon]\n", "unknown parameter `lowrule`"),
        ("low_epsilon: {log: [0.0, 1.0]}\n", "positive"),
        ("mid_gamma: {log: [1.0, 0.1]}\n", "is empty"),
        ("mid_gamma: {logg: [1.0, 2.0]}\n", "unknown key `logg`"),
        ("mid_epsilon: {log: [1.0e-6, 1.0], when: {mid_rule: epsilon}}\nmid_rule: [epsilon, zplus]\n", "listed before"),
        ("absolute: {uniform: [0.0, 1.0]}\n", "not continuous"),
    ] {
        let e = SearchSpace::from_yaml(yaml).unwrap_err().to_string();
        assert!(e.contains(want), "{yaml}: {e}");
    }
    let e = connect("ftp://example.org/x").err().unwrap().to_string();
    assert!(e.contains("unsupported storage URL"), "{e}");
    let e = connect("postgresql://nobody@127.0.0.1:1/none").err().unwrap().to_string();
    assert!(e.contains("cannot use PostgreSQL") && !e.contains("nobody"), "{e}");
    // Reopening a study with another space is refused.
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("s.sqlite");
    StudyStore::open(connect(url.to_str().unwrap()).unwrap(), "s", &def(&synthetic_space())).unwrap();
    let other = SearchSpace::from_yaml("softmax: [cp, zplus]\n").unwrap();
    let e = StudyStore::open(connect(url.to_str().unwrap()).unwrap(), "s", &def(&other)).err().unwrap().to_string();
    assert!(e.contains("different search space"), "{e}");
}

const TINY: &str = "cifar_resnet18:width=4,in=1,size=8,classes=10";

#[test]
fn objective_is_deterministic_beats_default_and_rules_round_trip() {
    let data = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(data.path(), 1200, 200);
    let splits = fashion_mnist::load_splits(data.path()).unwrap();
    let mut g = Architecture::parse(TINY).unwrap().build(3).unwrap();
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let task = TaskSpec { classes: None, seed: 1, refs_per_class: 3, split: SplitName::Val, eval_samples: 80 };
    let opts = RunOptions { rates: relprune::prune::ranking::parse_rates("0:0.9:0.15").unwrap(), ..Default::default() };
    let space = SearchSpace::default_for(ModelTraits::default());
    let default = space.default_params();
    {
        let mut obj = PruningObjective::new(&mut g, comps.clone(), &splits, 10, task.clone(), opts.clone()).unwrap();
        let a = obj.evaluate(&default, &mut |_, _| false).unwrap();
        let mut steps = Vec::new();
        let b = obj
            .evaluate(&default, &mut |s, v| {
                steps.push((s, v));
                false
            })
            .unwrap();
        assert_eq!(a, b, "the objective on a fixed configuration is deterministic");
        // Intermediate values: one per rate, the A_PR estimated from the rates measured so far,
        // coarse first; the last is the objective's value. The ascending curve gives the points.
        let t = Task::prepare(&splits, 10, &task).unwrap();
        let (spec, _) = SearchSpace::criterion(&default).unwrap();
        let curve =
            relprune::experiment::run_criterion(obj.graph, &comps, &t, &spec, &opts, &mut |_| {}).unwrap().curve;
        let n = curve.rates.len();
        assert_eq!(steps.iter().map(|s| s.0).collect::<Vec<_>>(), (0..n as i64).collect::<Vec<_>>());
        let mut known = std::collections::BTreeMap::new();
        for (k, &i) in relprune::evaluate::RateVisit::CoarseFirst.order(n).iter().enumerate() {
            known.insert(i, curve.accuracies[i]);
            let want = relprune::evaluate::estimate_a_pr(n, &known);
            assert!((steps[k].1 - want).abs() < 1e-12, "step {k}: {} vs {want}", steps[k].1);
        }
        assert_eq!(TrialOutcome::Complete(steps[n - 1].1), b);
        assert!((steps[n - 1].1 - curve.summary.a_pr).abs() < 1e-12);
        let dir = tempfile::tempdir().unwrap();
        let mut store =
            StudyStore::open(connect(dir.path().join("o.sqlite").to_str().unwrap()).unwrap(), "o", &def(&space))
                .unwrap();
        let sampler = SamplerKind::Tpe.build(0);
        // The study starts from the stand-alone criteria, each a point of the space.
        let seeds = space.seeds();
        let names: Vec<&str> = seeds.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["lrp-epsilon", "lrp-zplus", "lrp-epsilon-plus", "lrp-alpha2beta1", "gradient", "taylor"]);
        assert_eq!(seeds[0].1, default);
        let seed_params: Vec<_> = seeds.iter().map(|(_, p)| p.clone()).collect();
        run_worker(&mut store, &space, sampler.as_ref(), None, &mut obj, 8, &seed_params, &mut Quiet).unwrap();
        let trials = store.trials().unwrap();
        let TrialOutcome::Complete(dv) = a else { panic!() };
        assert_eq!(trials[0].value, Some(dv), "the first trial is the default configuration");
        let mut best_seed = f64::NEG_INFINITY;
        for (i, (name, params)) in seeds.iter().enumerate() {
            assert_eq!(&trials[i].params, params, "seed {i} is trial {i}");
            let alone = CriterionSpec::parse(name, None, 0).unwrap();
            let want = relprune::experiment::run_criterion(obj.graph, &comps, &t, &alone, &opts, &mut |_| {})
                .unwrap()
                .curve
                .summary
                .a_pr;
            assert_eq!(trials[i].value, Some(want), "{name}: the seeded trial scores exactly as the criterion alone");
            best_seed = best_seed.max(want);
        }
        assert_eq!(trials.len(), 8);
        assert!(best_trial(&trials).unwrap().value.unwrap() >= best_seed, "never worse than a seed on validation");
    }
    // The best configuration written as a rules file reads back identically and scores identically.
    let (spec, _) = SearchSpace::criterion(&default).unwrap();
    let f = tempfile::tempdir().unwrap();
    for name in ["rules.yaml", "rules.json"] {
        spec.to_file(&f.path().join(name)).unwrap();
        let back = CriterionSpec::from_file(&f.path().join(name)).unwrap();
        assert_eq!(back, spec);
        let t = Task::prepare(&splits, 10, &task).unwrap();
        assert_eq!(score(&g, &comps, &t, &spec, 16).unwrap(), score(&g, &comps, &t, &back, 16).unwrap());
    }
    let via_cli = CriterionSpec::from_name("lrp", Some(f.path().join("rules.yaml").to_str().unwrap()), 0).unwrap();
    assert_eq!(via_cli, spec);
    std::fs::write(f.path().join("bad.yaml"), "criterion: lrp\nlrp: {rules: {low: {rule: epsilon}, mid: {rule: epsilon}, high: {rule: epsilon}, fc: {rule: epsilon}}, softmx: cp}\n").unwrap();
    let e = CriterionSpec::from_file(&f.path().join("bad.yaml")).unwrap_err().to_string();
    assert!(e.contains("softmx"), "unknown keys in rules files are rejected: {e}");
}

fn optimize_cmd(
    data: &std::path::Path,
    storage: &str,
    out: &std::path::Path,
    trials: usize,
    extra: &[&str],
) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_relprune"));
    c.args(["--threads", "1", "optimize", "--model", TINY, "--fmnist-dir"])
        .arg(data)
        .args([
            "--trials",
            &trials.to_string(),
            "--val-samples",
            "150",
            "--refs-per-class",
            "3",
            "--rates",
            "0:0.95:0.05",
        ])
        .args(["--report", "none", "--storage", storage, "--study", "shared", "--out"])
        .arg(out)
        .args(extra);
    c
}

fn trial_rows(url: &str) -> Vec<(i64, String, String)> {
    try_trial_rows(url).unwrap()
}

/// The trials table, or an error while the study is still being created.
fn try_trial_rows(url: &str) -> relprune::Result<Vec<(i64, String, String)>> {
    let mut conn = connect(url)?;
    Ok(conn
        .query("SELECT number, state, worker FROM relprune_trials ORDER BY number", &[])?
        .into_iter()
        .map(|r| match (&r[0], &r[1], &r[2]) {
            (Sql::Int(n), Sql::Text(s), Sql::Text(w)) => (*n, s.clone(), w.clone()),
            other => panic!("{other:?}"),
        })
        .collect())
}

#[test]
fn a_killed_study_resumes_with_every_completed_trial_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    common::synthetic_fmnist(&data, 1200, 200);
    let db = tmp.path().join("study.sqlite");
    let url = format!("sqlite:{}", db.display());
    let mut child = optimize_cmd(&data, &url, &tmp.path().join("out"), 10, &["--sampler", "random", "--no-pruner"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it while a trial is running, after at least two have completed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let rows = if db.exists() { try_trial_rows(&url).unwrap_or_default() } else { Vec::new() };
        let done = rows.iter().filter(|r| r.1 == "complete").count();
        if done >= 2 && rows.iter().any(|r| r.1 == "running") {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the study finished before it could be killed");
        assert!(std::time::Instant::now() < deadline, "no trial started");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = trial_rows(&url);
    let before: Vec<_> = at_kill.iter().filter(|r| r.1 == "complete").cloned().collect();
    let running: Vec<i64> = at_kill.iter().filter(|r| r.1 == "running").map(|r| r.0).collect();
    let out = optimize_cmd(&data, &url, &tmp.path().join("out"), 10, &["--sampler", "random", "--no-pruner"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = trial_rows(&url);
    for b in &before {
        assert!(after.contains(b), "completed trial {b:?} kept");
    }
    let interrupted: Vec<i64> = after.iter().filter(|r| r.1 == "interrupted").map(|r| r.0).collect();
    // (The kill lands mid-trial practically always; the assertion is exact either way.)
    assert_eq!(interrupted, running, "the trial running at the kill is marked interrupted, not lost: {after:?}");
    assert_eq!(after.iter().filter(|r| r.1 == "complete").count(), 10, "the budget is met with completed trials");
    assert!(tmp.path().join("out/best-rules.yaml").is_file());

    // `study rules`: the best of the first N trials (what a budget of N would have chosen) and
    // a chosen trial, written as the rules file `SearchSpace::criterion` makes of its parameters.
    let (mut store, _) = StudyStore::attach(connect(&url).unwrap(), "shared").unwrap();
    let trials = store.trials().unwrap();
    let rules = |extra: &[&str]| {
        let f = tmp.path().join("chosen.yaml");
        let _ = std::fs::remove_file(&f);
        let o = Command::new(env!("CARGO_BIN_EXE_relprune"))
            .args(["study", "rules", "--storage", &url, "--study", "shared", "--out"])
            .arg(&f)
            .args(extra)
            .output()
            .unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stderr).to_string(), CriterionSpec::from_file(&f).ok())
    };
    let expect = |t: &relprune::optimize::Trial| SearchSpace::criterion(&t.params).unwrap().0;
    let first4: Vec<_> = trials.iter().filter(|t| t.number < 4).cloned().collect();
    let (ok, err, got) = rules(&["--first", "4"]);
    assert!(ok, "{err}");
    assert_eq!(got.unwrap(), expect(best_trial(&first4).unwrap()));
    let (ok, err, got) = rules(&[]);
    assert!(ok, "{err}");
    assert_eq!(got.unwrap(), expect(best_trial(&trials).unwrap()));
    let done = trials.iter().find(|t| t.state == TrialState::Complete && t.number > 0).unwrap();
    let (ok, err, got) = rules(&["--trial", &done.number.to_string()]);
    assert!(ok, "{err}");
    assert_eq!(got.unwrap(), expect(done));
    for i in &interrupted {
        let (ok, err, got) = rules(&["--trial", &i.to_string()]);
        assert!(!ok && err.contains("interrupted, not complete") && got.is_none(), "{err}");
    }
    let (ok, err, got) = rules(&["--trial", "999"]);
    assert!(!ok && err.contains("has no trial 999") && got.is_none(), "{err}");
}

#[test]
fn two_workers_share_a_postgresql_study_without_losing_or_duplicating_trials() {
    let pg = common::PgServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    common::synthetic_fmnist(&data, 1200, 200);
    let budget = 9;
    let spawn = |i: usize| {
        optimize_cmd(&data, &pg.url, &tmp.path().join(format!("out{i}")), budget, &["--sampler", "tpe"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(0), spawn(1));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for o in [&a, &b] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // Each worker says how many trials it ran; together they ran exactly the budget.
    let ran = |o: &std::process::Output| -> usize {
        let s = String::from_utf8_lossy(&o.stdout);
        let line = s.lines().find(|l| l.starts_with("this worker:")).expect("worker summary");
        line.split(|c: char| !c.is_ascii_digit()).filter_map(|t| t.parse::<usize>().ok()).sum()
    };
    let rows = trial_rows(&pg.url);
    assert_eq!(ran(&a) + ran(&b), budget, "{rows:?}");
    assert_eq!(rows.len(), budget, "no trial beyond the budget, none lost");
    let numbers: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(numbers, (0..budget as i64).collect::<Vec<_>>(), "trial numbers unique and dense");
    assert!(rows.iter().all(|r| r.1 == "complete" || r.1 == "pruned"), "{rows:?}");
    let workers: std::collections::HashSet<&String> = rows.iter().map(|r| &r.2).collect();
    assert_eq!(workers.len(), 2, "both workers ran trials");
}

/// The objective over K reference draws is the mean of the K single-draw objectives; draw 0 is
/// the task's own references, the others differ from it and from each other, and the evaluation
/// samples are the same for all.
#[test]
fn objective_over_draws_is_the_mean_of_single_draws() {
    let data = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(data.path(), 1200, 200);
    let splits = fashion_mnist::load_splits(data.path()).unwrap();
    let mut g = Architecture::parse(TINY).unwrap().build(3).unwrap();
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let task = TaskSpec { classes: Some(3), seed: 2, refs_per_class: 2, split: SplitName::Val, eval_samples: 60 };
    let opts = RunOptions { rates: relprune::prune::ranking::parse_rates("0:0.9:0.15").unwrap(), ..Default::default() };
    let params = SearchSpace::default_for(ModelTraits::default()).default_params();
    let t = Task::prepare(&splits, 10, &task).unwrap();
    let draws: Vec<Task> = (0..3).map(|d| t.with_reference_draw(&splits, d).unwrap()).collect();
    assert_eq!(draws[0].refs.indices, t.refs.indices);
    assert!(draws[1].refs.indices != draws[0].refs.indices && draws[2].refs.indices != draws[1].refs.indices);
    for d in &draws {
        assert_eq!(d.eval.indices, t.eval.indices);
        assert_eq!(d.refs.len(), t.refs.len());
        let classes: std::collections::BTreeSet<i64> = (0..d.refs.len()).map(|i| d.refs.label(i)).collect();
        assert_eq!(classes.into_iter().collect::<Vec<_>>(), t.classes.as_ref().unwrap().classes().to_vec());
    }
    let mut single = Vec::new();
    for d in 0..3 {
        let mut obj = PruningObjective::new(&mut g, comps.clone(), &splits, 10, task.clone(), opts.clone())
            .unwrap()
            .with_draws(vec![d])
            .unwrap();
        let TrialOutcome::Complete(v) = obj.evaluate(&params, &mut |_, _| false).unwrap() else { panic!() };
        single.push(v);
    }
    let mut obj = PruningObjective::new(&mut g, comps.clone(), &splits, 10, task, opts)
        .unwrap()
        .with_draws(vec![0, 1, 2])
        .unwrap();
    let TrialOutcome::Complete(mean) = obj.evaluate(&params, &mut |_, _| false).unwrap() else { panic!() };
    assert!((mean - single.iter().sum::<f64>() / 3.0).abs() < 1e-12, "{mean} vs {single:?}");
    assert_eq!(obj.per_draw(&params, &[0, 1, 2]).unwrap(), single);
    assert!(single[0] != single[1] || single[1] != single[2], "draws change the objective: {single:?}");
}

/// The space's `normalize` and `sum_first` change the scores as documented (per-layer scaling of
/// LRP-ε's scores; |Σ R| = |signed scores|), and round-trip through a rules file.
#[test]
fn normalize_and_sum_first_change_scores_as_documented_and_round_trip() {
    use relprune::prune::ranking::{normalize_per_layer, LayerNormalization};
    let data = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(data.path(), 600, 100);
    let splits = fashion_mnist::load_splits(data.path()).unwrap();
    let g = Architecture::parse(TINY).unwrap().build(3).unwrap();
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let task = TaskSpec { classes: None, seed: 1, refs_per_class: 2, split: SplitName::Val, eval_samples: 20 };
    let t = Task::prepare(&splits, 10, &task).unwrap();
    let space = SearchSpace::default_for(ModelTraits::default());
    let base = space.default_params();
    assert_eq!(base["normalize"], "none");
    assert_eq!(base["sum_first"], false);
    let with = |k: &str, v: serde_json::Value| {
        let mut p = base.clone();
        p.insert(k.into(), v);
        SearchSpace::criterion(&p).unwrap().0
    };
    let scores = |spec: &CriterionSpec| score(&g, &comps, &t, spec, 16).unwrap();
    let plain = scores(&SearchSpace::criterion(&base).unwrap().0);
    let signed = scores(&with("absolute", false.into()));
    for how in ["mean", "max", "l2", "sum", "lamp"] {
        let n: LayerNormalization = serde_json::from_value(how.into()).unwrap();
        let got = scores(&with("normalize", how.into()));
        let want = normalize_per_layer(&plain, &comps, n);
        for (a, b) in got.values.iter().zip(&want.values) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1e-30), "{how}: {a} vs {b}");
        }
    }
    let sum_first = scores(&with("sum_first", true.into()));
    for (a, b) in sum_first.values.iter().zip(&signed.values) {
        assert!((a - b.abs()).abs() <= 1e-9 * b.abs().max(1e-30), "|Σ R| = |signed Σ R|: {a} vs {b}");
    }
    assert!(sum_first.values.iter().zip(&plain.values).any(|(a, b)| a < b), "|Σ R| ≤ Σ |R|, strictly somewhere");
    // Both round-trip through best-rules.yaml and give the same scores back.
    let mut p = base.clone();
    p.insert("normalize".into(), "mean".into());
    p.insert("sum_first".into(), true.into());
    let spec = SearchSpace::criterion(&p).unwrap().0;
    let f = tempfile::tempdir().unwrap();
    spec.to_file(&f.path().join("best-rules.yaml")).unwrap();
    let text = std::fs::read_to_string(f.path().join("best-rules.yaml")).unwrap();
    assert!(text.contains("normalize: mean") && text.contains("sum_first: true"), "{text}");
    let back = CriterionSpec::from_file(&f.path().join("best-rules.yaml")).unwrap();
    assert_eq!(back, spec);
    assert_eq!(scores(&back), scores(&spec));
    assert!(SearchSpace::from_yaml("normalize: [none, median]\n").unwrap_err().to_string().contains("median"));
}

/// The synthetic objective reported at every one of 20 rates (a flat partial curve), counting
/// the rates it evaluated.
struct Steps {
    evaluated: i64,
}
impl Objective for Steps {
    fn evaluate(&mut self, p: &Params, report: &mut dyn FnMut(i64, f64) -> bool) -> relprune::Result<TrialOutcome> {
        let v = 1.0 - p["mid_gamma"].as_f64().unwrap().log10().powi(2) / 16.0;
        for step in 0..20 {
            self.evaluated += 1;
            if report(step, v) {
                return Ok(TrialOutcome::Pruned(v));
            }
        }
        Ok(TrialOutcome::Complete(v))
    }
}

/// Successive halving: rungs after 3, 9, 27 rates; the best configurations at low fidelity go
/// on to the whole curve, the others stop at a rung; far fewer rates are evaluated than without
/// a pruner; and a study resumed after a stop keeps every evaluation and goes on.
#[test]
fn successive_halving_promotes_the_best_at_low_fidelity_and_resumes() {
    use relprune::optimize::{EarlyStop, SuccessiveHalving};
    let h = SuccessiveHalving::default();
    let rungs: Vec<i64> = (0..20).filter(|&s| h.is_rung(s)).collect();
    assert_eq!(rungs, vec![2, 8]);
    let dir = tempfile::tempdir().unwrap();
    let space = SearchSpace::from_yaml("mid_gamma: {log: [1.0e-3, 1000.0]}\n").unwrap();
    let path = dir.path().join("h.sqlite");
    let sampler = SamplerKind::Random.build(3);
    let mut objective = Steps { evaluated: 0 };
    let pruner = Some(EarlyStop::Halving(h));
    let mut run = |budget| {
        let mut store = StudyStore::open(connect(path.to_str().unwrap()).unwrap(), "h", &def(&space)).unwrap();
        run_worker(&mut store, &space, sampler.as_ref(), pruner, &mut objective, budget, &[], &mut Quiet).unwrap();
        store.trials().unwrap()
    };
    let first = run(20);
    let trials = run(40);
    assert_eq!(trials.len(), 40);
    for (a, b) in first.iter().zip(&trials) {
        assert_eq!((a.number, a.state, a.value, &a.intermediate), (b.number, b.state, b.value, &b.intermediate));
    }
    let best_at_rung0 = trials.iter().map(|t| t.intermediate[2].1).fold(f64::NEG_INFINITY, f64::max);
    let best = best_trial(&trials).unwrap();
    assert_eq!(best.value, Some(best_at_rung0), "the best at low fidelity ran the whole curve");
    for t in trials.iter().filter(|t| t.state == TrialState::Pruned) {
        let last = t.intermediate.last().unwrap().0;
        assert!(rungs.contains(&last), "trial {} stopped at rate {last}, not at a rung", t.number);
        // Someone before it was better at that rung.
        let v = t.intermediate.last().unwrap().1;
        assert!(trials[..t.number as usize].iter().any(|u| u.intermediate.iter().any(|&(s, w)| s == last && w > v)));
    }
    let complete = trials.iter().filter(|t| t.state == TrialState::Complete).count();
    assert!(complete <= 12, "{complete} of 40 ran the whole curve");
    assert!(objective.evaluated * 3 <= 40 * 20, "{} of 800 rates evaluated", objective.evaluated);
}

/// Per-group softmax treatments: setting every group to CP equals the global CP; setting one
/// group only changes the scores from both; group-prefixed names other than rule / ε / γ /
/// softmax are rejected (they would be ignored); the choice round-trips through a rules file.
#[test]
fn per_group_softmax_acts_on_its_group_and_round_trips() {
    use relprune::attribution::lrp::SoftmaxRule;
    let data = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(data.path(), 600, 100);
    let splits = fashion_mnist::load_splits(data.path()).unwrap();
    let g = Architecture::parse("vit:size=8,patch=4,layers=4,heads=2,dim=8,mlp=16,in=1,classes=10")
        .unwrap()
        .build(4)
        .unwrap();
    // torchvision initialises the head to zero, which would leave no relevance to compare.
    tch::manual_seed(5);
    for (k, p) in g.params().iter() {
        if k.starts_with("heads.") {
            let _ = tch::no_grad(|| p.shallow_clone().f_copy_(&tch::Tensor::randn(p.size(), tch::kind::FLOAT_CPU)));
        }
    }
    let comps = ComponentSet::find(&g, ComponentKind::Neurons).unwrap();
    let task = TaskSpec { classes: None, seed: 1, refs_per_class: 1, split: SplitName::Val, eval_samples: 10 };
    let t = Task::prepare(&splits, 10, &task).unwrap();
    let space = SearchSpace::default_for(ModelTraits { attention: true, ..Default::default() });
    let base = space.default_params();
    for grp in ["low", "mid", "high"] {
        assert_eq!(base[&format!("{grp}_softmax")], "attn_lrp");
    }
    let with = |pairs: &[(&str, &str)]| {
        let mut p = base.clone();
        for (k, v) in pairs {
            p.insert(k.to_string(), (*v).into());
        }
        SearchSpace::criterion(&p).unwrap().0
    };
    let scores = |spec: &CriterionSpec| score(&g, &comps, &t, spec, 16).unwrap().values;
    let attn = scores(&with(&[]));
    let all_cp = scores(&with(&[("low_softmax", "cp"), ("mid_softmax", "cp"), ("high_softmax", "cp")]));
    let CriterionSpec::Lrp { label, mut lrp, absolute } = with(&[]) else { panic!() };
    lrp.softmax_by_group.clear();
    lrp.softmax = SoftmaxRule::Cp;
    let global_cp = scores(&CriterionSpec::Lrp { label, lrp, absolute });
    assert_eq!(all_cp, global_cp, "CP in every group is the global CP");
    // 16 deep linears, 4 per layer: layer 0 is low, layers 1-2 mid, layer 3 high.
    let high_cp = scores(&with(&[("high_softmax", "cp")]));
    assert!(attn.iter().any(|v| *v > 0.0));
    assert!(high_cp != attn && high_cp != all_cp, "one group's treatment changes the scores alone");
    // Layer 0's attention (low) lies below every MLP neuron's relevance path: no change.
    assert_eq!(scores(&with(&[("low_softmax", "cp")])), attn);
    let spec = with(&[("high_softmax", "cp")]);
    let f = tempfile::tempdir().unwrap();
    spec.to_file(&f.path().join("r.yaml")).unwrap();
    assert_eq!(CriterionSpec::from_file(&f.path().join("r.yaml")).unwrap(), spec);
    for bad in ["low_absolute: [true, false]\n", "mid_normalize: [none, mean]\n"] {
        let e = SearchSpace::from_yaml(bad).unwrap_err().to_string();
        assert!(e.contains("unknown parameter"), "{bad}: {e}");
    }
}

/// Equal depth groups in the search space: `d1_rule` … `dN_rule` with their ε / γ give a trial
/// N rules for the layers before the classifier, the default trial is LRP-ε everywhere (the same
/// scores as plain LRP-ε), a changed group changes the scores, and the winner's rules file
/// carries them. Gaps, a mix with low / mid / high, and orphan ε / γ are refused.
#[test]
fn equal_depth_groups_in_the_space_act_and_round_trip() {
    let data = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(data.path(), 600, 100);
    let splits = fashion_mnist::load_splits(data.path()).unwrap();
    let g = Architecture::parse(TINY).unwrap().build(4).unwrap();
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let task = TaskSpec { classes: None, seed: 1, refs_per_class: 1, split: SplitName::Val, eval_samples: 10 };
    let t = Task::prepare(&splits, 10, &task).unwrap();
    let mut yaml = String::new();
    for k in 1..=6 {
        yaml += &format!(
            "d{k}_rule: [epsilon, gamma, zplus]\nd{k}_gamma: {{log: [1.0e-3, 1.0], when: {{d{k}_rule: gamma}}}}\n"
        );
    }
    yaml += "fc_rule: [epsilon, zplus]\n";
    let space = SearchSpace::from_yaml(&yaml).unwrap();
    assert_eq!(SearchSpace::from_yaml(&space.to_yaml()).unwrap(), space);
    let base = space.default_params();
    let (spec, _) = SearchSpace::criterion(&base).unwrap();
    let CriterionSpec::Lrp { lrp, .. } = &spec else { panic!() };
    assert_eq!(lrp.rules.depth.len(), 6);
    let scores = |spec: &CriterionSpec| score(&g, &comps, &t, spec, 16).unwrap().values;
    let plain = scores(&CriterionSpec::from_name("lrp-epsilon", None, 0).unwrap());
    assert_eq!(scores(&spec), plain, "ε in every equal group is LRP-ε");
    let mut p = base.clone();
    p.insert("d6_rule".into(), "gamma".into());
    p.insert("d6_gamma".into(), 0.5.into());
    let (spec6, _) = SearchSpace::criterion(&p).unwrap();
    assert_ne!(scores(&spec6), plain, "the deepest group's rule changes the scores");
    let f = tempfile::tempdir().unwrap();
    spec6.to_file(&f.path().join("r.yaml")).unwrap();
    assert_eq!(CriterionSpec::from_file(&f.path().join("r.yaml")).unwrap(), spec6);
    for (bad, want) in [
        ("d1_rule: [epsilon, zplus]\nd3_rule: [epsilon, zplus]\n", "missing: d2"),
        ("d1_rule: [epsilon, zplus]\nlow_rule: [epsilon, zplus]\n", "keep one"),
        ("d1_rule: [epsilon, zplus]\nd2_gamma: {log: [0.1, 1.0]}\n", "needs `d2_rule`"),
        ("d0_rule: [epsilon, zplus]\n", "unknown parameter"),
        ("d1_softmax: [cp, attn_lrp]\n", "unknown parameter"),
    ] {
        let e = SearchSpace::from_yaml(bad).unwrap_err().to_string();
        assert!(e.contains(want), "{bad}: {e}");
    }
}
