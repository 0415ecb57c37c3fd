"""Figures the docs quote from committed result files are those files' figures."""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"


def _section(doc: str, start: str, end: str) -> str:
    text = (ROOT / doc).read_text()
    return text[text.index(start):text.index(end, text.index(start))]


def _row(text: str, head: str) -> list[str]:
    """The cells of the table row starting with `head`, bold marks dropped."""
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {head}"))
    return [c.strip().strip("*") for c in line.strip("|").split("|")]


def _p50_ms(report: dict, label: str) -> float:
    """The p50 ms per tile as the report's tables print it (ratios are of these, as a reader's)."""
    return round(next(e for e in report["engines"] if e["label"] == label)["latency"]["per_tile_ms"]["p50"], 2)


def test_the_amx_half_precision_block_quotes_its_reports():
    b16, b1 = (json.loads((RESULTS / "xeon-amx-h200host" / f).read_text()) for f in ("half-b16.json", "half.json"))
    text = _section("docs/benchmarks.md", "**OpenVINO CPU on AMX**", "Other backends and ISA classes")
    for head, label in (("OpenVINO f32", "ov-f32"), ("**OpenVINO bf16, split**", "ov-bf16"),
                        ("OpenVINO bf16, whole graph", "ov-bf16-whole")):
        want = []
        for r in (b16, b1):
            want += [f"{_p50_ms(r, label):.2f}", f"{_p50_ms(r, 'ov-f32') / _p50_ms(r, label):.2f}×"]
        assert _row(text, head)[1:5] == want, head
    # "the whole graph ... is another A–B% faster" than the split engine, at batch 16 and 1
    m = re.search(r"another\s+(\d+)–(\d+)% faster", text)
    assert m, "the whole graph's gain over the split engine is quoted"
    gains = sorted(round((_p50_ms(r, "ov-bf16") / _p50_ms(r, "ov-bf16-whole") - 1) * 100) for r in (b16, b1))
    assert [int(m[1]), int(m[2])] == gains


def test_the_torch_engine_on_cuda_rows_quote_engine_json():
    e = json.loads((RESULTS / "gpu-h200-engine" / "engine.json").read_text())
    tile, image = e["paper_size_tile"], e["whole_image_tiny"]
    t_eager, t_graph = tile["p50_ms"]["eager"], tile["p50_ms"]["graphed"]
    i_eager, i_graph = image["p50_ms"]["eager"], image["p50_ms"]["graphed"]
    fastest = min(tile["raw_ms"]["eager"]) / t_graph
    spread = f"{min(tile['raw_ms']['eager']):.0f}–{max(tile['raw_ms']['eager']):.0f} ms"
    for doc, start, end, tile_head, image_head in (
            ("docs/runtimes.md", "**On a CUDA device the engine replays", "### onnxruntime",
             "`--preset d24-512`", "bundled `alignvar-tiny`"),
            ("docs/benchmarks.md", "### The torch engine on CUDA", "**ONNX Runtime CUDA",
             "`d24-512` fp16", "bundled `alignvar-tiny` fp32")):
        text = _section(doc, start, end)
        assert _row(text, tile_head)[1:4] == [f"{t_eager:.1f} ms", f"{t_graph:.1f} ms", f"{t_eager / t_graph:.2f}×"]
        cells = _row(text, image_head)[1:4]
        assert f"{i_eager:.1f} ms" in cells[0] and f"{i_graph:.1f} ms" in cells[1], cells
        assert cells[2] == f"{i_eager / i_graph:.2f}×"
        for k, cell in (("eager", cells[0]), ("graphed", cells[1])):
            assert f"{image['image_mp_per_s'][k]:.2f} MP/s" in cell
        assert spread in text and f"{fastest:.1f}×" in text, doc
    readme = (ROOT / "README.md").read_text()
    for figure in (f"{t_eager / t_graph:.2f}×", f"{fastest:.1f}×", f"{i_eager / i_graph:.2f}×",
                   f"{image['image_mp_per_s']['graphed']:.1f} MP/s"):
        assert figure in readme, figure


