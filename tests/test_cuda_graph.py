"""The torch engine's CUDA-graph replay (`runtimes/cuda_graph.py`).

A real capture needs a CUDA device (the test for it skips elsewhere). On the CPU the bookkeeping
around it is checked with a capture that keeps a graph's contract: it reads the static buffers it
was given, and each replay overwrites the same output tensors in place. Reference: the eager
model on the same tiles.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from _runtime_fixtures import sharp_model
from alignvar_edge import runtimes
from alignvar_edge.errors import InputError
from alignvar_edge.model.alignvar import AlignVAR
from alignvar_edge.model.config import AlignVARConfig
from alignvar_edge.runtimes.cuda_graph import Captured, GraphedRollout
from alignvar_edge.runtimes.torch_backend import TorchEngine

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def graph_like_capture(model, lr, noise=None) -> Captured:
    """Runs eagerly, but with a CUDA graph's aliasing: static inputs, outputs rewritten in place."""
    with torch.inference_mode():
        outputs = tuple(t.clone() for t in model(lr, noise))

    def replay() -> None:
        with torch.inference_mode():
            for static, new in zip(outputs, model(lr, noise)):
                static.copy_(new)
    return Captured(replay, lr, noise, outputs)


def _eager(model, lr, noise=None):
    with torch.inference_mode():
        return model(lr, noise)


def _same(got, want) -> None:
    """Tokens equal; SR equal up to float rounding (a batch padded to the graph's runs other GEMM
    shapes than eager's: 1.6e-6 measured)."""
    sr, *tokens = got
    assert torch.allclose(sr, want[0], atol=1e-5, rtol=0)
    for a, b in zip(tokens, want[1:]):
        assert torch.equal(a, b)


def _tiles(config, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3, config.lr_size, config.lr_size), generator=g)


def test_replays_give_each_call_its_own_tiles_outputs_with_one_capture_per_larger_batch():
    model = sharp_model("micro")
    rollout = GraphedRollout(model, capture_fn=graph_like_capture)
    seen = []
    for n, seed in ((3, 0), (2, 1), (3, 2), (1, 3), (4, 4)):
        lr = _tiles(model.config, n, seed)
        got = rollout(lr)
        want = _eager(model, lr)
        assert [t.shape[0] for t in got] == [n] * len(want)
        _same(got, want)
        seen.append((got, want))
    # 3 captured, 2 / 3 / 1 replayed in its buffers, 4 needed a larger graph
    assert rollout.captures == 2
    # results handed out earlier are copies: later replays did not overwrite them
    for got, want in seen:
        _same(got, want)


def test_a_refiner_models_noise_reaches_the_replayed_rows():
    cfg = AlignVARConfig.from_preset("micro", refiner_width=16, refiner_depth=1, refiner_steps=2)
    torch.manual_seed(0)
    model = AlignVAR(cfg).eval()
    rollout = GraphedRollout(model, capture_fn=graph_like_capture)
    rollout(_tiles(cfg, 2, 0), torch.from_numpy(np.asarray(cfg.refiner_noise(2))))
    lr = _tiles(cfg, 1, 1)
    other = torch.from_numpy(cfg.refiner_noise(1, seed=7))    # not the noise the graph was captured with
    got = rollout(lr, other)
    want = _eager(model, lr, other)
    assert rollout.captures == 1
    _same(got, want)
    captured_noise = _eager(model, lr, torch.from_numpy(cfg.refiner_noise(1)))[0]
    assert (got[0] - captured_noise).abs().max() > 1e-3


def test_a_failed_capture_warns_once_and_runs_eagerly():
    model = sharp_model("micro")
    calls = []

    def refusing(model, lr, noise=None):
        calls.append(1)
        raise RuntimeError("operation not permitted when stream is capturing\nmore")

    rollout = GraphedRollout(model, capture_fn=refusing)
    lr = _tiles(model.config, 2, 0)
    with pytest.warns(RuntimeWarning, match="CUDA graph capture failed, running eagerly: RuntimeError: operation"):
        got = rollout(lr)
    _same(got, _eager(model, lr))
    _same(rollout(lr), _eager(model, lr))      # no second try, no second warning
    assert calls == [1] and rollout.captures == 0


def test_a_cpu_engine_runs_eagerly_and_refuses_cuda_graphs_in_one_line():
    with TorchEngine.from_model(sharp_model("micro")) as engine:
        assert not isinstance(engine._rollout, GraphedRollout)
    with pytest.raises(InputError, match="cuda_graphs=True needs a CUDA device"):
        TorchEngine.from_model(sharp_model("micro"), cuda_graphs=True)
    with pytest.raises(InputError, match="cuda_graphs must be True or False"):
        runtimes.load("alignvar-tiny", backend="torch", cuda_graphs="yes")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
