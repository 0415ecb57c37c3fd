"""The long-training helpers: scripts/fetch_debian_photos.py (on a package built here, so no network)
and scripts/token_worth.sh's resume of a stopped stage (with a stub CLI that records its calls)."""
from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def _script_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fetch_module():
    return _script_module("fetch_debian_photos")


def _deb(members: dict[str, bytes]) -> bytes:
    """A Debian package: an ar archive of debian-binary, control.tar.xz and data.tar.xz."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    out = b"!<arch>\n"
    for name, body in (("debian-binary", b"2.0\n"), ("control.tar.xz", b"x"), ("data.tar.xz", data.getvalue())):
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode() + body
        out += b"\n" if len(body) % 2 else b""
    return out


def _jpeg(w: int, h: int, seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _run_fetch(mod, monkeypatch, argv: list[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["fetch_debian_photos.py", *argv])
    mod.main()


@pytest.fixture
def fake_debs(tmp_path, monkeypatch):
    mod = _fetch_module()
    names = [f"./usr/share/backgrounds/p{i}.jpg" for i in range(6)]
    deb = _deb({n: _jpeg(300 + 10 * i, 200, i) for i, n in enumerate(names)})
    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / "fake_1.0_all.deb").write_bytes(deb)
    monkeypatch.setattr(mod, "PACKAGES", [("f/fake/fake_1.0_all.deb", hashlib.sha256(deb).hexdigest(),
                                           {n: ("Someone", "CC-BY-4.0") for n in names})])
    return mod, debs


def test_fetch_splits_resizes_and_names_the_licences(fake_debs, tmp_path, monkeypatch):
    mod, debs = fake_debs
    out = tmp_path / "photos" / "debian"
    _run_fetch(mod, monkeypatch, [str(out), "--debs", str(debs), "--max-side", "150"])
    train, held = sorted(p.name for p in (out / "train").iterdir()), sorted(p.name for p in (out / "heldout").iterdir())
    assert held == ["p2.png"] and train == ["p0.png", "p1.png", "p3.png", "p4.png", "p5.png"]
    assert max(Image.open(out / "train" / "p5.png").size) == 150
    sources = (out / "SOURCES.md").read_text()
    assert "| p2.png | 150x94 | heldout | Someone | CC-BY-4.0 | fake_1.0_all.deb |" in sources
    # a second run replaces only with --force, and never a folder it did not make
    with pytest.raises(SystemExit, match="already exists; pass --force"):
        _run_fetch(mod, monkeypatch, [str(out), "--debs", str(debs)])
    (out / "thesis.tex").write_text("mine")
    with pytest.raises(SystemExit, match="not made by this script"):
        _run_fetch(mod, monkeypatch, [str(out), "--debs", str(debs), "--force"])
    assert (out / "thesis.tex").read_text() == "mine"


def test_fetch_refuses_a_package_that_is_not_the_pinned_one(fake_debs, tmp_path, monkeypatch):
    mod, debs = fake_debs
    (debs / "fake_1.0_all.deb").write_bytes(_deb({"./other.jpg": _jpeg(10, 10, 0)}))
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"fake_1.0_all.deb has SHA-256 \w+, not the pinned"):
        _run_fetch(mod, monkeypatch, [str(out), "--debs", str(debs)])
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


STUB_AE = r'''#!/usr/bin/env python3
import json, os, sys
from pathlib import Path
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\n")
args = sys.argv[1:]
if args[0] == "train":
    out, steps = Path(args[args.index("--out") + 1]), int(args[args.index("--steps") + 1])
    with open(os.environ["STUB_LOG"] + ".threads", "a") as f:
        f.write(f"{out.name} {os.environ.get('OMP_NUM_THREADS', '-')}\n")
    if out.name == os.environ.get("STUB_INTERRUPTED"):       # stopped by a signal before its first save
        sys.exit(130)
    if out.name == os.environ.get("STUB_SLOW"):
        import time
        time.sleep(1.5)
    (out / "final").mkdir(parents=True, exist_ok=True)
    if "--resume" not in args:
        (out / "run.json").write_text("{}")
    (out / "final" / "model.safetensors").write_text(str(steps))
    # as train writes it; STUB_STOPS names a stage that --max-minutes stops halfway
    reached = steps // 2 if out.name == os.environ.get("STUB_STOPS") else steps
    (out / "final" / "training.json").write_text(json.dumps({"planned_steps": steps, "steps": reached},
                                                            indent=2, sort_keys=True))
elif args[0] == "eval":
    v = {k: {"psnr_y": 26.0, "ssim_y": 0.7} for k in ("model", "tokens_off", "sca_off", "bicubic", "vq_ceiling")}
    Path(args[args.index("--json") + 1]).write_text(json.dumps({"variants": v}))
'''


def test_token_worth_resumes_a_stopped_stage_and_keeps_finished_ones(tmp_path):
    ae = tmp_path / "ae"
    ae.write_text(STUB_AE)
    ae.chmod(0o755)
    run = tmp_path / "run"
    (run / "vqvae" / "final").mkdir(parents=True)                 # finished
    (run / "tf" / "state").mkdir(parents=True)                    # stopped mid-run: its state was saved
    (run / "tf" / "state" / "state.json").write_text("{}")
    log = tmp_path / "calls.log"
    env = {**os.environ, "AE": f"{sys.executable} {ae}", "PY": sys.executable, "STUB_LOG": str(log),
           "HELDOUT": str(tmp_path / "held")}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "token_worth.sh"), str(run), "5", "6", "7", "micro"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    trains = {c.split()[1] + " " + c.split("--out ")[1].split()[0].rsplit("/", 1)[1]: c
              for c in calls if c.startswith("train ")}
    assert set(trains) == {"transformer tf", "decoder dec-zero", "joint joint", "decoder dec"}   # vqvae kept
    assert "--resume" in trains["transformer tf"] and "--force" not in trains["transformer tf"]
    assert all("--force" in c for k, c in trains.items() if k != "transformer tf")
    assert sum(c.startswith("eval ") and "--images" in c for c in calls) == 4            # HELDOUT: each stage
    assert "on HELDOUT: before any fine-tune the tokens are worth +0.00 dB" in r.stdout


def test_token_worth_resumes_a_stage_stopped_by_max_minutes_and_evaluates_it_again(tmp_path):
    log, env = _stub_env(tmp_path, PY=sys.executable)
    run = tmp_path / "run"
    (run / "vqvae" / "final").mkdir(parents=True)
    tf = run / "tf"
    (tf / "state").mkdir(parents=True)
    (tf / "state" / "state.json").write_text("{}")
    (tf / "final").mkdir()
    (tf / "final" / "training.json").write_text(    # as train writes it: stopped by --max-minutes at step 2
        '{\n  "planned_steps": 6,\n  "stage": "transformer",\n  "steps": 2\n}\n')
    (tf / "final" / "model.safetensors").write_text("")
    (tf / "eval.json").write_text("{}")                     # evaluated at step 2, before the run resumes
    os.utime(tf / "eval.json", (1, 1))
    os.utime(tf / "final" / "model.safetensors", (2, 2))    # the resumed run rewrites final after it
    r = subprocess.run(["bash", str(ROOT / "scripts" / "token_worth.sh"), str(run), "5", "6", "7", "micro"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    tf_train = [c for c in calls if c.startswith("train transformer")]
    assert len(tf_train) == 1 and "--resume" in tf_train[0]
    assert any(c.startswith(f"eval {tf}/final") for c in calls)


def test_token_worth_gives_a_stage_every_thread_once_its_partner_finished(tmp_path):
    """Side by side the stages train at one thread each; rerun after dec-zero finished, the
    transformer it trained beside goes on with the caller's threads."""
    log, env = _stub_env(tmp_path, PY=sys.executable, OMP_NUM_THREADS="3")
    run = tmp_path / "run"
    argv = ["bash", str(ROOT / "scripts" / "token_worth.sh"), str(run), "5", "6", "7", "micro"]
    assert subprocess.run(argv, env=env, capture_output=True, text=True).returncode == 0
    first = dict(line.split() for line in Path(f"{log}.threads").read_text().splitlines())
    assert first == {"vqvae": "3", "tf": "1", "dec-zero": "1", "joint": "1", "dec": "1"}
    for name in ("tf", "dec", "joint"):                   # the transformer stopped, dec-zero finished
        shutil.rmtree(run / name)
    (run / "tf" / "state").mkdir(parents=True)
    (run / "tf" / "state" / "state.json").write_text("{}")
    Path(f"{log}.threads").unlink()
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    again = dict(line.split() for line in Path(f"{log}.threads").read_text().splitlines())
    assert again == {"tf": "3", "joint": "1", "dec": "1"}
    shutil.rmtree(run / "dec-zero")                       # and the other way round
    Path(f"{log}.threads").unlink()
    assert subprocess.run(argv, env=env, capture_output=True, text=True).returncode == 0
    assert Path(f"{log}.threads").read_text().split() == ["dec-zero", "3"]


