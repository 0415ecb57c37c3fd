"""Training: losses fall, a small set is overfit, resume is bit-exact, bad runs are refused."""
from __future__ import annotations

import csv
import re
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignvar_edge.errors import CheckpointError, ConfigError, InputError, OutputExistsError
from alignvar_edge.model import AlignVARConfig
from alignvar_edge.model.checkpoint import PRETRAINED_DIR
from alignvar_edge.train.trainer import TrainOptions, make_batches, train

MICRO = AlignVARConfig.from_preset("micro")
# these runs are a few steps long by design; the warning itself is tested below
pytestmark = pytest.mark.filterwarnings("ignore:--warmup .* is not shorter than --steps")


def micro_batches(batch: int = 4, seed: int = 0):
    return make_batches(None, MICRO, batch, seed)


def fixed_batches(batch: int = 2):
    hr, lr = micro_batches(batch)(0)
    return lambda step: (hr, lr)


def losses(run: Path, key: str) -> list[float]:
    with (run / "log.csv").open() as fh:
        return [float(r[key]) for r in csv.DictReader(fh)]


def opts(tmp: Path, stage: str, steps: int, **kw) -> TrainOptions:
    base = dict(preset="micro", batch=4, lr=3e-3, warmup=5, log_every=1, save_every=1000, progress=False)
    base.update(kw)
    return TrainOptions(stage=stage, out=tmp, steps=steps, **base)


@pytest.fixture(scope="module")
def vq_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vq") / "run"
    train(opts(out, "vqvae", 40), micro_batches())
    return out


def test_vqvae_loss_decreases(vq_run: Path) -> None:
    l1 = losses(vq_run, "l1")
    assert sum(l1[-5:]) / 5 < 0.7 * sum(l1[:5]) / 5


def test_transformer_overfits_small_set(vq_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "tf"
    train(opts(out, "transformer", 150, init=str(vq_run / "final"), lr=5e-3, warmup=10, ema=0.0),
          fixed_batches())
    acc = losses(out, "token_acc")
    ce = losses(out, "ce")
    assert ce[-1] < 0.5 * ce[0]
    assert max(acc[-5:]) >= 0.95, acc[-5:]


@pytest.fixture(scope="module")
def tf_run(vq_run: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tf") / "run"
    train(opts(out, "transformer", 30, init=str(vq_run / "final")), micro_batches())
    return out


@pytest.mark.parametrize("latent", ["model", "zero"])
def test_decoder_stage_trains_only_the_decoder_on_its_latent(latent: str, tf_run: Path, tmp_path: Path) -> None:
    from alignvar_edge.model.alignvar import load_pretrained
    from alignvar_edge.train.losses import decoder_modules, inference_latent

    init = tf_run / "final"
    out = train(opts(tmp_path / "dec", "decoder", 30, init=str(init), decoder_latent=latent), fixed_batches())
    before, after = load_pretrained(init), load_pretrained(out)
    trained = {n for m in decoder_modules(before) for n, _ in m.named_parameters(prefix=_prefix(before, m))}
    assert trained and all(n.startswith(("vae.decoder.", "vae.post_quant_conv.", "vae.lr_skip.")) for n in trained)
    a, b = before.state_dict(), after.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]) == (k not in trained), k
    l1 = losses(tmp_path / "dec", "loss")
    assert sum(l1[-5:]) / 5 < sum(l1[:5]) / 5
    # the latent the stage decodes is inference's: decoding it gives the model's own SR
    hr, lr = fixed_batches()(0)
    f_hat = inference_latent(before, lr)
    with torch.no_grad():
        sr = before.super_resolve(lr)
    assert torch.allclose(before.vae.decode(f_hat, lr), sr, atol=1e-6)
    assert f_hat.abs().sum() > 0


def test_joint_stage_trains_transformer_and_decoder_through_inference_rollout(tf_run: Path, tmp_path: Path) -> None:
    from alignvar_edge.model.alignvar import load_pretrained
    from alignvar_edge.train.losses import differentiable_inference_latent, inference_latent

    init = tf_run / "final"
    before = load_pretrained(init)
    # the forward value the stage trains on is inference's latent, yet gradients reach the transformer
    _, lr = micro_batches()(0)
    f_hat = differentiable_inference_latent(before, lr)
    assert torch.allclose(f_hat, inference_latent(before, lr), atol=1e-5)
    f_hat.square().sum().backward()
    assert before.head.weight.grad is not None and before.head.weight.grad.abs().sum() > 0

    out = train(opts(tmp_path / "joint", "joint", 30, init=str(init)), fixed_batches())
    after = load_pretrained(out)
    a, b = load_pretrained(init).state_dict(), after.state_dict()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    frozen = ("vae.encoder.", "vae.quant_conv.", "vae.quantize.")
    assert not {k for k in changed if k.startswith(frozen)}, "the tokenizer must stay frozen"
    assert any(k.startswith("vae.decoder.") for k in changed)
    assert any(not k.startswith("vae.") for k in changed), "the transformer must train"
    l1 = losses(tmp_path / "joint", "loss")
    assert sum(l1[-5:]) / 5 < sum(l1[:5]) / 5


def test_joint_stage_refuses_a_guided_model(tmp_path: Path) -> None:
    from alignvar_edge.model import AlignVAR
    from alignvar_edge.model.checkpoint import save_pretrained

    guided = save_pretrained(AlignVAR(MICRO.replace(cfg=2.0)), tmp_path / "guided")
    with pytest.raises(ConfigError, match="cfg"):
        train(opts(tmp_path / "r", "joint", 2, init=str(guided)), micro_batches())
    assert not (tmp_path / "r").exists()


def _prefix(model: torch.nn.Module, module: torch.nn.Module) -> str:
    return next(n for n, m in model.named_modules() if m is module)