def test_a_cuda_engine_replays_a_graph_with_eagers_tokens():
    model = sharp_model("micro")
    lr = _tiles(model.config, 3, 0).numpy()
    with TorchEngine.from_model(sharp_model("micro"), device="cuda", cuda_graphs=False) as eager, \
            TorchEngine.from_model(model, device="cuda") as graphed:
        assert isinstance(graphed._rollout, GraphedRollout)
        want = eager.run(lr)
        for n in (3, 2, 3):
            got = graphed.run(lr[:n])
            for k in want:
                if k.startswith("tokens"):
                    assert np.array_equal(got[k], want[k][:n])
        assert graphed._rollout.captures == 1


def test_a_larger_batch_lets_the_old_graph_go_before_it_captures_the_new_one():
    # a graph holds its buffers and its memory pool until the last reference goes: two graphs
    # alive during a capture would need both graphs' memory at once
    import weakref
    model = sharp_model("micro")
    made = []

    def tracked(model, lr, noise=None):
        alive = [ref() is not None for ref in made]
        c = graph_like_capture(model, lr, noise)
        c.alive_at_capture = alive
        made.append(weakref.ref(c))
        return c

    rollout = GraphedRollout(model, capture_fn=tracked)
    rollout(_tiles(model.config, 1, 0))
    got = rollout(_tiles(model.config, 2, 1))
    assert rollout.captures == 2 and rollout.graph.alive_at_capture == [False]
    _same(got, _eager(model, _tiles(model.config, 2, 1)))


def test_a_call_with_or_without_noise_unlike_the_graphs_captures_its_own():
    # replaying a graph captured with noise for a call without it would refine with stale noise
    cfg = AlignVARConfig.from_preset("micro", refiner_width=16, refiner_depth=1, refiner_steps=2)
    torch.manual_seed(0)
    model = AlignVAR(cfg).eval()
    rollout = GraphedRollout(model, capture_fn=graph_like_capture)
    lr = _tiles(cfg, 2, 0)
    rollout(lr, torch.from_numpy(cfg.refiner_noise(2)))
    _same(rollout(lr), _eager(model, lr))
    noise = torch.from_numpy(cfg.refiner_noise(2, seed=3))
    _same(rollout(lr, noise), _eager(model, lr, noise))
    assert rollout.captures == 3