def test_token_worth_stopped_waits_for_the_stage_training_beside_it(tmp_path):
    """dec-zero stopped (exit 130) while the transformer trains in the background: the script
    exits only once the transformer has written its run, so a rerun never meets it half-written."""
    log, env = _stub_env(tmp_path, PY=sys.executable, STUB_INTERRUPTED="dec-zero", STUB_SLOW="tf")
    run = tmp_path / "run"
    # not piped: a captured pipe would make run() wait for the background stage whatever the script did
    r = subprocess.run(["bash", str(ROOT / "scripts" / "token_worth.sh"), str(run), "5", "6", "7", "micro"],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert r.returncode == 130
    assert (run / "tf" / "final" / "training.json").exists()


def test_token_worth_trains_a_stage_again_once_the_stage_it_started_from_was_resumed(tmp_path):
    log, env = _stub_env(tmp_path, PY=sys.executable, STUB_STOPS="vqvae")
    run = tmp_path / "run"
    argv = ["bash", str(ROOT / "scripts" / "token_worth.sh"), str(run), "5", "6", "7", "micro"]
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "vqvae stopped at step 2 of 5, so the budgets below are not equal" in r.stdout
    (run / "vqvae" / "state").mkdir()                         # --max-minutes saved its state
    (run / "vqvae" / "state" / "state.json").write_text("{}")
    for stage in ("tf", "dec-zero", "dec", "joint"):         # they started before vqvae is resumed
        os.utime(run / stage / "run.json", (1, 1))
    log.unlink()
    env.pop("STUB_STOPS")
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    trains = {c.split("--out ")[1].split()[0].rsplit("/", 1)[1]: c.split()
              for c in log.read_text().splitlines() if c.startswith("train ")}
    assert "--resume" in trains.pop("vqvae")
    # every later stage started from the stopped VQ-VAE's weights: trained again, from the start
    assert set(trains) == {"tf", "dec-zero", "dec", "joint"} and all("--force" in t for t in trains.values())
    assert "stopped" not in r.stdout


def test_token_worth_says_when_a_budget_was_cut(tmp_path):
    log, env = _stub_env(tmp_path, PY=sys.executable, STUB_STOPS="joint")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "token_worth.sh"), str(tmp_path / "run"), "5", "6", "8",
                        "micro"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "joint stopped at step 4 of 8, so the budgets below are not equal" in r.stdout
    # the figure of the stage cut short names each side's steps, never "equal"; the other keeps the claim
    worth = {line.split(":")[0].strip(): line for line in r.stdout.splitlines() if "tokens' worth" in line}
    assert worth["joint"].startswith("  joint: tokens' worth at unequal fine-tune budgets (joint 4 steps vs "
                                     "dec-zero 8 steps) 26.00 - 26.00 = +0.00 dB PSNR-Y"), worth
    assert worth["dec"].startswith("  dec: tokens' worth at equal fine-tune budget 26.00 - 26.00"), worth