@pytest.mark.parametrize("stage", ["vqvae", "transformer", "decoder", "joint"])
def test_resume_equals_uninterrupted(stage: str, vq_run: Path, tf_run: Path, tmp_path: Path) -> None:
    init = {"vqvae": None, "transformer": str(vq_run / "final")}.get(stage, str(tf_run / "final"))
    full = train(opts(tmp_path / "full", stage, 8, init=init), micro_batches())
    train(opts(tmp_path / "part", stage, 4, init=init, save_every=4), micro_batches())
    resumed = train(opts(tmp_path / "part", stage, 8, init=init, resume=True), micro_batches())
    a, b = load_file(str(full / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("stage", ["vqvae", "transformer"])
def test_the_largest_seed_trains_and_one_past_it_is_refused_by_name(stage: str, vq_run: Path, tmp_path: Path) -> None:
    # the run's own generators are seeded with seed + 7 and seed * 1000003 + step: past PyTorch's 2**64-1
    init = {"init": str(vq_run / "final")} if stage == "transformer" else {}
    train(opts(tmp_path / "top", stage, 2, seed=2**64 - 1, **init), micro_batches())
    assert len(losses(tmp_path / "top", "step")) == 2
    with pytest.raises(InputError, match=r"^seed=18446744073709551616 must be an integer from 0 to 2\*\*64-1$"):
        train(opts(tmp_path / "past", stage, 2, seed=2**64, **init), micro_batches())
    assert not (tmp_path / "past").exists()


def test_existing_run_is_refused_without_force(vq_run: Path) -> None:
    with pytest.raises(OutputExistsError, match="--force"):
        train(opts(vq_run, "vqvae", 2), micro_batches())


def test_force_replaces_a_run_but_never_files_someone_put_in_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(opts(out, "vqvae", 2), micro_batches())
    (out / "eval.json").write_text('{"alignvar_edge": "0.1.0", "variants": {}}')     # eval --json beside it
    for mine in (out / "notes.txt", out / "final" / "plot.png"):
        mine.write_text("mine")
        before = sorted(p.relative_to(out) for p in out.rglob("*"))
        with pytest.raises(OutputExistsError, match=f"{mine.relative_to(out)}.*--force would delete them"):
            train(opts(out, "vqvae", 2, force=True, seed=1), micro_batches())
        assert sorted(p.relative_to(out) for p in out.rglob("*")) == before and mine.read_text() == "mine"
        mine.unlink()
    train(opts(out, "vqvae", 2, force=True, seed=1), micro_batches())       # only its own files: replaced
    assert not (out / "eval.json").exists()


def test_resume_names_the_option_that_differs_and_refuses_force_beside_it(tmp_path: Path, capsys) -> None:
    from alignvar_edge import cli

    out = tmp_path / "run"
    train(opts(out, "vqvae", 4, save_every=2), micro_batches())
    with pytest.raises(OutputExistsError, match="other options \\(started with --lr 0.003, now with --lr 0.002\\)"):
        train(opts(out, "vqvae", 4, lr=2e-3, resume=True), micro_batches())
    capsys.readouterr()
    assert cli.main(["train", "vqvae", "--preset", "micro", "--out", str(out), "--steps", "4", "--resume",
                     "--force"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass one of them" in err[0], err


def test_resume_names_what_differs_by_its_flags(tmp_path: Path) -> None:
    """The refusal says what the user typed, not Python values (`sca was None, now False`)."""
    out = tmp_path / "run"
    train(opts(out, "vqvae", 2, save_every=1), micro_batches())
    folder = _photo_folder(tmp_path)
    with pytest.raises(OutputExistsError) as e:
        train(opts(out, "vqvae", 4, resume=True, sca=False, hcc_weight=0.3, images=str(folder),
                   overrides={"hcc_rollout": "gumbel"}), micro_batches())
    said = str(e.value)
    for change in ("started without --no-sca, now with --no-sca", "started without --hcc-weight, now with --hcc-weight 0.3",
                   f"started without --images, now with --images {folder}",
                   "started without --hcc-rollout, now with --hcc-rollout gumbel"):
        assert change in said, said
    assert "None" not in said and "{" not in said, said


def test_resume_takes_the_same_folders_written_another_way(vq_run: Path, tmp_path: Path, monkeypatch) -> None:
    """--images and --init name folders: `./photos/`, an absolute path, or a relative path from
    another working folder are the same options as the `photos` the run started with."""
    import json
    import os

    _photo_folder(tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    init = os.path.relpath(vq_run / "final")
    train(opts(Path("run"), "transformer", 1, batch=2, init=init, images="photos", save_every=1), micro_batches(2))
    steps = 1
    for where, run, images, init_as in (("", "run", "./photos/", f"./{init}/"),
                                        ("", "run", str(tmp_path / "photos"), str(vq_run / "final")),
                                        ("sub", "../run", "../photos", os.path.join("..", init))):
        monkeypatch.chdir(tmp_path / where)
        steps += 1
        train(opts(Path(run), "transformer", steps, batch=2, init=init_as, images=images, resume=True,
                   save_every=1), micro_batches(2))
    assert json.loads((tmp_path / "run" / "final" / "training.json").read_text())["steps"] == steps


def test_images_that_is_not_a_folder_is_refused_by_its_flag(tmp_path: Path) -> None:
    (tmp_path / "one.png").write_bytes(b"")
    # a mistyped folder was 'not a folder', as a file is
    for images, why in ((tmp_path / "missing", "does not exist"), (tmp_path / "one.png", "is a file, not a folder")):
        with pytest.raises(InputError, match=re.escape(f"--images {images} {why}; pass a folder of images")):
            train(opts(tmp_path / "run", "vqvae", 2, images=str(images)))
    assert not (tmp_path / "run").exists()


def test_resume_from_corrupt_state_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(opts(run, "vqvae", 2), micro_batches())
    (run / "state" / "tensors.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        train(opts(run, "vqvae", 4, resume=True), micro_batches())


def test_resume_from_a_state_without_its_state_json_is_refused_and_deletes_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(opts(run, "vqvae", 2), micro_batches())
    (run / "state" / "state.json").unlink()         # a run copied in part, or damaged
    kept = sorted(p.relative_to(run) for p in run.rglob("*"))
    with pytest.raises(CheckpointError, match="missing or corrupt"):
        train(opts(run, "vqvae", 4, resume=True), micro_batches())
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == kept and (run / "final").is_dir()


@pytest.mark.parametrize("name,says", [("run.json", "is not valid JSON"), ("state/state.json", "corrupt")])
def test_resume_refuses_a_hostile_run_or_state_json(name: str, says: str, tmp_path: Path) -> None:
    """run.json or the state's state.json nested 100,000 deep was a RecursionError traceback."""
    run = tmp_path / "run"
    train(opts(run, "vqvae", 2), micro_batches())
    (run / name).write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(CheckpointError, match=f"{says}.*nested too deeply"):
        train(opts(run, "vqvae", 4, resume=True), micro_batches())


def test_decoder_stage_needs_a_transformer_and_a_known_latent(tmp_path: Path) -> None:
    for stage in ("decoder", "joint"):
        with pytest.raises(InputError, match="--init"):
            train(opts(tmp_path / "r", stage, 2), micro_batches())
    with pytest.raises(InputError, match="--latent"):
        train(opts(tmp_path / "r", "decoder", 2, init="alignvar-tiny", decoder_latent="noise"), micro_batches())
    assert not (tmp_path / "r").exists()


def test_decoder_stage_on_an_untrained_transformers_latent_is_refused(vq_run: Path, tmp_path: Path, capsys) -> None:
    """From a VQ-VAE run the decoder stage decoded the latent of a transformer no stage trained (and
    it keeps the transformer frozen): noise, trained on without a word. --latent zero is the control
    and needs no transformer; a checkpoint without a training record is taken as it is."""
    from alignvar_edge import cli

    init = str(vq_run / "final")
    out = tmp_path / "dec"
    assert cli.main(["train", "decoder", "--init", init, "--out", str(out), "--steps", "1", "--batch", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--init {init} is a vqvae-stage checkpoint whose transformer no stage trained" in err[0]
    assert f"`alignvar-edge train transformer --init {init} --out RUN`" in err[0] and "--latent zero" in err[0], err
    assert not out.exists()
    # a decoder stage on a zero latent from it has no trained transformer either
    zero = train(opts(tmp_path / "zero", "decoder", 1, init=init, decoder_latent="zero"), micro_batches())
    with pytest.raises(InputError, match="decoder-stage checkpoint whose transformer no stage trained"):
        train(opts(out, "decoder", 1, init=str(zero)), micro_batches())
    from alignvar_edge.model.alignvar import load_pretrained
    from alignvar_edge.model.checkpoint import save_pretrained
    unknown = save_pretrained(load_pretrained(init), tmp_path / "saved")        # from Python: no record
    train(opts(tmp_path / "from-saved", "decoder", 1, init=str(unknown)), micro_batches())


def test_transformer_stage_needs_vqvae(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--init"):
        train(opts(tmp_path / "x", "transformer", 2), micro_batches())


def test_image_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match="no usable images"):
        make_batches(str(tmp_path), MICRO, 2, 0)


@pytest.mark.skipif(not (PRETRAINED_DIR / "alignvar-tiny" / "model.safetensors").exists(),
                    reason="the bundled default has not been trained into this checkout")
def test_bundled_default_loads_offline(monkeypatch) -> None:
    def no_network(*a, **k):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    from alignvar_edge.model import AlignVAR

    model = AlignVAR.from_pretrained("alignvar-tiny")
    c = model.config
    sr = model.super_resolve(torch.rand(1, 3, c.lr_size, c.lr_size))
    assert sr.shape == (1, 3, c.hr_size, c.hr_size)
    assert c.degradation, "the bundled config records its degradation recipe"


def test_prefetched_batches_keep_their_order_and_values() -> None:
    import time

    from alignvar_edge.train.data import prefetch

    def slow(b: int):             # later batches finish first: the order must still be the indices'
        time.sleep(0.002 * (b % 3 == 0))
        return torch.full((2,), float(b)), torch.full((1,), float(2 * b))
    inline = list(prefetch(slow, range(3, 20), 0))
    threaded = list(prefetch(slow, range(3, 20), 3))
    assert [x[0][0].item() for x in threaded] == list(range(3, 20))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(inline, threaded))


def test_training_with_data_workers_equals_training_without(tmp_path: Path) -> None:
    runs = [train(opts(tmp_path / f"w{w}", "vqvae", 4, workers=w), micro_batches()) for w in (0, 2)]
    a, b = (load_file(str(r / "model.safetensors")) for r in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_device_flag_is_checked(tmp_path: Path) -> None:
    from alignvar_edge.train.trainer import resolve_device
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="--device 'tpu'"):
        opts(tmp_path / "r", "vqvae", 2, device="tpu").validate()
    with pytest.raises(InputError, match="--device 'mps': training runs on cpu or cuda"):
        opts(tmp_path / "r", "vqvae", 2, device="mps").validate()
    with pytest.raises(InputError, match="--workers"):
        opts(tmp_path / "r", "vqvae", 2, workers=-1).validate()
    for bad in (0.0, float("nan")):
        with pytest.raises(InputError, match="--max-minutes must be a finite number > 0"):
            opts(tmp_path / "r", "vqvae", 2, max_minutes=bad).validate()
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="sees no CUDA device; use --device cpu"):
            opts(tmp_path / "r", "vqvae", 2, device="cuda").validate()
    assert not (tmp_path / "r").exists()                     # refused before anything was written


def test_max_minutes_stops_saves_and_resume_finishes_the_run(tmp_path: Path) -> None:
    """A run stopped by its time budget saves that point; --resume then ends where an
    uninterrupted run of the same --steps ends, bit for bit."""
    import json
    import time

    def slow(b: int):
        time.sleep(0.05)
        return micro_batches()(b)
    steps, out = 60, tmp_path / "run"
    first = train(opts(out, "vqvae", steps, max_minutes=0.3 / 60), slow)         # ~0.3 s: a few steps
    made = json.loads((first / "training.json").read_text())
    assert 1 <= made["steps"] < steps and made["planned_steps"] == steps
    assert len(losses(out, "l1")) == made["steps"]
    rest = train(opts(out, "vqvae", steps, resume=True), micro_batches())
    assert json.loads((rest / "training.json").read_text())["steps"] == steps
    whole = train(opts(tmp_path / "whole", "vqvae", steps), micro_batches())
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(rest / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def interrupted_at(step: int):
    """Batches that stop the run as Ctrl-C or SIGTERM would, when batch `step` is asked for."""
    get = micro_batches()

    def batches(b: int):
        if b == step:
            raise KeyboardInterrupt
        return get(b)
    return batches


def test_interrupted_force_run_puts_the_old_run_back_even_after_it_saved(tmp_path: Path) -> None:
    """Ctrl-C on a --force run, after the new run has saved a state: the run it was replacing comes
    back as it was, and no hidden `.RUN.replaced-*` folder is left."""
    out = tmp_path / "run"
    train(opts(out, "vqvae", 2, seed=1), micro_batches())                  # the run being replaced
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(KeyboardInterrupt):
        train(opts(out, "vqvae", 8, force=True, save_every=3), interrupted_at(5))
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not list(tmp_path.glob(".run.replaced-*"))


def test_interrupted_run_is_kept_once_it_saved_and_resume_goes_on(tmp_path: Path) -> None:
    """Ctrl-C on a new run that has saved a state: that run stays in --out (the CLI says `--resume`
    continues it), and resuming ends where an uninterrupted run ends."""
    import json

    from alignvar_edge.model.alignvar import load_pretrained

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(opts(out, "vqvae", 8, save_every=3), interrupted_at(5))
    assert json.loads((out / "state" / "state.json").read_text())["step"] == 3
    # RUN/latest: the saved EMA weights as a checkpoint that eval loads while the run is stopped
    assert json.loads((out / "latest" / "training.json").read_text())["steps"] == 3
    ema = {k[len("ema."):]: v for k, v in load_file(str(out / "state" / "tensors.safetensors")).items()
           if k.startswith("ema.")}
    latest = load_pretrained(out / "latest").state_dict()
    assert latest.keys() == ema.keys() and all(torch.equal(latest[k], ema[k]) for k in ema)
    resumed = train(opts(out, "vqvae", 8, resume=True, save_every=3), micro_batches())
    assert not (out / "latest").exists() and json.loads((resumed / "training.json").read_text())["steps"] == 8
    whole = train(opts(tmp_path / "whole", "vqvae", 8), micro_batches())
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # steps 3 and 4 ran twice (logged, not saved, done again): the loss curve holds each step once
    assert losses(out, "step") == list(range(8))
    assert losses(out, "l1") == losses(tmp_path / "whole", "l1")


def test_overrides_the_config_refuses_are_named_as_overrides(vq_run: Path, tmp_path: Path) -> None:
    """TrainOptions(overrides=...) goes through the config's own check (the bounds the flags apply,
    unknown keys), and the refusal names the override, not a config file; nothing is written."""
    init = str(vq_run / "final")
    for extra, says in ((dict(overrides={"cond_drop": 5.0}), r"overrides\['cond_drop'\]: cond_drop must be a probability"),
                        (dict(overrides={"bogus": 1}), r"overrides\['bogus'\]: unknown config keys \['bogus'\]"),
                        (dict(overrides={"cond_drop": 2.0}, init=init, preset="tiny"),
                         r"overrides\['cond_drop'\]: cond_drop must be"),
                        (dict(overrides={"hcc_tau": 0.0}, init=init, preset="tiny"), r"--hcc-tau: hcc_tau must be > 0")):
        stage = "transformer" if "init" in extra else "vqvae"
        with pytest.raises(InputError, match=says):
            train(opts(tmp_path / "run", stage, 1, **extra), micro_batches())
        assert not (tmp_path / "run").exists()


def test_hcc_tau_without_a_gumbel_rollout_is_refused(vq_run: Path, tmp_path: Path) -> None:
    init = str(vq_run / "final")                          # micro: teacher-forced HCC
    with pytest.raises(InputError, match="--hcc-tau 0.5 is the temperature of --hcc-rollout gumbel"):
        train(opts(tmp_path / "tf", "transformer", 1, init=init, overrides={"hcc_tau": 0.5}), micro_batches())
    assert not (tmp_path / "tf").exists()
    train(opts(tmp_path / "tf", "transformer", 1, init=init, overrides={"hcc_tau": 0.5, "hcc_rollout": "gumbel"}),
          micro_batches())


def test_cli_stopped_by_max_minutes_says_how_to_go_on(tmp_path: Path, capsys) -> None:
    from alignvar_edge import cli

    argv = ["train", "vqvae", "--preset", "micro", "--out", str(tmp_path / "run"), "--steps", "4", "--batch", "1",
            "--max-minutes", "1e-9"]
    for extra, says in (([], "--resume\n"), (["--force"], "--resume instead of --force\n")):
        assert cli.main([*argv, *extra]) == 0
        out = capsys.readouterr().out
        assert "stopped by --max-minutes at step 1 of 4" in out and f"the same command and {says}" in out, out
        assert "done:" not in out, out               # stopped, not done: one line says so


def test_eval_of_run_latest_says_which_step_it_scored(tmp_path: Path, capsys) -> None:
    import json

    from alignvar_edge import cli

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(opts(out, "vqvae", 8, save_every=3), interrupted_at(5))
    capsys.readouterr()
    report = tmp_path / "eval.json"
    assert cli.main(["eval", str(out / "latest"), "--max-side", "32", "--json", str(report)]) == 0
    assert f"{out / 'latest'}: vqvae stage at step 3 of 8, batch 4" in capsys.readouterr().out
    assert json.loads(report.read_text())["trained"] == {"stage": "vqvae", "steps": 3, "planned_steps": 8,
                                                         "batch": 4, "images": "builtin"}


def test_run_interrupted_before_its_first_save_leaves_out_as_it_was(tmp_path: Path, monkeypatch, capsys) -> None:
    from alignvar_edge import cli
    from alignvar_edge.train import trainer

    old = tmp_path / "old"
    train(opts(old, "vqvae", 2), micro_batches())
    before = {p.relative_to(old): p.read_bytes() for p in old.rglob("*") if p.is_file()}
    with pytest.raises(KeyboardInterrupt):                                  # --force: the old run comes back
        train(opts(old, "vqvae", 8, force=True, seed=3), interrupted_at(2))
    assert {p.relative_to(old): p.read_bytes() for p in old.rglob("*") if p.is_file()} == before
    with pytest.raises(KeyboardInterrupt):                                  # a new run: nothing is left
        train(opts(tmp_path / "new", "vqvae", 8), interrupted_at(2))
    assert not (tmp_path / "new").exists()
    for force in (False, True):                   # the user's empty folder stays, empty, flags or not
        (tmp_path / "mine").mkdir()
        with pytest.raises(KeyboardInterrupt):
            train(opts(tmp_path / "mine", "vqvae", 8, force=force), interrupted_at(2))
        assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())
        (tmp_path / "mine").rmdir()
    # the CLI's line says what to do: the same command again (--resume would find nothing)
    monkeypatch.setattr(trainer, "make_batches", lambda *a, **k: interrupted_at(0))
    capsys.readouterr()
    argv = ["train", "vqvae", "--preset", "micro", "--out", str(tmp_path / "cli"), "--steps", "4", "--batch", "2"]
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    assert "saved no training state yet" in err and "run the same command again" in err, err
    assert not (tmp_path / "cli").exists()
    monkeypatch.setattr(trainer, "make_batches", lambda *a, **k: micro_batches(2))
    assert cli.main(argv) == 0


def signalled_at(step: int, *signums: int):
    """Batches that send this process `signums` (as Ctrl-C or a supervisor would) when batch `step`
    is asked for, in the middle of the run's steps."""
    import os

    get = micro_batches(2)

    def batches(b: int):
        if b == step:
            for s in signums:
                os.kill(os.getpid(), s)
        return get(b)
    return batches


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_cli_signal_finishes_the_step_and_saves_it_and_resume_ends_as_uninterrupted(
        signame: str, tmp_path: Path, monkeypatch, capfd) -> None:
    """Under the CLI the first Ctrl-C or SIGTERM lets the step in progress finish and saves the run
    at it, whatever --save-every says: no step is lost, the exit status says it stopped, and
    --resume ends exactly where an uninterrupted run ends (checked once: the trigger is all that
    differs between the two signals)."""
    import json
    import signal

    from alignvar_edge import cli
    from alignvar_edge.train import trainer

    signum = getattr(signal, signame)
    out = tmp_path / "run"
    argv = ["train", "vqvae", "--preset", "micro", "--out", str(out), "--steps", "6", "--batch", "2",
            "--save-every", "100"]
    monkeypatch.setattr(trainer, "make_batches", lambda *a, **k: signalled_at(3, signum))
    assert cli.main(argv) == 128 + signum
    captured = capfd.readouterr()
    assert f"{signame} received: the run stops after this step and is saved there" in captured.err, captured.err
    assert f"stopped by {signame} at step 4 of 6" in captured.out and "--resume" in captured.out, captured.out
    assert json.loads((out / "state" / "state.json").read_text())["step"] == 4     # step 3 finished, kept
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL         # the CLI's handlers are put back
    if signame == "SIGTERM":
        return
    monkeypatch.setattr(trainer, "make_batches", lambda *a, **k: micro_batches(2))
    assert cli.main([*argv, "--resume"]) == 0
    whole = tmp_path / "whole"
    assert cli.main([*argv[:5], str(whole), *argv[6:]]) == 0
    a, b = load_file(str(whole / "final" / "model.safetensors")), load_file(str(out / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_signal_in_the_last_step_finishes_the_run_and_still_says_it_was_stopped(
        tmp_path: Path, monkeypatch, capfd) -> None:
    """A stop asked for in the last step: the run is complete, and the exit status still tells a
    calling script that it was asked to stop."""
    import json
    import signal

    from alignvar_edge import cli
    from alignvar_edge.train import trainer

    out = tmp_path / "run"
    monkeypatch.setattr(trainer, "make_batches", lambda *a, **k: signalled_at(3, signal.SIGTERM))
    argv = ["train", "vqvae", "--preset", "micro", "--out", str(out), "--steps", "4", "--batch", "2"]
    assert cli.main(argv) == 128 + signal.SIGTERM
    assert "done: " in capfd.readouterr().out
    assert json.loads((out / "final" / "training.json").read_text())["steps"] == 4


def test_cli_second_ctrl_c_stops_at_once_keeping_the_last_save(tmp_path: Path, monkeypatch, capfd) -> None:
    import json
    import signal

    from alignvar_edge import cli
    from alignvar_edge.train import trainer

    out = tmp_path / "run"
    monkeypatch.setattr(trainer, "make_batches", lambda *a, **k: signalled_at(5, signal.SIGINT, signal.SIGINT))
    argv = ["train", "vqvae", "--preset", "micro", "--out", str(out), "--steps", "8", "--batch", "2",
            "--save-every", "3"]
    assert cli.main(argv) == 130
    err = capfd.readouterr().err
    assert "Ctrl-C again stops at once" in err and "interrupted; what the run has saved is kept" in err, err
    assert json.loads((out / "state" / "state.json").read_text())["step"] == 3   # the last save, not step 5
    assert not (out / "final").exists()


@pytest.mark.parametrize("signums", [("SIGINT",), ("SIGINT", "SIGINT"), ("SIGTERM",)])
def test_cli_signal_on_a_force_run_puts_the_old_run_back_and_says_so(
        signums: tuple[str, ...], tmp_path: Path, monkeypatch, capfd) -> None:
    """Ctrl-C (once or twice) or SIGTERM on `train --force`: the run it replaces comes back as it
    was, and the line says so and that the same command starts over (not `--resume`, which the
    restored run's options, or --force beside it, would refuse)."""
    import signal

    from alignvar_edge import cli
    from alignvar_edge.train import trainer

    out = tmp_path / "run"
    train(opts(out, "vqvae", 2, batch=2, seed=1), micro_batches(2))               # the run being replaced
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    sent = [getattr(signal, name) for name in signums]
    monkeypatch.setattr(trainer, "make_batches", lambda *a, **k: signalled_at(4, *sent))
    argv = ["train", "vqvae", "--preset", "micro", "--out", str(out), "--steps", "8", "--batch", "2",
            "--save-every", "3", "--force"]
    assert cli.main(argv) == 128 + sent[-1]
    err = capfd.readouterr().err
    assert "the run --force was replacing is back in --out as it was; the same command starts the new run over" in err
    assert "--resume" not in err, err
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not list(tmp_path.glob(".run.replaced-*"))
    monkeypatch.setattr(trainer, "make_batches", lambda *a, **k: micro_batches(2))
    assert cli.main(argv) == 0                                                     # the advice works


def test_ctrl_c_while_train_starts_up_says_to_run_the_same_command(tmp_path: Path) -> None:
    """A Ctrl-C before the run has touched --out (here: while the trainer and torch are imported,
    where an early Ctrl-C lands): --out is as it was, and the line says to run the command again,
    not to --resume a run that does not exist."""
    import signal
    import subprocess
    import sys
    import textwrap

    stop_at_import = textwrap.dedent("""
        import os, signal, sys
        class StopAtTrainer:
            def find_spec(self, name, path=None, target=None):
                if name == "alignvar_edge.train.trainer":
                    os.kill(os.getpid(), signal.SIGINT)      # Ctrl-C while the trainer loads
                return None
        sys.meta_path.insert(0, StopAtTrainer())
        from alignvar_edge import cli
        sys.exit(cli.main(sys.argv[1:]))
    """)
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-c", stop_at_import, "train", "vqvae", "--preset", "micro", "--out",
                        str(out), "--steps", "4", "--batch", "2"], capture_output=True, text=True, timeout=300,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip().splitlines() == ["alignvar-edge train: interrupted; --out is as it was before; "
                                             "run the same command again"], r.stderr
    assert not out.exists()


def test_train_stage_help_lists_only_the_flags_the_stage_takes(capsys) -> None:
    """`train STAGE --help` describes that stage and leaves out the flags it refuses; `train --help`
    still lists them all."""
    from alignvar_edge import cli

    shown = {}
    for stage in ("", "vqvae", "transformer", "decoder", "joint"):
        assert cli.main(["train", *([stage] if stage else []), "--help"]) == 0
        shown[stage] = capsys.readouterr().out
    refused = {"vqvae": ["--latent"], "transformer": ["--latent", "--preset"],
               "decoder": ["--preset", "--hcc-weight", "--hcc-rollout", "--hcc-tau", "--cfg-negative"],
               "joint": ["--preset", "--latent", "--hcc-weight", "--hcc-rollout", "--hcc-tau", "--cfg-negative"]}
    for stage, flags in refused.items():
        assert all(f" {flag} " not in shown[stage] for flag in flags), (stage, shown[stage])
        assert all(f" {flag} " in shown[""] for flag in flags)
        assert " --out OUT " in shown[stage] and " --init INIT " in shown[stage]
    assert " --latent " in shown["decoder"] and " --preset " in shown["vqvae"] and " --hcc-weight " in shown["transformer"]
    assert len(set(shown.values())) == 5, "each stage's help is its own"


def test_signals_outside_the_cli_still_interrupt_at_once(tmp_path: Path) -> None:
    """The library installs no handler: a Ctrl-C in train() raises KeyboardInterrupt as before."""
    import signal

    with pytest.raises(KeyboardInterrupt):
        train(opts(tmp_path / "run", "vqvae", 8, batch=2), signalled_at(2, signal.SIGINT))
    assert not (tmp_path / "run").exists()


def test_cli_trains_with_the_scripts_warmup(tmp_path: Path, monkeypatch) -> None:
    """docs/training.md gives `train vqvae ... --warmup 50` as scripts/train_default.py's VQ-VAE stage."""
    import json

    from alignvar_edge import cli
    from alignvar_edge.train import trainer

    monkeypatch.setattr(trainer, "make_batches", lambda *a, **k: micro_batches(2))
    out = tmp_path / "vq"
    assert cli.main(["train", "vqvae", "--preset", "micro", "--out", str(out), "--steps", "2", "--batch", "2",
                     "--warmup", "50"]) == 0
    made = json.loads((out / "final" / "training.json").read_text())["options"]
    assert made["warmup"] == 50
    assert losses(out, "lr")[0] == pytest.approx(1e-3 / 50)                # step 0 of a 50-step warm-up


def test_resume_refuses_up_front_to_replace_someones_file_in_final(tmp_path: Path) -> None:
    """--resume rewrites RUN/final at the end: a file the user put there (an eval JSON, notes) is
    refused before any step is trained, never deleted with the old checkpoint."""
    out = tmp_path / "run"
    train(opts(out, "vqvae", 2, save_every=1), micro_batches())
    (out / "final" / "eval.json").write_text("{}")
    state = (out / "state" / "tensors.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match="eval.json.*--resume"):
        train(opts(out, "vqvae", 4, resume=True, save_every=1), micro_batches())
    assert (out / "final" / "eval.json").read_text() == "{}"
    assert (out / "state" / "tensors.safetensors").read_bytes() == state      # nothing trained


def test_resume_names_an_eval_result_in_final_as_one(tmp_path: Path, capsys) -> None:
    """An `eval --json` result saved in RUN/final is alignvar-edge's, but of the weights --resume
    replaces: the line calls it that and says where it is kept (beside RUN/final), where resuming works."""
    from alignvar_edge import cli

    out = tmp_path / "run"
    argv = ["train", "vqvae", "--preset", "micro", "--out", str(out), "--batch", "2", "--warmup", "5",
            "--save-every", "1"]
    assert cli.main([*argv, "--steps", "2"]) == 0
    report = out / "final" / "eval.json"
    assert cli.main(["eval", str(out / "final"), "--max-side", "32", "--json", str(report)]) == 0
    capsys.readouterr()
    argv += ["--steps", "3", "--resume"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{report} is an eval result of the checkpoint that --resume replaces" in err[0], err
    assert f"into '{out}' it is kept" in err[0] and "only what alignvar-edge wrote" not in err[0], err
    report.rename(out / "eval.json")
    assert cli.main(argv) == 0 and (out / "eval.json").is_file()


def test_cli_refuses_a_preset_that_init_would_override(vq_run: Path, tmp_path: Path, capsys) -> None:
    """With --init the model is the checkpoint's: `--preset tiny32` must not be silently ignored."""
    from alignvar_edge import cli

    capsys.readouterr()
    out = tmp_path / "tf"
    assert cli.main(["train", "transformer", "--init", str(vq_run / "final"), "--preset", "tiny32",
                     "--out", str(out), "--steps", "1", "--batch", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--preset tiny32" in err[0] and "drop --preset" in err[0], err
    assert not out.exists()
    # likewise --latent, which only the decoder stage reads (joint would train as if it were not given)
    assert cli.main(["train", "joint", "--init", str(vq_run / "final"), "--latent", "zero",
                     "--out", str(out), "--steps", "1", "--batch", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "drop --latent" in err[0], err
    assert not out.exists()
    # and the transformer stage's loss options, which neither fine-tune reads
    for stage, flags in (("decoder", ["--hcc-weight", "0"]), ("joint", ["--hcc-rollout", "gumbel", "--cfg-negative",
                                                                        "dropout"])):
        assert cli.main(["train", stage, "--init", str(vq_run / "final"), *flags,
                         "--out", str(out), "--steps", "1", "--batch", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"the {stage} stage does not use them: drop {flags[0]}" in err[0], err
        assert not out.exists()


def _photo_folder(tmp_path: Path) -> Path:
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(folder / "rgb8.png")
    Image.fromarray(rng.integers(0, 65536, (40, 44), dtype=np.uint16)).save(folder / "gray16.png")
    return folder


def test_a_broken_link_in_images_is_skipped_and_the_run_trains_and_resumes(tmp_path: Path, capsys) -> None:
    """A dangling symbolic link in --images is skipped with the warning that names it (as `eval
    --images` skips it), and the run trains; --resume finds the folder unchanged."""
    from alignvar_edge import cli

    folder = _photo_folder(tmp_path)
    (folder / "broken.png").symlink_to(tmp_path / "nowhere.png")
    out = tmp_path / "run"
    argv = ["train", "vqvae", "--preset", "micro", "--out", str(out), "--batch", "2", "--warmup", "0",
            "--images", str(folder)]
    capsys.readouterr()
    assert cli.main([*argv, "--steps", "1"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("alignvar-edge")]  # no bar
    assert len(err) == 1 and "warning: skipping 1 image(s): broken.png (" in err[0], err
    assert cli.main([*argv, "--steps", "2", "--resume"]) == 0


def test_fewer_photographs_than_a_batch_are_warned_about(tmp_path: Path, capsys) -> None:
    """A folder with one photograph trained without a word: every batch held crops of it alone."""
    import numpy as np
    from PIL import Image

    from alignvar_edge import cli
    folder = tmp_path / "one"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / "a.png")
    argv = ["train", "vqvae", "--preset", "micro", "--steps", "1", "--warmup", "0", "--images", str(folder)]
    capsys.readouterr()
    for batch, said in (("2", True), ("1", False)):
        assert cli.main([*argv, "--batch", batch, "--out", str(tmp_path / f"b{batch}")]) == 0
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("alignvar-edge")]
        assert err == ([f"alignvar-edge train: warning: --images {folder} holds 1 usable photograph, fewer than --batch 2: "
                        "every batch repeats crops of the same ones, so the model fits them rather than photographs "
                        "in general (expect other photographs to score worse in `eval`); add photographs, at least "
                        "2"] if said else []), err


def test_a_refused_run_prints_only_its_error(tmp_path: Path, capsys) -> None:
    """A refused command prints one line, the error: what the run would have warned about (a short
    warm-up, files skipped in --images) is said only once it starts."""
    from alignvar_edge import cli

    folder = _photo_folder(tmp_path)
    (folder / "empty.png").write_bytes(b"")
    out = tmp_path / "run"
    base = ["train", "vqvae", "--preset", "micro", "--out", str(out), "--batch", "2", "--images", str(folder)]
    assert cli.main([*base, "--steps", "2", "--save-every", "1"]) == 0
    capsys.readouterr()
    for extra, says in ((["--steps", "1", "--resume"], "has trained 2 steps, more than --steps 1"),
                        (["--steps", "3"], "already holds a run")):
        assert cli.main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err


def test_out_that_is_a_file_or_someones_folder_is_not_called_a_run(tmp_path: Path, capsys) -> None:
    """`--out` naming a file or a folder no run wrote: the line says what it is and to choose another
    --out, never to pass --force or --resume (both would be refused)."""
    from alignvar_edge import cli

    afile = tmp_path / "afile"
    afile.write_text("x")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "a").write_text("x")
    capsys.readouterr()
    for out in (afile, foreign):
        assert cli.main(["train", "vqvae", "--preset", "micro", "--out", str(out), "--steps", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "choose another --out" in err[0] and "already holds a run" not in err[0], err
        assert "pass --force" not in err[0] and "--resume" not in err[0], err
    assert afile.read_text() == "x" and (foreign / "a").read_text() == "x"


def test_out_that_is_an_artifact_is_named_as_one(tmp_path: Path, capsys) -> None:
    """`--out` naming an export: one line says it is an artifact, not a run, with or without --force,
    and the export is left whole."""
    from alignvar_edge import cli
    from alignvar_edge.manifest import load_verified

    export = tmp_path / "export"
    assert cli.main(["export", "--preset", "micro", "--out", str(export), "--batch", "1", "--tiles", "1"]) == 0
    capsys.readouterr()
    for extra in ([], ["--force"]):
        assert cli.main(["train", "vqvae", "--preset", "micro", "--out", str(export), "--steps", "1", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is an artifact alignvar-edge made" in err[0] and "choose another --out" in err[0], err
        assert "already holds a run" not in err[0] and "pass --force" not in err[0], err
    load_verified(export)


def test_training_images_are_held_as_their_codes_with_the_same_batches(tmp_path: Path, monkeypatch) -> None:
    """A folder of photos is held for the whole run: as 8-/16-bit codes, not 4-byte floats, and
    the crops are the floats load_image gives, bit for bit."""
    import numpy as np

    from alignvar_edge.images import load_image
    from alignvar_edge.train import data
    from alignvar_edge.train.data import ImageFolderDataset

    folder = _photo_folder(tmp_path)
    ds = ImageFolderDataset(folder, crop=32, seed=3, samples_per_image=4)
    held = dict(ds.images)
    assert held["rgb8.png"].dtype == np.uint8 and held["rgb8.png"].nbytes == 48 * 40 * 3
    assert held["gray16.png"].dtype == np.uint16
    for name, arr in held.items():                    # exactly what the file reads as
        assert np.array_equal(data._widen(arr), load_image(folder / name)[0])
    monkeypatch.setattr(data, "_compact", lambda rgb: rgb)       # held as float32, as before
    floats = ImageFolderDataset(folder, crop=32, seed=3, samples_per_image=4)
    assert all(v.dtype == np.float32 for _, v in floats.images)
    for i in range(len(ds)):
        a, b = ds[i], floats[i]
        assert torch.equal(a["hr"], b["hr"]) and torch.equal(a["lr"], b["lr"]), i


def test_max_megapixels_admits_large_training_images(tmp_path: Path, capsys) -> None:
    """The size refusal says "raise the limit (--max-megapixels)": train has that flag, and a run
    with the default limit resumes as runs made before the flag existed."""
    from alignvar_edge import cli

    folder = _photo_folder(tmp_path)
    out = tmp_path / "run"
    argv = ["train", "vqvae", "--preset", "micro", "--images", str(folder), "--out", str(out), "--steps", "1",
            "--batch", "1"]
    capsys.readouterr()
    assert cli.main([*argv, "--max-megapixels", "0.001"]) == 2
    err = capsys.readouterr().err
    assert "over the 0.001 MP limit" in err and "--max-megapixels" in err and not out.exists()
    assert cli.main([*argv, "--max-megapixels", "0.01"]) == 0
    assert "max_megapixels" not in opts(out, "vqvae", 1).fingerprint()
    assert opts(out, "vqvae", 1, max_megapixels=0.01).fingerprint()["max_megapixels"] == 0.01


def test_resume_refuses_an_images_folder_that_changed(tmp_path: Path) -> None:
    """Batches are drawn from --images by index: resuming after a file was added would continue
    with other batches than the run started with, silently. The run refuses; restored, it goes on."""
    import shutil

    folder = _photo_folder(tmp_path)
    out = tmp_path / "run"

    def run(steps: int, **kw) -> Path:
        o = opts(out, "vqvae", steps, images=str(folder), batch=2, save_every=1, **kw)
        return train(o, make_batches(str(folder), MICRO, 2, 0))

    run(2)
    shutil.copy(folder / "rgb8.png", folder / "more.png")
    with pytest.raises(InputError, match="--images.*not those"):
        run(3, resume=True)
    (folder / "more.png").unlink()
    assert run(3, resume=True) == out / "final"


def test_resume_with_fewer_steps_than_trained_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    """A run saved at step 4 resumed with --steps 2 would rewrite its state as step 2 holding step
    4's weights (and a later --resume would train steps 2-3 twice): refused, every file kept."""
    out = tmp_path / "run"
    train(opts(out, "vqvae", 4, save_every=2), micro_batches())
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match="has trained 4 steps, more than --steps 2"):
        train(opts(out, "vqvae", 2, resume=True, save_every=2), micro_batches())
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    train(opts(out, "vqvae", 4, resume=True, save_every=2), micro_batches())     # --steps 4 still goes


def test_a_run_is_not_started_inside_an_artifact(tmp_path: Path) -> None:
    """An export or engine lists every file it holds: a run written inside one makes it fail its
    verification, so --out there is refused (with or without --force), nothing created."""
    import json

    art = tmp_path / "export"
    art.mkdir()
    (art / "manifest.json").write_text(json.dumps({"schema_version": 1, "kind": "export", "files": {}}))
    with pytest.raises(OutputExistsError, match="inside the artifact"):
        train(opts(art / "run", "vqvae", 1), micro_batches())
    assert sorted(p.name for p in art.iterdir()) == ["manifest.json"]


def test_a_warmup_as_long_as_the_run_is_warned_about(tmp_path: Path) -> None:
    """`--steps 50` with the default --warmup 100: the learning rate would never reach --lr, silently."""
    import warnings

    from alignvar_edge.train.trainer import warn_short_warmup
    with pytest.warns(UserWarning, match=r"--warmup 4 is not shorter than --steps 4: the learning rate never "
                                         r"reaches --lr 0\.003"):
        train(opts(tmp_path / "a", "vqvae", 4, warmup=4), micro_batches())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_short_warmup(opts(tmp_path / "b", "vqvae", 5, warmup=4))       # a ramp that ends: nothing said


def test_a_full_disk_is_one_line_and_leaves_nothing_the_same_command_refuses(small_disk, capsys) -> None:
    """A full disk at the first save was a SafetensorError traceback (no OSError, so not the CLI's
    'no space left' line), and it left run.json + log.csv that the same command refused ('already
    holds a run') and --resume refused too ('holds no training state')."""
    from alignvar_edge import cli

    disk = small_disk("3M")                   # the micro run's first state (about 5 MB) does not fit
    out = disk / "run"
    argv = ["train", "vqvae", "--preset", "micro", "--out", str(out), "--steps", "2", "--batch", "2", "--warmup", "1"]
    capsys.readouterr()
    for _ in range(2):                        # and again: the same error, not another one
        assert cli.main(argv) == 1            # as every verb's OS error
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("train vqvae:")]   # progress
        assert lines == [f"alignvar-edge train: error: no space left on the device writing {out}; free some space "
                         "or choose another output"], err
        assert list(disk.iterdir()) == []


def _full_disk_at_save(monkeypatch, at_step: int) -> None:
    """train's state saves fail from step `at_step` on as on a full disk (save_state's own error)."""
    import errno
    import os

    from alignvar_edge.train import trainer
    real = trainer.save_state

    def save(run_dir, step, *a, **kw):
        if step >= at_step:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run_dir))
        return real(run_dir, step, *a, **kw)
    monkeypatch.setattr(trainer, "save_state", save)
    monkeypatch.setattr(trainer, "make_batches", lambda *a, **k: micro_batches(2))


def test_a_full_disk_after_a_save_says_the_saved_step_and_to_resume(tmp_path: Path, monkeypatch, capsys) -> None:
    """It said only 'free some space or choose another output'; the same command then refused the
    folder ('already holds a run'): --resume is what goes on."""
    import json

    from alignvar_edge import cli
    from alignvar_edge.train import trainer
    from alignvar_edge.train.state import save_state

    out = tmp_path / "run"
    argv = ["train", "vqvae", "--preset", "micro", "--out", str(out), "--steps", "6", "--batch", "2",
            "--save-every", "2", "--warmup", "1"]
    _full_disk_at_save(monkeypatch, at_step=4)
    capsys.readouterr()
    assert cli.main(argv) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"alignvar-edge train: error: no space left on the device writing {out}; free some space or choose another "
        "output; step 2 is saved in --out: once that is fixed, continue with the same command and --resume")
    assert cli.main([*argv, "--resume"]) == 1                     # still full: the same advice, --resume given
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "; step 2 is saved in --out: once that is fixed, continue with the same command")
    monkeypatch.setattr(trainer, "save_state", save_state)        # space freed: the advice works
    assert cli.main([*argv, "--resume"]) == 0
    assert json.loads((out / "state" / "state.json").read_text())["step"] == 6


def test_a_full_disk_on_a_force_run_says_the_old_run_is_back(tmp_path: Path, monkeypatch, capsys) -> None:
    from alignvar_edge import cli
    from alignvar_edge.train import trainer
    from alignvar_edge.train.state import save_state

    out = tmp_path / "run"
    train(opts(out, "vqvae", 2, batch=2, seed=1), micro_batches(2))               # the run being replaced
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    argv = ["train", "vqvae", "--preset", "micro", "--out", str(out), "--steps", "4", "--batch", "2",
            "--save-every", "2", "--warmup", "1", "--force"]
    _full_disk_at_save(monkeypatch, at_step=4)
    capsys.readouterr()
    assert cli.main(argv) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "; the run --force was replacing is back in --out as it was; once that is fixed, the same command starts "
        "the new run over")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    monkeypatch.setattr(trainer, "save_state", save_state)
    assert cli.main(argv) == 0                                                     # the advice works


def test_a_run_killed_before_its_first_save_is_told_to_start_over(tmp_path: Path, capsys) -> None:
    """A SIGKILL during the first save leaves run.json, log.csv and a hidden state being written:
    the same command said 'already holds a run; pass --force to replace it, --resume to continue it',
    and --resume said 'start without --resume', one sending the user to the other."""
    import shutil

    from alignvar_edge import cli
    out = tmp_path / "run"
    argv = ["train", "vqvae", "--preset", "micro", "--out", str(out), "--steps", "2", "--batch", "2", "--warmup", "1"]
    assert cli.main(argv) == 0
    for p in out.iterdir():                   # what the kill leaves
        if p.name not in ("run.json", "log.csv"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    (out / ".state.ab12cd34.tmp").mkdir()
    capsys.readouterr()
    assert cli.main([*argv, "--resume"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"alignvar-edge train: error: --resume: '{out}' holds a run that stopped before its first save, so there "
        "is no training state to continue; start it over with --force")
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"alignvar-edge train: error: '{out}' holds a run that stopped before its first save; pass --force to "
        "start it over, or choose another --out")
    assert cli.main([*argv, "--force"]) == 0


def test_a_sigint_between_the_renames_of_a_state_save_keeps_the_new_state(tmp_path: Path, sigint_after_moving) -> None:
    """The state is replaced by moving the old one aside and the new one in: a Ctrl-C right after the
    first rename waits for the second, so the state just saved is the one --resume finds (it was
    deleted, the previous one left as .state.old)."""
    import json

    from alignvar_edge.train.state import save_state
    model, ema = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    save_state(tmp_path, 1, model, ema, opt, {})
    sigint_after_moving(tmp_path / "state")
    with pytest.raises(KeyboardInterrupt):
        save_state(tmp_path, 2, model, ema, opt, {})
    assert json.loads((tmp_path / "state" / "state.json").read_text())["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_a_sigint_right_after_force_moves_the_old_run_aside_puts_it_back(tmp_path: Path, sigint_after_moving) -> None:
    """train --force moves the old run aside before the new one starts: a Ctrl-C right after that
    rename still finds it and puts it back as it was (it was left hidden as .RUN.replaced-*)."""
    out = tmp_path / "run"
    train(opts(out, "vqvae", 2, seed=1), micro_batches())                  # the run being replaced
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    sigint_after_moving(out)
    with pytest.raises(KeyboardInterrupt):
        train(opts(out, "vqvae", 4, force=True), micro_batches())
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_run_whose_working_folder_is_removed_mid_run_still_writes_final(tmp_path: Path, monkeypatch) -> None:
    """The folder `train` was started from is read once, when the command starts: removed during the
    run, every later save (RUN/latest, RUN/final) still records it, and final is written."""
    import json
    import shutil

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    get = micro_batches()

    def batches(b: int):
        if b == 2:
            shutil.rmtree(work)           # the folder the command was started from goes away mid-run
        return get(b)
    final = train(opts(tmp_path / "run", "vqvae", 4, save_every=3), batches)
    assert not work.exists()
    assert json.loads((final / "training.json").read_text())["cwd"] == str(work)


def test_out_of_memory_after_a_save_advises_what_a_resume_accepts(tmp_path: Path, monkeypatch, capsys) -> None:
    """It said 'train with a smaller --batch ...; continue with the same command and --resume', and
    --resume refuses a changed --batch or --max-megapixels: only fewer --workers goes on."""
    from alignvar_edge import cli
    from alignvar_edge.train import trainer
    real = trainer.save_state

    def save(run_dir, step, *a, **kw):
        if step >= 4:
            raise MemoryError()
        return real(run_dir, step, *a, **kw)
    monkeypatch.setattr(trainer, "save_state", save)
    monkeypatch.setattr(trainer, "make_batches", lambda *a, **k: micro_batches(2))
    out = tmp_path / "run"
    capsys.readouterr()
    assert cli.main(["train", "vqvae", "--preset", "micro", "--out", str(out), "--steps", "6", "--batch", "2",
                     "--save-every", "2", "--warmup", "1"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "; step 2 is saved in --out: continue it with the same command, --resume and fewer --workers; "
        "a smaller --batch or --max-megapixels starts a new run")