def test_the_merged_devices_table_is_what_its_documented_command_prints_now():
    """docs/results/devices.md is `bench merge`'s Markdown of the reports the command in
    docs/benchmarks.md names: regenerate it with that command when the merge output changes."""
    import shlex

    from alignvar_edge.bench.merge import merge_markdown, merge_reports
    text = (ROOT / "docs" / "benchmarks.md").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if "--md docs/results/devices.md" in ln)
    argv = shlex.split(line)
    assert argv[:3] == ["alignvar-edge", "bench", "merge"], argv
    reports = [ROOT / a for a in argv[3:argv.index("--out")]]
    plot = Path(argv[argv.index("--plot") + 1]).name
    assert merge_markdown(merge_reports(reports), plot) == (RESULTS / "devices.md").read_text()


def _two_run_table(text: str, runs: list[dict], rows: tuple[tuple[str, str], ...]) -> None:
    """Rows `| head | p50 a / b | vs eager a / b | image MP/s a / b | image vs eager a / b | tokens |`
    quote the engine `label` of the two interleaved runs `runs`."""
    for head, label in rows:
        engines = [next(e for e in r["engines"] if e["label"] == label) for r in runs]
        tile = " / ".join(f"{_p50_ms(r, label):.2f}" for r in runs)
        mps = " / ".join(f"{e['image']['megapixels_per_s']:.3f}" for e in engines)
        if label == "pytorch-eager":
            ratios = ["1.00×", "1.00×"]
        else:
            ratios = [" / ".join(f"{e[k]:.2f}×" for e in engines) for k in ("speedup_vs_eager", "image_speedup_vs_eager")]
        tokens = {e["fidelity"]["vs_reference"]["token_agreement"] for e in engines}
        assert len(tokens) == 1, label                   # the same engine, the same 240 tiles
        (t,) = tokens
        assert _row(text, head)[1:] == [tile, ratios[0], mps, ratios[1], "100%" if t == 1 else f"{t:.2%}"], head


def _amx_runs(*files: str) -> list[dict]:
    return [json.loads((RESULTS / "xeon-amx-2core" / f).read_text()) for f in files]


def test_the_two_core_amx_table_quotes_its_two_runs():
    text = _section("docs/benchmarks.md", "### The same engines on a 2-core Xeon with AMX", "- **Per tile**")
    _two_run_table(text, _amx_runs("amx-2core.json", "amx-2core-reversed.json"), (
        ("PyTorch eager (batch 4", "pytorch-eager"), ("ONNX Runtime fp32", "ort-fp32"),
        ("ONNX Runtime int8", "ort-int8"), ("OpenVINO f32", "ov-f32"), ("OpenVINO bf16 split, token path f32", "ov-bf16"),
        ("OpenVINO int8 split", "ov-int8"), ("**OpenVINO bf16 split, MLP", "ov-bf16-mlp")))


def test_the_plain_build_on_amx_quotes_its_runs_and_the_readme_its_range():
    runs = _amx_runs("plain-build.json", "plain-build-reversed.json")
    text = _section("docs/benchmarks.md", "#### A plain build on this class, now", "- The plain build is")
    _two_run_table(text, runs, (
        ("PyTorch eager (batch 4", "pytorch-eager"), ("OpenVINO bf16 split, token path f32", "ov-bf16-exact"),
        ("OpenVINO int8 split", "ov-int8"), ("**OpenVINO bf16, plain", "ov-bf16")))
    (deploy,) = _amx_runs("deploy-quick-islands.json")
    best = next(e for e in deploy["engines"] if e["label"] == "openvino-bf16")
    assert f"{best['speedup_vs_eager']:.2f}× eager per tile and {best['image_speedup_vs_eager']:.2f}× on the whole" in text
    readme = (ROOT / "README.md").read_text()
    row = next(ln for ln in readme.splitlines() if ln.startswith("| 2-core Xeon with AMX"))

    def span(values: list[float]) -> str:
        return f"{min(values):.2f}–{max(values):.2f}×"
    engines = [best] + [next(e for e in r["engines"] if e["label"] == "ov-bf16") for r in runs]
    # the plain build since its decoder's upsampling became a transposed convolution
    engines += [next(e for e in r["engines"] if e["label"] == "ov-bf16-after")
                for r in _amx_runs("upsample-deconv.json", "upsample-deconv-reversed.json")]
    # and its batch-16 rows of the batch sweep: every run of the plain build on this class
    engines += [next(e for e in r["engines"] if e["label"] == "ov-b16")
                for r in _amx_runs("batch-sizes.json", "batch-sizes-reversed.json")]
    assert {e["compute_precision"] for e in engines} == {"bf16 image, f32 tokens with bf16 matmuls"}
    exact = [next(e for e in r["engines"] if e["label"] == "ov-bf16-exact") for r in runs]
    tile, image = span([e["speedup_vs_eager"] for e in engines]), span([e["image_speedup_vs_eager"] for e in engines])
    for figure in (tile, image, span([e["speedup_vs_eager"] for e in exact]),
                   span([e["image_speedup_vs_eager"] for e in exact])):
        assert figure in row, figure
    assert f"{tile} eager per tile and {image} the PyTorch engine on whole images, seven runs" in row
    assert len(engines) == 7
    batch = " ".join(_section("docs/benchmarks.md", "#### The batch a plain export gets, on this class", "## GPU").split())
    assert "Over the seven runs of the plain build at batch 16 on this class" in batch
    assert f"**{tile} eager per tile and {image} the PyTorch engine on the whole image**" in batch