def _stub_env(tmp_path, **extra):
    ae = tmp_path / "ae"
    ae.write_text(STUB_AE)
    ae.chmod(0o755)
    log = tmp_path / "calls.log"
    return log, {**os.environ, "AE": f"{sys.executable} {ae}", "STUB_LOG": str(log), **extra}


def test_ablation_gives_each_variant_its_flag_after_the_shared_ones_and_resumes_a_stopped_one(tmp_path):
    log, env = _stub_env(tmp_path, TRAIN_ARGS="--batch 12 --hcc-rollout teacher", HELDOUT=str(tmp_path / "held"))
    base = tmp_path / "run"
    (base / "vqvae" / "final").mkdir(parents=True)
    (base / "ablation" / "both" / "final").mkdir(parents=True)            # finished: kept
    (base / "ablation" / "no-hcc" / "state").mkdir(parents=True)          # stopped mid-run
    (base / "ablation" / "no-hcc" / "state" / "state.json").write_text("{}")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "ablation.sh"), str(base), "9"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    trains = {c.split("--out ")[1].split()[0].rsplit("/", 1)[1]: c.split() for c in calls if c.startswith("train ")}
    assert set(trains) == {"no-sca", "no-hcc", "hcc-free"}
    free = trains["hcc-free"]
    # the variant's own flag comes last, so it overrides TRAIN_ARGS' --hcc-rollout teacher
    assert free.index("gumbel") > free.index("teacher") and "--force" in free
    assert "--resume" in trains["no-hcc"] and "--force" not in trains["no-hcc"]
    assert trains["no-hcc"][trains["no-hcc"].index("--hcc-weight") + 1] == "0"
    assert "--no-sca" in trains["no-sca"] and all(t[t.index("--steps") + 1] == "9" for t in trains.values())
    evals = [c for c in calls if c.startswith("eval ")]
    assert len(evals) == 8 and sum("--images" in c for c in evals) == 4          # each variant, both photo sets
    assert (base / "ablation" / "both" / "eval-heldout.json").is_file()