def test_engines_in_several_threads_capture_one_at_a_time_and_leave_the_other_threads_free(monkeypatch):
    # PyTorch allows one capture at a time per process, and a capture in the default "global"
    # mode makes CUDA calls of every other thread (an engine running there) fail; the CUDA calls
    # are faked here: what is checked is how `capture` drives them
    import contextlib
    import threading
    import time

    from alignvar_edge.runtimes import cuda_graph

    class Stream:
        def wait_stream(self, other):
            pass

    class Graph:
        def replay(self):
            pass

    modes = []

    def graph(g, **kw):
        modes.append(kw.get("capture_error_mode", "global"))
        return contextlib.nullcontext()

    for name, value in (("Stream", Stream), ("current_stream", Stream), ("CUDAGraph", Graph), ("graph", graph),
                        ("stream", lambda s: contextlib.nullcontext()), ("synchronize", lambda: None)):
        monkeypatch.setattr(torch.cuda, name, value)
    inside, most, guard = [0], [0], threading.Lock()

    def model(lr, noise=None):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.02)
        with guard:
            inside[0] -= 1
        return (lr * 2,)

    lr = torch.zeros(1, 3, 4, 4)
    threads = [threading.Thread(target=cuda_graph.capture, args=(model, lr)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1
    assert modes == ["thread_local"] * 3


def test_one_engine_called_from_several_threads_gives_each_call_its_own_tiles():
    # the graph's buffers are the engine's: `Engine.infer` holds the engine's lock from copying
    # the tiles in to copying the results out
    import threading
    import time

    def slow_capture(model, lr, noise=None) -> Captured:
        c = graph_like_capture(model, lr, noise)

        def replay() -> None:                    # a replay takes a while: other threads run meanwhile
            time.sleep(0.01)
            c_replay()
        c_replay, c.replay = c.replay, replay
        return c

    model = sharp_model("micro")
    tiles = [_tiles(model.config, 2, seed).numpy() for seed in range(4)]
    with TorchEngine.from_model(model, batch=2) as eager:
        want = [eager.run(t)[0] for t in tiles]
    with TorchEngine.from_model(model, batch=2) as engine:
        engine._rollout = GraphedRollout(engine.model, capture_fn=slow_capture)
        got: dict[int, list] = {}

        def worker(i: int) -> None:
            got[i] = [engine.run(tiles[i])[0] for _ in range(3)]
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert engine._rollout.captures == 1
    assert len(got) == 4
    for i, runs in got.items():
        for sr in runs:
            assert np.allclose(sr, want[i], atol=1e-5, rtol=0)


@pytest.fixture
def torch_opens(monkeypatch):
    """The options every torch engine is opened with (then opened as usual)."""
    from alignvar_edge.runtimes.torch_backend import TorchBackend
    seen: list[dict] = []
    real = TorchBackend.open

    def spy(self, engine_dir, device=None, **opts):
        seen.append(dict(opts))
        return real(self, engine_dir, device, **opts)
    monkeypatch.setattr(TorchBackend, "open", spy)
    return seen


def _png(path):
    from PIL import Image
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
def test_upscale_and_selftest_turn_cuda_graphs_off_on_torch_on_cuda(tmp_path, torch_opens):
    import json

    from alignvar_edge.cli import main
    src = _png(tmp_path / "in.png")
    # pinned to alignvar-tiny: the flag is the subject, not the default model (tiny tiles are cheap)
    up = ["upscale", str(src), "--engine", "alignvar-tiny", "--backend", "torch", "--device", "cuda", "--quiet",
          "--no-cuda-graphs"]
    assert main([*up[:2], str(tmp_path / "out.png"), *up[2:]]) == 0
    assert torch_opens == [{"cuda_graphs": False}] and (tmp_path / "out.png").is_file()
    assert main(["selftest", "--backend", "torch", "--model", "alignvar-tiny", "--device", "cuda", "--runs", "1",
                 "--no-cuda-graphs", "--json", str(tmp_path / "st.json")]) == 0
    assert torch_opens[1] == {"cuda_graphs": False}
    report = json.loads((tmp_path / "st.json").read_text())
    assert report["cuda_graphs"] is False and report["result"] == "PASS"


def test_no_cuda_graphs_is_refused_on_another_backend(tmp_path, torch_opens, capsys):
    from alignvar_edge.cli import main
    src = _png(tmp_path / "in.png")
    # another backend has no graphs to turn off: one line, nothing written (torch on the CPU: test_cli_help_defaults)
    assert main(["upscale", str(src), str(tmp_path / "ort.png"), "--backend", "onnxruntime",
                 "--no-cuda-graphs"]) == 2
    assert main(["selftest", "--backend", "openvino", "--no-cuda-graphs"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    # upscale first says that the checkpoint it was given runs on torch (--backend is the mistake there)
    assert len(err) == 2 and "is a model checkpoint, which runs on torch, not on onnxruntime" in err[0], err
    assert "--no-cuda-graphs applies to torch engines" in err[1], err
    assert not (tmp_path / "ort.png").exists() and torch_opens == []


def test_bench_opens_torch_eager_as_its_own_engine(torch_opens):
    from alignvar_edge.bench.subjects import open_subject, parse_spec
    s = parse_spec("torch@cuda+eager:alignvar-tiny")
    assert (s.backend, s.device, s.path, s.eager, s.hint) == ("torch", "cuda", "alignvar-tiny", True, None)
    assert not parse_spec("torch@cuda:alignvar-tiny").eager
    for bad in ("onnxruntime+eager:x", "torch+throughput:x", "torch+fast:x"):
        with pytest.raises(InputError, match=r"torch\+eager"):
            parse_spec(bad)
    sub = open_subject(parse_spec("torch@cpu+eager:alignvar-tiny"), threads=1)
    try:
        assert sub.status == "ok" and sub.label == "torch-fp32-eager"
        assert torch_opens == [{"threads": 1, "cuda_graphs": False}]     # the bench's threads, as every engine
    finally:
        sub.engine.close()
    sub = open_subject(parse_spec("torch@cpu:alignvar-tiny"), threads=1)
    sub.engine.close()
    assert torch_opens[1] == {"threads": 1} and sub.label == "torch-fp32"


def test_upscale_many_of_mixed_sizes_through_one_graph_gives_eagers_pixels():
    # small images share calls and an image's last call is short: every call replays the one
    # graph of the engine's batch with stale rows behind its own
    model = sharp_model("micro")
    t = model.config.lr_size
    rng = np.random.default_rng(0)
    shapes = ((t, t), (2 * t + 3, t + 5), (t // 2, t), (3 * t, t), (t, t))
    images = [rng.random((h, w, 3), dtype=np.float32) for h, w in shapes]
    with TorchEngine.from_model(model, batch=4) as eager, TorchEngine.from_model(model, batch=4) as graphed:
        rollout = GraphedRollout(graphed.model, capture_fn=graph_like_capture)
        sizes = []

        def counted(lr, noise=None):
            sizes.append(lr.shape[0])
            return rollout(lr, noise)
        graphed._rollout = counted
        want = [eager.upscale(images[0]), *eager.upscale_many(images)]
        got = [graphed.upscale(images[0]), *graphed.upscale_many(images)]
    # one tile first (a graph of 1), then full batches (a graph of 4) and a short last one
    assert sizes[0] == 1 and 4 in sizes and sizes[-1] < 4 and rollout.captures == 2
    assert len(got) == len(want) == len(images) + 1
    for a, b in zip(got, want):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-5