def test_the_islands_on_the_debian_photographs_quote_their_reports():
    text = _section("docs/runtimes.md", "On photographs the bundled model never saw", "```sh")
    for folder in ("heldout", "train"):
        (report,) = _amx_runs(f"islands-debian-{folder}.json")
        engines = {e["label"]: e["fidelity"] for e in report["engines"]}
        assert f"{engines['ov-bf16']['vs_reference']['token_agreement']:.2%}" in text, folder
        assert engines["ov-bf16-exact"]["vs_reference"]["token_agreement"] == 1.0
        hr = [engines[k]["vs_hr"]["psnr_y_db"] for k in ("ov-bf16", "ov-bf16-exact")]
        assert abs(hr[0] - hr[1]) <= 0.01 and f"{hr[0]:.2f}" in text and f"{hr[1]:.2f}" in text, folder


def test_the_int8_islands_run_is_quoted_as_measured():
    (report,) = _amx_runs("int8-islands.json")
    e = {x["label"]: x for x in report["engines"]}
    bench = _section("docs/benchmarks.md", "- An int8 build gets the same islands", "- A bigger batch")
    runtimes_doc = _section("docs/runtimes.md", "that float token path is", "If the last rung")
    tiles = [f"{_p50_ms(report, k):.2f}" for k in ("ov-int8-isl", "ov-bf16", "ov-int8-fg")]
    images = [f"{e[k]['image_speedup_vs_eager']:.2f}×" for k in ("ov-int8-isl", "ov-bf16", "ov-int8-fg")]
    assert f"{tiles[0]} against {tiles[1]} and {tiles[2]} ms per tile" in bench
    assert f"{images[0]}** against {images[1]} and {images[2]}" in bench
    assert f"{e['ov-int8-isl']['fidelity']['vs_reference']['token_agreement']:.2%}" in bench
    assert f"{tiles[0]} ms per tile against {tiles[2]}" in runtimes_doc and images[0] in runtimes_doc


def test_the_token_part_precisions_are_quoted_as_measured():
    (report,) = _amx_runs("token-precisions.json")
    v = report["variants"]
    text = " ".join(_section("docs/benchmarks.md", "- Other precisions of the exact split's token part", "## GPU").split())
    ms = {k: f"{x['ms_per_tile']:.2f}" for k, x in v.items()}
    tok = {k: f"{x['token_agreement']:.2%}" for k, x in v.items()}
    assert f"f32 {ms['f32 (the engine)']} ms per tile" in text and v["f32 (the engine)"]["token_agreement"] == 1.0
    for name in ("attention products bf16", "f16 hint", "bf16 hint"):
        assert f"{tok[name]} at {ms[name]} ms" in text, name


