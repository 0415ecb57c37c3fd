"""Token pruning at the finest scales (model/pruning.py): selection, restoration, rollout, export."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _runtime_fixtures import micro_model, nano_model
from alignvar_edge import cli
from alignvar_edge.errors import ConfigError
from alignvar_edge.export import onnx_export as ox
from alignvar_edge.manifest import load_verified
from alignvar_edge.model.pruning import keep_counts, parse_prune, pivotal, pruning, restore
from alignvar_edge.model.rollout import ModelStages
from alignvar_edge.quantize.calibration.tiles import lr_tiles


def test_parse_and_budget() -> None:
    assert parse_prune("") == () and parse_prune("0.5,0.75") == (0.5, 0.75)
    for bad in ("1.0", "-0.1", "half", "0.5,,0.2"):
        with pytest.raises(ConfigError):
            parse_prune(bad)
    # the last two scales of (1, 2, 4, 8): 16 - 8 and 64 - 48 tokens forwarded
    assert keep_counts((1, 2, 4, 8), (0.5, 0.75)) == [None, None, 8, 16]
    assert keep_counts((1, 2, 4, 8), (0.0, 0.5)) == [None, None, None, 32]    # 0: the scale unpruned
    with pytest.raises(ConfigError, match=r"0\.01 of scale 3's 64 tokens is less than one token.*0\.0156"):
        keep_counts((1, 2, 4, 8), (0.01,))                                   # 0 tokens: it would not prune
    with pytest.raises(ConfigError, match="at most 3"):
        keep_counts((1, 2, 4, 8), (0.1, 0.1, 0.1, 0.1))


def test_pivotal_tokens_are_the_farthest_from_the_mean() -> None:
    x = torch.randn(3, 20, 5)
    idx = pivotal(x, 6)
    xn = x.numpy()
    score = ((xn - xn.mean(axis=1, keepdims=True)) ** 2).sum(-1)
    for b in range(3):
        assert set(idx[b].tolist()) == set(np.argsort(-score[b])[:6].tolist())


def test_pivotal_ties_go_to_the_lower_index_whatever_the_last_bits() -> None:
    """A flat region: tokens whose scores differ only by rounding noise (1e-7 relative, what two
    runtimes' reductions differ by) are kept by position, the same with and without the noise."""
    torch.manual_seed(0)
    x = torch.zeros(2, 16, 4)
    x[:, :, 0] = torch.tensor([1.0, -1.0] * 8)                     # 16 equal scores
    x[:, 3, 1] = 3.0                                                 # and one standing out
    noisy = x * (1 + 1e-7 * torch.randn_like(x))
    for t in (x, noisy):
        idx = pivotal(t, 5)
        assert sorted(idx[0].tolist()) == [0, 1, 2, 3, 4], idx
        assert torch.equal(idx, pivotal(x, 5))


def test_restore_is_area_resampling_with_the_kept_tokens_written_back() -> None:
    prev = torch.randn(2, 36, 4)                                  # a 6 x 6 scale
    kept = torch.randn(2, 5, 4)
    idx = torch.stack([torch.randperm(64)[:5] for _ in range(2)])
    out = restore(prev, 8, kept, idx)
    area = F.interpolate(prev.transpose(1, 2).reshape(2, 4, 6, 6), size=(8, 8), mode="area")
    ref = area.reshape(2, 4, 64).transpose(1, 2).clone()
    for b in range(2):
        ref[b, idx[b]] = kept[b]
    assert torch.allclose(out, ref, atol=1e-6)


@torch.no_grad()
def test_pruned_rollout_changes_only_the_pruned_scales_and_shortens_the_cache() -> None:
    m = micro_model()
    c = m.config
    lr = torch.from_numpy(lr_tiles(c, 2, seed=0))
    _, full, _ = m.rollout(lr)
    with pruning(m, (0.5,)):                                      # the last scale
        _, pruned, _ = m.rollout(lr)
    assert all(torch.equal(a, b) for a, b in zip(full[:-1], pruned[:-1]))
    assert not torch.equal(full[-1], pruned[-1]) and pruned[-1].shape == full[-1].shape
    assert m.prune == ()                                          # the setting is restored

    # prune the second-to-last scale: the last one sees only its kept tokens' keys and values
    K = c.num_scales
    m.prune = (0.5, 0.0)
    try:
        stages = ModelStages(m)
        ctx, state, f_hat = stages.start(lr)
        for k in range(K - 1):
            _, f_hat, state, _ = stages.step(k, f_hat, state, ctx)
    finally:
        m.prune = ()
    p = c.patch_nums[K - 2]
    assert stages.layout.length(state) == m.begin_ends[K - 2][0] + (p * p - int(p * p * 0.5))


def test_prune_export_passes_parity_and_is_recorded(tmp_path) -> None:
    model = nano_model()
    art = ox.export_onnx(model, tmp_path / "pruned", prune=(0.5,), batch=1, n_tiles=2)
    m = load_verified(art)
    assert m.extra["prune"] == [0.5] and m.parity["passed"]
    assert any(n.op_type == "TopK" for n in __import__("onnx").load(str(art / "model.onnx")).graph.node)
    assert model.prune == ()
    from alignvar_edge import runtimes
    built = load_verified(runtimes.build(art, "onnxruntime", out=tmp_path / "ort"))
    assert built.extra["prune"] == [0.5] and built.extra["attention"]["form"] == "explicit"
    # int8 through the quantizer: TopK/ScatterElements survive it, the search's target holds
    from alignvar_edge.quantize.artifact import QuantizeOptions, quantize_artifact
    q = load_verified(quantize_artifact(art, tmp_path / "int8", QuantizeOptions(tiles=8, val_tiles=8,
                                                                              sensitivity_tiles=4)))
    assert q.extra["prune"] == [0.5] and q.parity["target_met"]
    assert q.parity["validation"]["token_agreement"] >= 0.99
    from alignvar_edge.export.inspect_artifact import format_inspection, inspect_artifact
    assert "explicit attention" in format_inspection(inspect_artifact(art))
    assert "token pruning 0.5 " in format_inspection(inspect_artifact(tmp_path / "int8"))


def test_a_pruned_export_first_in_a_fresh_process_validates(tmp_path) -> None:
    # the export traces the rollout with fake tensors; a cache filled then handed one of them to
    # the eager reference right after ('.numpy() is not supported for tensor subclasses'), which
    # only a process that had not run a pruned rollout before saw: `alignvar-edge export --prune`
    import subprocess
    import sys
    from pathlib import Path
    tests = Path(__file__).resolve().parent
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from _runtime_fixtures import nano_model; "
            "from alignvar_edge.export import onnx_export as ox; "
            "ox.export_onnx(nano_model(), sys.argv[2], prune=(0.5,), batch=1, n_tiles=2)")
    run = subprocess.run([sys.executable, "-c", code, str(tests), str(tmp_path / "pruned")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert load_verified(tmp_path / "pruned").parity["passed"]


def test_prune_export_with_fused_attention_passes_parity(tmp_path) -> None:
    """A pruned scale's kept tokens carry their own rotary rows per sample: the fused form's
    RotaryEmbedding takes them as per-sample tables, and the graph still matches PyTorch."""
    art = ox.export_onnx(nano_model(), tmp_path / "pruned", prune=(0.5,), batch=1, n_tiles=2, opset=23, attention="fused")
    m = load_verified(art)
    assert m.parity["passed"] and m.extra["attention"]["form"] == "fused"
    ops = [n.op_type for n in __import__("onnx").load(str(art / "model.onnx")).graph.node]
    assert "TopK" in ops and "RotaryEmbedding" in ops


@pytest.mark.parametrize("prune, needle", [("1.5", "in [0, 1)"), ("0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5", "at most")])
def test_cli_prune_errors_are_one_line(tmp_path, capsys, prune, needle) -> None:
    code = cli.main(["export", "--preset", "micro", "--out", str(tmp_path / "a"), "--prune", prune])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "a").exists()


def test_eval_prune_scores_the_pruned_model_against_hr_and_unpruned(tmp_path) -> None:
    import json

    from alignvar_edge.images import save_image
    from alignvar_edge.samples import sample_images

    folder = tmp_path / "imgs"
    folder.mkdir()
    save_image(folder / "coffee.png", dict(sample_images("heldout"))["coffee"][100:228, 200:328])
    out = tmp_path / "eval.json"
    assert cli.main(["eval", "alignvar-tiny", "--images", str(folder), "--prune", "0.5,0.75",
                     "--ablations", "--json", str(out)]) == 0
    v = json.loads(out.read_text())["variants"]
    assert set(v["pruned"]) == {"psnr_y", "ssim_y", "psnr_y_vs_model", "prune"} and v["pruned"]["prune"] == [0.5, 0.75]
    # the pruned output differs from the unpruned one (finite PSNR), but not by much on this model
    assert 30 < v["pruned"]["psnr_y_vs_model"] < 150
    assert abs(v["pruned"]["psnr_y"] - v["model"]["psnr_y"]) < 0.5


def test_half_precision_keeps_the_pruning_keys_f32(tmp_path) -> None:
    """The keys are integers up to 2**24 (fp16 holds integers exactly only to 2048): every half
    policy, the TensorRT kit's FP16 flag included, keeps the selection's scope in f32."""
    import onnx
    from onnx import shape_inference

    from alignvar_edge import runtimes
    from alignvar_edge.quantize.fp16 import to_fp16
    from alignvar_edge.quantize.half_policy import HalfPolicy, half_candidate
    from alignvar_edge.quantize.policy import exact_nodes
    art = ox.export_onnx(nano_model(), tmp_path / "pruned", prune=(0.5,), batch=1, n_tiles=1)
    model = onnx.load(str(art / "model.onnx"))
    topk = [n.name for n in model.graph.node if n.op_type == "TopK"]
    assert topk and set(topk) <= exact_nodes(model)

    def topk_input_type(m: onnx.ModelProto) -> int:
        m = shape_inference.infer_shapes(m)
        types = {v.name: v.type.tensor_type.elem_type for v in m.graph.value_info}
        (n,) = [n for n in m.graph.node if n.op_type == "TopK"]
        return types[n.input[0]]

    assert topk_input_type(half_candidate(model, HalfPolicy("fp16"))) == onnx.TensorProto.FLOAT
    assert topk_input_type(to_fp16(model, keep_ops=("ArgMax",))[0]) == onnx.TensorProto.FLOAT16  # unpinned
    if runtimes.get_backend("tensorrt").is_available()[0]:
        return
    kit = load_verified(runtimes.build(art, "tensorrt", precision="fp16", out=tmp_path / "kit"))
    # the fp16 plan keeps the manifest's f32 layers (their one place), the TopK among them
    assert kit.extra["tensorrt_kit"]["plan"]["obey_f32_layers"] is True
    assert set(topk) <= set(kit.extra["fp16_f32_layers"]["layers"])


def test_pruned_staged_graphs_hand_the_hidden_states_on_and_equal_the_single_graph(tmp_path) -> None:
    import numpy as np

    from alignvar_edge.export.staged import StagedRunner
    from alignvar_edge.runtimes.artifacts import validation_tiles
    model = micro_model()
    K = model.config.num_scales
    staged = load_verified(ox.export_onnx(model, tmp_path / "staged", graph="staged", prune=(0.5, 0.75), batch=1, n_tiles=2))
    assert staged.parity["passed"] and staged.extra["prune"] == [0.5, 0.75]
    for k in range(K):
        io = staged.graphs[f"step_{k}"]
        ins, outs = [i["name"] for i in io["inputs"]], [o["name"] for o in io["outputs"]]
        assert ("last_h" in ins) == (k >= K - 2)              # the two pruned scales restore
        assert ("h_out" in outs) == (k in (K - 3, K - 2))     # the steps before them hand on
    single = tmp_path / "single"
    ox.export_onnx(model, single, prune=(0.5, 0.75), batch=1, n_tiles=1)
    from alignvar_edge import runtimes
    x = validation_tiles(model.config, n=1)
    sr_s, tok_s = StagedRunner.load(tmp_path / "staged").run(x)
    with runtimes.load(single) as e:
        sr, tok = e.run(x)
    for a, b in zip(tok_s, tok):
        np.testing.assert_array_equal(a, b)
    assert np.abs(sr_s - sr).max() < 1e-4


def test_pivotal_selection_of_a_half_model_is_float32s():
    # the keys are integers up to 2**24: computed in fp16 they overflow, in bf16 they lose all
    # but 8 bits, and TopK then picks other tokens than the same inputs in float32 pick
    import torch

    from alignvar_edge.model.pruning import pivotal
    x = torch.randn(2, 1024, 64, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    assert torch.equal(pivotal(x, 256), pivotal(x.float(), 256))
    assert torch.equal(pivotal(x.half(), 256), pivotal(x.half().float(), 256))


def test_eval_and_the_pruning_api_refuse_a_ratio_export_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    """A ratio that leaves no token out is refused alike by export, eval --prune and `pruning()`,
    before any work: eval would otherwise report an unpruned model as pruned (inf dB against itself)."""
    assert cli.main(["eval", "alignvar-tiny", "--prune", "0.01", "--max-side", "64"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--prune 0.01: 0.01 of scale 5's 64 tokens is less than one token" in err[0]
    model = micro_model()
    with pytest.raises(ConfigError, match="less than one token"):
        with pruning(model, (0.01,)):
            pass
    assert model.prune == ()


@pytest.fixture(scope="module")
def nano_exports(tmp_path_factory):
    """A saved checkpoint with its (unpruned) golden file, and its exports pruned 0.5 and unpruned."""
    from alignvar_edge.model.alignvar import load_pretrained
    from alignvar_edge.runtimes import golden
    root = tmp_path_factory.mktemp("nano-exports")
    ckpt = root / "nano"
    nano_model().save_pretrained(str(ckpt))
    golden.make_golden(ckpt, n=2)                               # the unpruned model's, beside the weights
    return ckpt, {p: ox.export_onnx(load_pretrained(ckpt), root / f"ex{p}", prune=p, batch=1, n_tiles=1,
                                    checkpoint=ckpt) for p in ((0.5,), ())}


def test_a_pruned_engine_ships_the_pruned_golden_and_selftest_holds_it_to_them(tmp_path, nano_exports) -> None:
    """A pruned engine's golden outputs are the pruned rollout's PyTorch outputs (the checkpoint's
    own are the unpruned model's, whose last-scale tokens a pruned engine does not compute): the
    self-test passes a correct pruned engine and fails one that computes the unpruned model."""
    import shutil

    from alignvar_edge import runtimes
    from alignvar_edge.errors import ArtifactError
    from alignvar_edge.manifest import read_manifest, write_manifest
    from alignvar_edge.runtimes import golden
    from alignvar_edge.runtimes.selftest import selftest_engine
    ckpt, exports = nano_exports
    pruned = runtimes.build(exports[(0.5,)], "onnxruntime", out=tmp_path / "pruned-ort")
    m = read_manifest(pruned)
    assert m.extra["golden"]["origin"] == "checkpoint nano, pruned 0.5"
    _, _, unpruned_tok, _ = golden.read_golden(ckpt / golden.GOLDEN_FILE)
    _, _, pruned_tok, meta = golden.read_golden(pruned / golden.GOLDEN_FILE)
    assert meta["prune"] == "0.5" and not np.array_equal(pruned_tok[-1], unpruned_tok[-1])
    report = selftest_engine(pruned, runs=1, threads=1)
    assert report["result"] == "PASS" and report["tokens"]["overall"] == 1.0, report

    # an engine computing the unpruned model, held to the pruned golden outputs: it fails
    wrong = runtimes.build(exports[()], "onnxruntime", out=tmp_path / "wrong-ort")
    shutil.copy2(pruned / golden.GOLDEN_FILE, wrong / golden.GOLDEN_FILE)
    w = read_manifest(wrong)
    w.extra["prune"] = [0.5]
    write_manifest(wrong, w)
    report = selftest_engine(wrong, runs=1, threads=1)
    assert report["result"] == "FAIL" and report["tokens"]["overall"] < 1.0, report

    # a pruned engine carrying the unpruned golden outputs (built before they followed the pruning)
    shutil.copy2(ckpt / golden.GOLDEN_FILE, pruned / golden.GOLDEN_FILE)
    write_manifest(pruned, m)
    with pytest.raises(ArtifactError, match="outputs of the unpruned model.*pruned 0.5: build the engine again"):
        selftest_engine(pruned, runs=1, threads=1)


def test_torch_builds_a_pruned_export_pruned_at_its_batch_and_coreml_refuses_it(tmp_path, nano_exports, capsys) -> None:
    from alignvar_edge import runtimes
    from alignvar_edge.runtimes.artifacts import validation_tiles
    from alignvar_edge.runtimes.selftest import selftest_engine
    ckpt, exports = nano_exports
    eng = runtimes.build(exports[(0.5,)], "torch", out=tmp_path / "pruned-torch")
    m = load_verified(eng)
    assert m.extra["prune"] == [0.5] and m.extra["tiles_per_call"] == 1
    x = validation_tiles(nano_model().config, n=2, seed=3)
    with runtimes.load(exports[(0.5,)]) as onnx_eng, runtimes.load(eng) as torch_eng:
        assert torch_eng.batch == 1
        (_, want), (_, got) = onnx_eng.run(x), torch_eng.run(x)
    for a, b in zip(want, got):                  # the pruned graph's tokens, as ONNX Runtime runs it
        np.testing.assert_array_equal(a, b)
    assert selftest_engine(eng, runs=1, threads=1)["result"] == "PASS"
    pytest.importorskip("coremltools", reason="coremltools is not installed")
    assert cli.main(["build", str(exports[(0.5,)]), "--target", "coreml", "--out", str(tmp_path / "cml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is pruned (0.5)" in err and "`export --prune` is for the ONNX" in err, err
    assert not (tmp_path / "cml").exists()


def test_coreml_builds_an_unpruned_export_at_its_batch(tmp_path, nano_exports) -> None:
    """A Core ML package built from an export takes the batch its user exported (here 1), not the
    model's default; the export's files are verified once on the way."""
    pytest.importorskip("coremltools", reason="coremltools is not installed")
    from alignvar_edge import runtimes
    from alignvar_edge.recipes import recipe
    _, exports = nano_exports
    assert load_verified(exports[()]).static_batch == 1
    out = runtimes.build(exports[()], "coreml", out=tmp_path / "cml")
    m = load_verified(out)
    assert m.input_contract["batch"] == 1 and m.precision == recipe("coreml", None).precision


def test_ratios_of_zero_everywhere_are_no_pruning(tmp_path) -> None:
    """`--prune 0` (or 0,0) leaves no token out: the export is the unpruned graph, and neither its
    manifest nor inspect nor bench call it pruned (an older manifest's [0.0] included)."""
    from alignvar_edge.export.inspect_artifact import format_inspection, inspect_artifact
    from alignvar_edge.manifest import read_manifest, write_manifest
    art = ox.export_onnx(nano_model(), tmp_path / "zero", prune=(0.0, 0.0), batch=1, n_tiles=1)
    m = load_verified(art)
    assert m.extra["prune"] == [] and "prune" not in m.graph_facts
    assert "TopK" not in {n.op_type for n in __import__("onnx").load(str(art / "model.onnx")).graph.node}
    m.extra["prune"] = [0.0]                                  # as exports before this wrote it
    write_manifest(art, m)
    assert "prune" not in read_manifest(art).graph_facts
    assert "token pruning" not in format_inspection(inspect_artifact(art))
    from alignvar_edge import runtimes
    assert "prune" not in load_verified(runtimes.build(art, "onnxruntime", out=tmp_path / "ort")).extra


def test_eval_with_ratios_of_zero_scores_no_pruned_variant() -> None:
    from alignvar_edge.bench.evaluate import evaluate
    from alignvar_edge.samples import sample_images
    model = nano_model()
    t = model.config.hr_size
    image = dict(sample_images("heldout"))["coffee"][:t, :t]
    result = evaluate(model, [("coffee", image)], prune=(0.0, 0.0))
    assert result["prune"] == [] and "pruned" not in result["mean_psnr_y"]


def _rollout_flops(model, prune) -> int:
    """FLOPs a real rollout of one tile computes (real tensors, not the meta model bench counts on)."""
    from torch.utils.flop_counter import FlopCounterMode

    from alignvar_edge.model.rollout import run
    lr = torch.from_numpy(lr_tiles(model.config, 1, seed=0))
    with torch.no_grad(), pruning(model, prune), FlopCounterMode(display=False) as fc:
        run(ModelStages(model), lr)
    return int(fc.get_total_flops())


def test_bench_counts_a_pruned_engines_flops_names_its_graph_and_says_it_is_pruned(tmp_path, nano_exports) -> None:
    """A pruned engine's GFLOP/s and % peak count the FLOPs its pruned rollout computes; every entry
    records the graph it ran (attention form, opset, pruning); the console table and the summary say
    which engine is pruned and that its token gap is by design; a pruned staged profile's GFLOP/s
    count the pruned stages; deploy --export says the export it reuses is pruned."""
    from alignvar_edge import deploy, runtimes
    from alignvar_edge.bench.device import bench_engine_dir
    from alignvar_edge.bench.render import report_markdown, summary_lines, terminal_table
    from alignvar_edge.bench.runner import BenchOptions, run_bench
    from alignvar_edge.model.alignvar import load_pretrained
    ckpt, exports = nano_exports
    model = load_pretrained(ckpt)
    staged = ox.export_onnx(model, tmp_path / "staged", graph="staged", prune=(0.5,), batch=1, n_tiles=1)
    opts = BenchOptions(runs=2, warmup=0, tiles=2, threads=1, peak_n=256, profile_runs=1, image_size=0,
                        staged=str(staged))
    report = run_bench([f"pruned={exports[(0.5,)]}", f"plain={exports[()]}"], reference=model, options=opts)
    e = {x["label"]: x for x in report["engines"]}
    full, cut = _rollout_flops(model, ()), _rollout_flops(model, (0.5,))
    assert cut < full
    assert e["plain"]["flops_per_tile"] == full and e["pruned"]["flops_per_tile"] == cut
    lat = e["pruned"]["latency"]
    assert lat["gflops_achieved"] == pytest.approx(cut / lat["per_tile_ms"]["p50"] / 1e6, rel=0.01)
    for label, prune in (("pruned", [0.5]), ("plain", None)):
        assert (e[label]["attention"], e[label]["opset"], e[label]["prune"]) == ("explicit", 18, prune)
    assert "| pruned | fp32 | 1 | explicit attention, opset 18, pruned 0.5 |" in report_markdown(report)

    # the staged profile: the pruned scale's rate counts the FLOPs it computed
    prof = report["profile"]
    assert prof["pruned"] == {"ort_staged": [0.5]}
    last = next(r for r in prof["stages"] if r["stage"] == f"scale_{model.config.num_scales - 1}")
    saved = full - cut                                         # all of it at the one pruned scale
    # the report rounds a stage's GFLOP to 4 decimals and its ms to 3, the rate to 2: on this tiny
    # model those roundings alone move the rate by a few per cent, so the check spans them
    rates = [(last["gflops"] * 1e9 + dg * 0.5e5 - saved) / ((last["ort_staged_ms"] + dm * 5e-4) / 1e3) / 1e9
             for dg in (-1, 1) for dm in (-1, 1)]
    assert min(rates) - 0.005 <= last["ort_staged_gflops_per_s"] <= max(rates) + 0.005
    assert "ort_staged ran a rollout pruned 0.5" in report_markdown(report)

    console = terminal_table(report)
    assert console.splitlines()[-1].startswith("Token pruning: pruned (0.5) leave out tokens"), console
    report["summary"].update(best_cpu=None, engines_meeting_fidelity=[])     # as where no engine met the gate
    said = [ln for ln in summary_lines(report) if ln.startswith("No engine reached")]
    assert said and "(pruned is pruned: its tokens differ from the unpruned model's by design" in said[0], said

    # a device report holds each engine to its own (pruned) golden outputs: no by-design note there
    engine = runtimes.build(exports[(0.5,)], "onnxruntime", out=tmp_path / "ort")
    dev = bench_engine_dir([str(engine)], runs=1, warmup=0, threads=1)
    assert (dev["engines"][0]["attention"], dev["engines"][0]["prune"]) == ("explicit", [0.5])
    assert "Token pruning" not in terminal_table(dev)

    lines: list[str] = []
    deploy._reuse_export(exports[(0.5,)], load_verified(exports[(0.5,)]), tmp_path / "reused", lines.append)
    assert len(lines) == 1 and "the export is pruned (0.5)" in lines[0] and "by design" in lines[0], lines