def test_ablation_refuses_an_unknown_variant_before_training_anything(tmp_path):
    log, env = _stub_env(tmp_path, VARIANTS="both no-sac")
    (tmp_path / "run" / "vqvae" / "final").mkdir(parents=True)
    r = subprocess.run(["bash", str(ROOT / "scripts" / "ablation.sh"), str(tmp_path / "run"), "9"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown variant 'no-sac' in VARIANTS" in r.stderr
    assert not log.exists()


def test_ablation_trains_its_variants_again_once_the_vqvae_they_started_from_changed(tmp_path):
    log, env = _stub_env(tmp_path, VARIANTS="both no-sca")
    base = tmp_path / "run"
    (base / "vqvae" / "final").mkdir(parents=True)
    (base / "vqvae" / "final" / "model.safetensors").write_text("v1")
    os.utime(base / "vqvae" / "final" / "model.safetensors", (1, 1))
    argv = ["bash", str(ROOT / "scripts" / "ablation.sh"), str(base), "9"]
    assert subprocess.run(argv, env=env, capture_output=True, text=True).returncode == 0
    log.unlink()
    r = subprocess.run(argv, env=env, capture_output=True, text=True)          # nothing changed: all kept
    assert r.returncode == 0 and "already trained" in r.stdout and not log.exists()     # no call at all
    (base / "vqvae" / "final" / "model.safetensors").write_text("v2")           # the VQ-VAE trained again
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    trains = [c.split() for c in log.read_text().splitlines() if c.startswith("train ")]
    assert len(trains) == 2 and all("--force" in t for t in trains)
    assert r.stdout.count("changed since") == 2


@pytest.mark.parametrize("script", ["attention_distance.py", "fresh_transformer.py", "train_default.py"])
def test_a_scripts_seed_takes_the_clis_range(script):
    # a seed past 2**64-1 reached torch.manual_seed: a traceback after the run had started
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--seed", str(2**64)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "argument --seed: must be an integer from 0 to 2**64-1, got '18446744073709551616'" in done.stderr


def test_attention_distance_measures_the_lr_eval_scores(monkeypatch):
    """scripts/attention_distance.py measures "the held-out crops, degraded as eval does": its LR tiles
    are those `evaluate` scores, each photograph's drawn from the seed and its name (the script drew
    seed * 1000 + its place in the list, which eval no longer does)."""
    import torch

    from alignvar_edge.bench import evaluate as evaluation
    from alignvar_edge.model import AlignVAR
    from alignvar_edge.samples import sample_images
    script = _script_module("attention_distance")
    held = dict(sample_images("heldout"))
    crops = [(name, held[name][:64, :64]) for name in ("rocket", "coffee")]     # one HR tile each
    monkeypatch.setattr(script, "sample_images", lambda which: crops)
    scored: list[np.ndarray] = []
    degrade = evaluation.degrade
    monkeypatch.setattr(evaluation, "degrade", lambda hr, deg, seed: scored.append(degrade(hr, deg, seed)) or scored[-1])
    model = AlignVAR.from_pretrained("alignvar-tiny").eval()
    evaluation.evaluate(model, crops, seed=3, max_side=64)
    assert len(scored) == 2
    expected = torch.from_numpy(np.stack(scored)).permute(0, 3, 1, 2)    # before the script draws its own
    tiles = script.lr_tiles(model, max_side=64, seed=3)
    assert torch.equal(tiles, expected)