def test_the_upsampling_rewrite_table_quotes_its_two_runs():
    runs = _amx_runs("upsample-deconv.json", "upsample-deconv-reversed.json")
    text = _section("docs/benchmarks.md", "#### The decoder's ×2 upsampling", "## GPU")

    def figures(label: str) -> tuple[list[str], list[str], set[float]]:
        """ms per tile and image MP/s of each run, as printed, and the token agreements."""
        engines = [next(e for e in r["engines"] if e["label"] == label) for r in runs]
        return ([f"{_p50_ms(r, label):.2f}" for r in runs], [f"{e['image']['megapixels_per_s']:.3f}" for e in engines],
                {e["fidelity"]["vs_reference"]["token_agreement"] for e in engines})
    for head, kind in (("OpenVINO bf16, plain", "bf16"), ("OpenVINO fp32", "f32")):
        b_ms, b_mps, before_tokens = figures(f"ov-{kind}-before")
        a_ms, a_mps, after_tokens = figures(f"ov-{kind}-after")
        assert before_tokens == after_tokens and len(after_tokens) == 1, kind   # off the token path
        (t,) = after_tokens
        assert _row(text, head)[1:] == ["; ".join(f"{b} → {a}" for b, a in zip(b_ms, a_ms)),
                                        "; ".join(f"{b} → {a}" for b, a in zip(b_mps, a_mps)),
                                        "100%" if t == 1 else f"{t:.2%}"], head
    after = [next(e for e in r["engines"] if e["label"] == "ov-bf16-after") for r in runs]
    tile = sorted(e["speedup_vs_eager"] for e in after)
    image = sorted(e["image_speedup_vs_eager"] for e in after)
    flat = " ".join(text.split())
    assert f"{tile[0]:.2f}–{tile[1]:.2f}× eager per tile" in flat
    assert f"**{image[0]:.2f}–{image[1]:.2f}×** the PyTorch engine" in flat


def test_the_zen5_table_quotes_its_two_runs_and_its_peak():
    zen5 = RESULTS / "epyc-zen5-2core"
    runs = [json.loads((zen5 / f).read_text()) for f in ("engines.json", "engines-reversed.json")]
    text = _section("docs/benchmarks.md", "### The same engines on a Zen 5 EPYC", "- **Per tile**")
    _two_run_table(text, runs, (
        ("PyTorch eager (batch 4", "pytorch-eager"), ("ONNX Runtime fp32", "ort-fp32"),
        ("OpenVINO bf16 split, token path f32", "ov-exact"), ("OpenVINO bf16, plain", "ov-plain"),
        ("**OpenVINO int8, plain", "ov-int8")))
    deploy = json.loads((zen5 / "deploy-quick.json").read_text())
    parts = json.loads((zen5 / "parts-int8.json").read_text())
    peaks = [r["peak"]["gflops"] for r in (*runs, deploy)] + [parts["peak_fp32_gflops"]]
    assert f"peak {min(peaks):.0f}–{max(peaks):.0f} GFLOP/s in these" in text, peaks
    best = next(e for e in deploy["engines"] if e["label"] == "openvino-int8")
    notes = _section("docs/benchmarks.md", "### The same engines on a Zen 5 EPYC", "### The same engines on an AVX2")
    assert f"{best['speedup_vs_eager']:.2f}× eager\n  per tile and {best['image_speedup_vs_eager']:.2f}× on the whole" in notes


def test_the_zen5_island_sets_and_batch_sweep_quote_their_reports():
    zen5 = RESULTS / "epyc-zen5-2core"
    runs = [json.loads((zen5 / f).read_text()) for f in ("token-bf16-sets.json", "token-bf16-sets-reversed.json")]
    debian = [json.loads((zen5 / f"token-bf16-sets-debian-{f}.json").read_text()) for f in ("heldout", "train")]
    text = _section("docs/benchmarks.md", "- **More bf16 islands are not a lever", "```sh")
    text = "\n".join(line.strip() for line in text.splitlines())      # the table sits in a list item

    def tokens(report: dict, label: str) -> str:
        return f"{next(e for e in report['engines'] if e['label'] == label)['fidelity']['vs_reference']['token_agreement']:.2%}"

    for head, label in (("MLPs (a plain", "ffn"), ("MLPs and the output", "out"), ("MLPs and the q/k/v", "qkv"),
                        ("MLPs and both", "all")):
        row = _row(text, head)
        engines = [next(e for e in r["engines"] if e["label"] == label) for r in runs]
        assert row[2] == tokens(runs[0], label) == tokens(runs[1], label), head
        if label != "all":
            assert row[3] == " / ".join(tokens(d, label) for d in debian), head
        assert row[4] == " / ".join(f"{_p50_ms(r, label):.2f}" for r in runs), head
        assert row[5] == " / ".join(f"{e['image_speedup_vs_eager']:.2f}×" for e in engines), head
    sweep = _section("docs/benchmarks.md", "- **The batch is not a lever", "- **More bf16")
    parts = [list(json.loads((zen5 / f"parts-int8-b{b}.json").read_text())["parts"].values()) for b in (8, 16, 32, 64)]
    for i, name in enumerate(("token part", "image part")):
        quoted = " / ".join(f"{p[i]['ms_per_tile']:.2f}" for p in parts)
        assert f"{name} {quoted} ms" in " ".join(sweep.split()), name


def test_the_readme_quotes_the_zen5_range_of_the_plain_int8_build():
    """The plain build's range is over its own runs; `deploy --quick`'s int8 engine is another rung
    (its ONNX search's float groups, every transformer matmul f32) and is quoted apart."""
    zen5 = RESULTS / "epyc-zen5-2core"
    labelled = [("engines.json", "ov-int8"), ("engines-reversed.json", "ov-int8"),
                ("token-bf16-sets.json", "ffn"), ("token-bf16-sets-reversed.json", "ffn")]
    engines = [next(e for e in json.loads((zen5 / f).read_text())["engines"] if e["label"] == label)
               for f, label in labelled]
    assert {e["compute_precision"] for e in engines} == {"bf16 image, f32 tokens with bf16 matmuls"}
    tile = [e["speedup_vs_eager"] for e in engines]
    image = [e["image_speedup_vs_eager"] for e in engines]
    row = next(ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith("| 2-core Zen 5 EPYC"))
    plain = f"plain build: {min(tile):.2f}–{max(tile):.2f}× eager per tile and {min(image):.2f}–{max(image):.2f}× the PyTorch"
    assert plain in row
    assert "four runs" in row
    deploy = next(e for e in json.loads((zen5 / "deploy-quick.json").read_text())["engines"] if e["label"] == "openvino-int8")
    assert deploy["compute_precision"] == "bf16 image, f32 tokens"
    assert f"`deploy --quick`'s engine: {deploy['speedup_vs_eager']:.2f}× and {deploy['image_speedup_vs_eager']:.2f}×, one run" in row
    notes = " ".join(_section("docs/benchmarks.md", "### The same engines on a Zen 5 EPYC", "- **Whole image**").split())
    assert f"Over these four runs of the plain build: {min(tile):.2f}–{max(tile):.2f}× per tile and " \
           f"{min(image):.2f}–{max(image):.2f}× on the whole image" in notes


def _eval_draws(seed: int, names: list[str]) -> dict[str, dict]:
    """Each photograph's degradation as `eval` draws it now for the bundled model: from the seed and
    its name. A report whose LRs came from the earlier draw (seed * 1000 + its place) differs."""
    from alignvar_edge import degrade
    from alignvar_edge.model.checkpoint import load_config, resolve_checkpoint_dir
    config = load_config(resolve_checkpoint_dir("alignvar-tiny")).lr_degradation()
    return {name: degrade.drawn(config, degrade.image_seed(seed, name)) for name in names}


def test_the_bundled_models_eval_figures_quote_their_reports():
    """training.md's and the README's figures of the bundled model are its eval reports' (the LR of
    each photograph drawn from its name)."""
    held = json.loads((RESULTS / "bundled-eval" / "heldout-256.json").read_text())
    untrained = json.loads((RESULTS / "bundled-eval" / "untrained-heldout-256.json").read_text())
    debian = json.loads((RESULTS / "debian-heldout" / "alignvar-tiny.json").read_text())
    for report in (held, debian):
        recorded = {image["name"]: image["degradation"] for image in report["per_image"]}
        assert recorded == _eval_draws(report["seed"], list(recorded)), report["checkpoint"]
    recorded = {name: image["degradation"] for name, image in untrained["images"].items()}
    assert recorded == _eval_draws(untrained["seed"], list(recorded))
    text = (ROOT / "docs" / "training.md").read_text()
    v = held["variants"]
    for image in held["per_image"]:
        p, s, u = image["psnr"], image["ssim"], untrained["images"][image["name"]]
        cells = [f"{p[k]:.2f} / {s[k]:.3f}" for k in ("model", "bicubic", "vq_ceiling")]
        assert _row(text, image["name"])[1:] == cells + [f"{u['psnr_y']:.2f} / {u['ssim_y']:.3f}"], image["name"]
    mean = [f"{v[k]['psnr_y']:.2f} / {v[k]['ssim_y']:.3f}" for k in ("model", "bicubic", "vq_ceiling")]
    assert _row(text, "**mean**")[1:] == mean + [f"{untrained['mean_psnr_y']:.2f} / {untrained['mean_ssim_y']:.3f}"]
    components = _section("docs/training.md", "## What each component contributes", "Said plainly")
    for name in ("model", "tokens_off", "sca_off", "bicubic", "vq_ceiling"):
        assert _row(components, f"`{name}`")[2] == f"{v[name]['psnr_y']:.3f} / {v[name]['ssim_y']:.4f}", name
    d = debian["variants"]
    for head, name in (("model", "model"), ("`tokens_off`", "tokens_off"), ("`sca_off`", "sca_off"),
                       ("bicubic", "bicubic"), ("VQ ceiling", "vq_ceiling")):
        assert f"| {head} | {d[name]['psnr_y']:.2f} / {d[name]['ssim_y']:.3f} |" in text, head
    gain, loss = v["model"]["psnr_y"] - v["bicubic"]["psnr_y"], d["model"]["psnr_y"] - d["bicubic"]["psnr_y"]
    assert f"The model beats bicubic by {gain:.2f} dB PSNR-Y" in text
    assert f"The bundled model is {-loss:.2f} dB below bicubic here" in text
    below = d["bicubic"]["psnr_y"] - d["vq_ceiling"]["psnr_y"]       # the tiny32 tokenizer's comparison
    assert below > 0
    assert (f"tokenizer is {below:.2f} dB *below* bicubic there ({d['vq_ceiling']['psnr_y']:.2f} against "
            f"{d['bicubic']['psnr_y']:.2f} dB") in " ".join(text.split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"(+{gain:.2f} dB PSNR-Y on three held-out photographs, −{-loss:.2f} dB on five others)" in readme


def test_the_overlap_sweep_table_quotes_its_report():
    """runtimes.md's overlap table is its sweep's, measured on the LRs `eval` draws now."""
    sweep = json.loads((RESULTS / "epyc-2core" / "overlap-sweep.json").read_text())
    assert sweep["draws"] == _eval_draws(sweep["seed"], list(sweep["draws"]))
    text = _section("docs/runtimes.md", "- **Overlap is a speed knob.**", "- **A faint tile grid remains")
    text = "\n".join(line.strip() for line in text.splitlines())          # the table is a list item's
    rows = {r["overlap"]: r for r in sweep["rows"]}
    for ov, r in rows.items():
        seams = f"{r['seam_ratio_vs_bicubic']:.1f} (visible)" if ov == 0 else f"{r['seam_ratio_vs_bicubic']:.2f}"
        head = f"{ov} (default)" if ov == 4 else f"{ov} |"
        assert _row(text, head)[1:] == [str(r["tiles_per_128px_lr_image"]), f"{r['psnr_y']:.3f}",
                                        f"{r['ssim_y']:.4f}", seams], ov
    flat = " ".join(text.split())
    assert f"(Bicubic: {rows[4]['bicubic_psnr_y']:.3f} dB" in flat
    lost = (rows[4]["psnr_y"] - rows[2]["psnr_y"], rows[4]["ssim_y"] - rows[2]["ssim_y"])
    assert f"`--overlap 2` gives up {lost[0]:.2f} dB PSNR-Y and {lost[1]:.3f} SSIM-Y" in flat


def test_the_tile_grid_ranges_are_its_reports():
    """runtimes.md's tile grid figures are the ranges over the photographs that tile_grid.py measured."""
    grid = json.loads((RESULTS / "tile-grid" / "heldout-ort.json").read_text())
    text = " ".join(_section("docs/runtimes.md", "- **A faint tile grid remains", "- Streaming:").split())
    s = {(r["overlap"], r["direction"]): r for r in grid["summary"]}
    assert len(grid["images"]) == 8 and "on eight photographs" in text

    def span(pair: list[float]) -> str:
        return f"{pair[0]:.2f}-{pair[1]:.2f}"
    rows, cols = s[4, "rows"], s[4, "columns"]
    assert (f"from row to row it spans {span(rows['peak_to_peak'])} levels of 255 peak to peak (rms "
            f"{span(rows['rms'])}), against {span(rows['controls'])} for the same average") in text
    assert (f"from column to column {span(cols['peak_to_peak'])}, little above its controls "
            f"({span(cols['controls'])})") in text
    assert f"in the worst 128 px wide band of each photograph, {span(rows['band'])} levels" in text
    assert f"(controls up to {rows['band_controls'][1]:.2f})" in text
    assert f"`--overlap 6`, a 40 px grid of {span(s[6, 'rows']['peak_to_peak'])} levels" in text
    assert f"`--overlap 2`, 56 px, {span(s[2, 'rows']['peak_to_peak'])}" in text
    ptp = sorted(r["peak_to_peak"] for r in grid["grid"] if (r["overlap"], r["direction"]) == (4, "rows"))
    assert f"{ptp[-2]:.2f} and {ptp[-1]:.2f} levels on the two photographs" in text
    assert f"{ptp[0]:.2f}-{ptp[-3]:.2f} on the other six" in text


def test_the_zen5_fused_form_runs_are_quoted_as_measured():
    zen5 = RESULTS / "epyc-zen5-2core"
    runs = [json.loads((zen5 / f).read_text()) for f in ("fused-int8.json", "fused-int8-reversed.json")]
    text = " ".join(_section("docs/benchmarks.md", "- **Nor is the fused attention form", "```sh").split())
    first, second = runs
    assert f"{_p50_ms(first, 'fused'):.2f} against {_p50_ms(first, 'explicit'):.2f} ms per tile" in text
    image = {e["label"]: e["image_speedup_vs_eager"] for e in first["engines"] if e["label"] in ("fused", "explicit")}
    assert f"{image['fused']:.2f}× against {image['explicit']:.2f}× the PyTorch engine" in text
    assert f"{_p50_ms(second, 'fused'):.2f} against {_p50_ms(second, 'explicit'):.2f} ms per tile" in text
    for run in runs:
        ratio = _p50_ms(run, "fused") / _p50_ms(run, "explicit")
        assert f"{ratio:.2f}×" in text, ratio
    tokens = {f"{e['fidelity']['vs_reference']['token_agreement']:.2%}" for r in runs for e in r["engines"]
              if e["label"] in ("fused", "explicit")}
    assert tokens == {"99.12%"} and "99.12% of the bench's tokens" in text


def test_the_leaner_fused_call_table_quotes_the_ratios_of_its_rounds():
    """The after / before ratios of each round of the two runs: their median and quartiles (numpy's
    default, linear), as the table quotes them."""
    import numpy as np
    text = _section("docs/benchmarks.md", "**The fused form at 12.7 nodes per call**", "Tokens 100%")
    for runtime, head in (("ort", "ONNX Runtime 1.32.0"), ("ov", "OpenVINO 2026.4.1")):
        cells = []
        for name in ("attention-fused-lean.json", "attention-fused-lean-swapped.json"):
            engines = {e["label"]: e for e in json.loads((RESULTS / "epyc-2core" / name).read_text())["engines"]}
            after, before = (np.array(engines[f"{runtime}_{w}"]["latency"]["raw_call_ms"]) for w in ("after", "before"))
            q1, q2, q3 = np.percentile(after / before, [25, 50, 75])
            cells.append(f"{q2:.3f} (IQR {q1:.3f}–{q3:.3f})")
        assert _row(text, head)[2:] == cells, head


def test_the_spread_of_best_over_median_gemm_quoted_for_quiet_runs_is_the_reports():
    """The roofline row's 'best GEMM / median GEMM' range for the one-thread reports of docs/results
    taken at a 1-minute load under 3, from each report's own in-run GEMM figures."""
    ratios, two_threads = [], []
    for path in RESULTS.rglob("*.json"):
        report = json.loads(path.read_text())
        peak = report.get("peak") if isinstance(report, dict) else None
        in_run = (peak or {}).get("in_run") if isinstance(peak, dict) else None
        if not isinstance(in_run, dict) or not in_run.get("median_gflops"):
            continue
        ratio = peak["gflops"] / in_run["median_gflops"]
        load = (report["host"].get("load_average") or [None])[0]
        if report["settings"].get("threads") == 1 and load is not None and load < 3:
            ratios.append(ratio)
        elif report["settings"].get("threads") == 2 and load is not None and load < 1:
            two_threads.append(ratio)
    row = " ".join(_section("docs/benchmarks.md", "| roofline |", "\n").split())
    assert f"({min(ratios):.1f}–{max(ratios):.1f}× in the one-thread reports" in row, (min(ratios), max(ratios))
    assert f"a two-thread run on an idle host reached {max(two_threads):.2f}×" in row, two_threads
