"""AlignVAR model: resampling matrices, RoPE, SCA, KV cache, HCC, checkpoints, bad input."""
from __future__ import annotations

import os
import pickle

import pytest
import torch
import torch.nn.functional as F

from _runtime_fixtures import micro_model
from alignvar_edge.errors import CheckpointError, ConfigError, InputError
from alignvar_edge.model import PRESETS, AlignVAR, AlignVARConfig
from alignvar_edge.model.alignvar import NEGATIVE, POSITIVE
from alignvar_edge.model.alignvar import load_pretrained
from alignvar_edge.model.checkpoint import save_pretrained
from alignvar_edge.model.hcc import hcc_loss, split_scales
from alignvar_edge.model.info import meta_model
from alignvar_edge.model.resample import resize_matrix
from alignvar_edge.model.rollout import PER_LAYER, STACKED, KVLayout
from alignvar_edge.model.rope import apply_rope, pair_swap, pair_tables, rope_tables, scale_positions
from alignvar_edge.model.sca import SCAGuidance, affinity, sca_bias
from alignvar_edge.model.transformer import MASK_VALUE, BlockCausal, SelfAttention, attention_form, softmax_attend
from alignvar_edge.model.upstream import import_varsr


def resize_pairs(c: AlignVARConfig) -> set[tuple[str, int, int]]:
    P = c.latent_size
    pairs = {("bicubic", p, P) for p in c.patch_nums} | {("area", P, p) for p in c.patch_nums}
    pairs |= {("bicubic", c.lr_size, c.hr_size)}
    pairs |= {("area" if p <= c.lr_size else "bicubic", c.lr_size, p) for p in c.patch_nums}
    return {pr for pr in pairs if pr[1] != pr[2]}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_resize_matrices_equal_interpolate(preset: str) -> None:
    c = AlignVARConfig.from_preset(preset)
    g = torch.Generator().manual_seed(1)
    for kind, n_in, n_out in sorted(resize_pairs(c)):
        x = torch.randn(2, 3, n_in, n_in, generator=g, dtype=torch.float64)
        m = torch.from_numpy(resize_matrix(kind, n_in, n_out))
        ours = m @ x @ m.T
        ref = F.interpolate(x, size=(n_out, n_out), mode=kind)
        assert (ours - ref).abs().max().item() < 1e-5, (kind, n_in, n_out)


def apply_rope_complex(x_BHLd: torch.Tensor, cos_Lh: torch.Tensor, sin_Lh: torch.Tensor) -> torch.Tensor:
    """The reference with complex numbers: x_pair * exp(i * angle)."""
    *lead, d = x_BHLd.shape
    z = torch.view_as_complex(x_BHLd.double().reshape(*lead, d // 2, 2).contiguous())
    rot = torch.polar(torch.ones_like(cos_Lh.double()), torch.atan2(sin_Lh.double(), cos_Lh.double()))
    return torch.view_as_real(z * rot).reshape(*lead, d).to(x_BHLd.dtype)


def test_rope_real_equals_complex() -> None:
    pos = torch.cat([scale_positions(p, 16) for p in (1, 2, 5, 16)])
    cos, sin = rope_tables(pos, 32, 100.0)
    x = torch.randn(2, 4, pos.shape[0], 32, dtype=torch.float64)
    c2, s2 = pair_tables(cos.double(), sin.double())
    ours = apply_rope(x, c2, s2, pair_swap(32).double())
    ref = apply_rope_complex(x, cos, sin)
    assert (ours - ref).abs().max().item() < 1e-6
    # rotation keeps norms: the L2-normalised q/k stay normalised
    assert torch.allclose(ours.norm(dim=-1), x.norm(dim=-1), atol=1e-6)


def test_rope_matmul_form_is_the_pairwise_formula_bit_for_bit() -> None:
    """The four-op form rotates exactly as (e c - o s, e s + o c) does, in float32."""
    pos = torch.cat([scale_positions(p, 8) for p in (1, 3, 8)])
    cos, sin = rope_tables(pos, 16, 100.0)
    x = torch.randn(3, 2, pos.shape[0], 16)
    e, o = x[..., 0::2], x[..., 1::2]
    pairwise = torch.stack([e * cos - o * sin, e * sin + o * cos], dim=-1).flatten(-2)
    assert torch.equal(apply_rope(x, *pair_tables(cos, sin), pair_swap(16)), pairwise)


@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("with_past, per_sample_rows", [(False, False), (True, False), (True, True)])
def test_fused_attention_call_equals_explicit(with_past: bool, per_sample_rows: bool, graph: bool,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The opset-23 form (RMSNormalization, RotaryEmbedding, Attention with its KV cache) computes
    what the explicit form does: output, and the keys and values handed to the next scale; also
    with a pruned scale's rotary rows, which differ per sample. `graph`: the form it takes while
    exported (per-head weight views), run eagerly."""
    if graph:
        monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    torch.manual_seed(0)
    attn = SelfAttention(32, 4, sca=True, sca_alpha_init=0.5, sca_alpha_max=2.0).eval()
    with torch.no_grad():
        for prm in (attn.q_bias, attn.v_bias, attn.scale_mul_1H11):
            prm.normal_()
    B, l, past = 2, 9, 5 if with_past else 0
    cos, sin = pair_tables(*rope_tables(scale_positions(4, 8), 8, 100.0))
    rows = torch.stack([torch.randperm(16)[:l] for _ in range(B)]) if per_sample_rows else torch.arange(l)
    cos, sin = cos[rows], sin[rows]
    if per_sample_rows:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)                      # (B, 1, l, hd), as pruning has them
    bias = torch.where(torch.rand(1, 1, l, past + l) < 0.3, MASK_VALUE, 0.0)
    args = (torch.randn(B, l, 32), cos, sin, bias, torch.randn(B, l, past + l),
            torch.randn(B, 4, past, 8) if with_past else None, torch.randn(B, 4, past, 8) if with_past else None)
    with torch.no_grad():
        explicit = attn(*args)
        with attention_form(attn, "fused"):
            fused = attn(*args)
    for a, b in zip(explicit, fused):
        assert a.shape == b.shape and torch.allclose(a, b, atol=2e-6, rtol=1e-5), (a - b).abs().max()


def test_block_causal_mask_is_the_level_rule() -> None:
    """Levels -1 (prefix), then one per scale: a row sees every key of level <= its own."""
    lvl = torch.tensor([-1, -1, -1, 0, 1, 1, 1, 1, 2, 2])
    blocks = BlockCausal.from_levels(lvl)
    assert blocks.ends == (3, 4, 8, 10)
    want = torch.where(lvl[None, :] <= lvl[:, None], 0.0, MASK_VALUE).view(1, 1, 10, 10)
    assert torch.equal(blocks.mask(), want)
    with pytest.raises(ValueError):
        BlockCausal.from_levels(torch.tensor([0, 1, 0]))


@pytest.mark.parametrize("training", [True, False])
def test_block_causal_attention_equals_the_dense_mask(training: bool) -> None:
    """Teacher forcing's attention block by block (the masked scores never computed) gives what
    the dense mask gives through SDPA (training) or the explicit softmax (eval): outputs and the
    gradients of the input and of SCA's alphas."""
    torch.manual_seed(0)
    attn = SelfAttention(32, 4, sca=True, sca_alpha_init=0.5, sca_alpha_max=2.0).train(training)
    with torch.no_grad():
        for prm in (attn.q_bias, attn.v_bias, attn.scale_mul_1H11):
            prm.normal_()
    blocks = BlockCausal.from_levels(torch.tensor([-1] * 5 + [0] + [1] * 4 + [2] * 9))
    B, L = 3, 19
    x, S = torch.randn(B, L, 32), torch.randn(B, L, L)
    results = []
    for bias in (blocks, blocks.mask()):
        xi = x.clone().requires_grad_(True)
        out, k, v = attn(xi, None, None, bias, S, None, None)
        attn.zero_grad()
        (out.square().sum() + k.sum() + v.sum()).backward()
        assert attn.sca_alpha is not None and attn.sca_alpha.grad is not None
        results.append((out.detach(), xi.grad, attn.sca_alpha.grad.clone()))
    for got, want in zip(*results):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), (got - want).abs().max()


def test_softmax_attend_kernels_agree() -> None:
    """The GPU's choice (SDPA) and the CPU's (plain products) compute the same attention."""
    torch.manual_seed(0)
    q, k, v, bias = torch.randn(2, 4, 7, 8), torch.randn(2, 4, 11, 8), torch.randn(2, 4, 11, 8), torch.randn(2, 4, 7, 11)
    for b in (bias, None):
        want = torch.softmax(q @ k.transpose(-2, -1) + (0 if b is None else b), -1) @ v
        for sdpa in (True, False):
            assert torch.allclose(softmax_attend(q, k, v, b, sdpa), want, atol=1e-6), (sdpa, b is None)


def test_sca_alpha_zero_is_plain_attention_bitwise() -> None:
    with_sca = micro_model(sca_alpha_init=0.0)
    plain = AlignVAR(with_sca.config.replace(sca=False)).eval()
    plain.load_state_dict({k: v for k, v in with_sca.state_dict().items() if "sca_alpha" not in k})
    lr = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    _, tok_a, log_a = with_sca.rollout(lr)
    _, tok_b, log_b = plain.rollout(lr)
    for a, b in zip(log_a, log_b):
        assert torch.equal(a, b)
    idx = with_sca.vae.img_to_idx(torch.rand(2, 3, 32, 32), lr)
    assert torch.equal(with_sca.forward_teacher(lr, idx), plain.forward_teacher(lr, idx))


def test_sca_moves_attention_to_structurally_similar_tokens() -> None:
    """Two distant parallel vertical edges: a token on one edge attends more to the other edge."""
    lr = torch.zeros(1, 3, 16, 16)
    lr[..., :, 3:] = 1.0       # rising edge between columns 2|3
    lr[..., :, 7:] = 0.0       # falling edge 6|7 (different structure)
    lr[..., :, 12:] = 1.0      # rising edge 11|12: same structure, far from the first
    guide = SCAGuidance(16, (16,), kernel=3)
    d = guide.descriptors(guide.guidance(lr), 16)                          # 1, 256, 9
    s = affinity(d, d)
    cols = torch.arange(256) % 16
    query = 5 * 16 + 2                                                     # row 5, on the first edge
    same_edge_far = (cols == 11)
    flat = (cols == 9)
    assert s[0, query, same_edge_far].mean() > 0.9
    assert s[0, query, flat].abs().max() < 1e-3
    torch.manual_seed(0)
    logits = torch.randn(1, 1, 256, 256) * 0.1
    base = torch.softmax(logits, -1)[0, 0, query]
    moved = torch.softmax(logits + sca_bias(torch.tensor([2.0]), s), -1)[0, 0, query]
    assert moved[same_edge_far].sum() > 2 * base[same_edge_far].sum()
    assert moved[flat].sum() < base[flat].sum()


@pytest.mark.parametrize("layout", [STACKED, PER_LAYER], ids=lambda layout: layout.name)
@pytest.mark.parametrize("sca_options", [{}, {"sca_exclude_radius": 1, "sca_gate": 2.0, "sca_alpha_param": "softplus"}])
@pytest.mark.parametrize("cfg", [0.0, 1.5])
def test_kv_cache_equals_teacher_forcing(cfg: float, sca_options: dict, layout: KVLayout) -> None:
    """Every KV-cache layout of the rollout against the cache-free teacher-forced pass: the same
    guided logits, greedy tokens, and the image the VQ-VAE decodes from those tokens."""
    model = micro_model(cfg=cfg, sca_alpha_init=1.0, **sca_options)
    lr = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        sr, tokens, cached = model.rollout(lr, layout=layout)
        pos = model.forward_teacher(lr, tokens, torch.full((2,), POSITIVE))
        neg = model.forward_teacher(lr, tokens, torch.full((2,), NEGATIVE))
        want_sr = model.decode(model.vae.quantize.idx_to_fhat(tokens)[-1], lr)
    c = model.config
    for k, (p_log, n_log, got) in enumerate(zip(split_scales(pos, c.patch_nums),
                                                split_scales(neg, c.patch_nums), cached)):
        t = cfg * k / (c.num_scales - 1)
        want = (1 + t) * p_log - t * n_log if cfg > 0 else p_log
        assert (want - got).abs().max().item() < 1e-5, k
        assert torch.equal(want.argmax(-1), tokens[k])
    assert torch.equal(sr, want_sr)


def test_hcc_zero_on_one_hot_truth_and_gradient_reaches_transformer() -> None:
    model = micro_model()
    q = model.vae.quantize
    c = model.config
    lr = torch.rand(2, 3, 8, 8)
    idx = model.vae.img_to_idx(torch.rand(2, 3, 32, 32), lr)
    one_hot = [F.one_hot(i, c.vq_vocab).float() for i in idx]
    assert hcc_loss(one_hot, idx, q).item() == 0.0
    logits = model.forward_teacher(lr, idx)
    probs = split_scales(torch.softmax(logits, -1), c.patch_nums)
    loss = hcc_loss(probs, idx, q)
    assert loss.item() > 0
    loss.backward()
    g = model.blocks[0].attn.mat_qkv.weight.grad
    assert g is not None and g.abs().sum() > 0


def test_parameter_formula_d16() -> None:
    report = meta_model(AlignVARConfig.from_preset("d16")).parameter_report()
    C, H, depth = 1024, 16, 16
    assert report["transformer_blocks"] == depth * (18 * C * C + 14 * C + H) == 302_219_520
    assert report["sca"] == depth * H
    assert report["vq_encoder"] + report["vq_decoder"] + report["quantizer"] == 108_948_355  # VAR's VQ-VAE


class _Payload:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):  # a pickle that would create a file when loaded
        return (os.system, (f"touch {self.target}",))


def test_pickle_with_code_payload_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"
    legacy, current = tmp_path / "evil.pth", tmp_path / "evil_zip.pth"
    with legacy.open("wb") as fh:
        pickle.dump({"trainer": {"var_wo_ddp": _Payload(str(marker))}}, fh)
    torch.save({"trainer": {"var_wo_ddp": _Payload(str(marker))}}, current)
    with pytest.raises(CheckpointError, match="not a PyTorch zip checkpoint"):
        import_varsr(legacy, legacy)
    with pytest.raises(CheckpointError, match="not a state dict of tensors"):
        import_varsr(current, current)
    assert not marker.exists()


def test_save_and_load_pretrained_roundtrip(tmp_path) -> None:
    model = micro_model(seed=2)
    save_pretrained(model, tmp_path / "ckpt")
    again = load_pretrained(tmp_path / "ckpt")
    assert again.config == model.config
    lr = torch.rand(1, 3, 8, 8)
    assert torch.equal(again.super_resolve(lr), model.super_resolve(lr))
    with pytest.raises(CheckpointError, match="already exists"):
        save_pretrained(model, tmp_path / "ckpt")


def test_fp16_stored_weights_load_as_the_rounded_fp32_model(tmp_path) -> None:
    # the bundled default ships fp16-stored weights: half the file, widened exactly on load
    from safetensors import safe_open
    model = micro_model(seed=2)
    save_pretrained(model, tmp_path / "fp32")
    save_pretrained(model, tmp_path / "fp16", weights_dtype=torch.float16)
    with safe_open(str(tmp_path / "fp16" / "model.safetensors"), "pt") as f:
        assert f.metadata()["weights_dtype"] == "float16"
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    size = lambda d: (tmp_path / d / "model.safetensors").stat().st_size  # noqa: E731
    assert size("fp16") < 0.55 * size("fp32")
    again = load_pretrained(tmp_path / "fp16")
    for (k, a), b in zip(again.state_dict().items(), model.state_dict().values()):
        assert a.dtype == torch.float32, k
        assert torch.equal(a, b.to(torch.float16).float()) if a.is_floating_point() else torch.equal(a, b), k


def test_the_save_pretrained_method_stores_half_weights(tmp_path) -> None:
    """docs/model.md's `model.save_pretrained(..., weights_dtype=torch.float16)` on the model itself."""
    from safetensors import safe_open
    model = micro_model(seed=2)
    model.save_pretrained(tmp_path / "fp16", weights_dtype=torch.float16)
    with safe_open(str(tmp_path / "fp16" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    again = load_pretrained(tmp_path / "fp16")
    assert torch.equal(again.head.weight, model.head.weight.half().float())


def test_config_mismatch_is_reported(tmp_path) -> None:
    model = micro_model()
    save_pretrained(model, tmp_path / "ckpt")
    cfg = model.config.replace(depth=3)
    cfg.to_json(tmp_path / "ckpt" / "config.json")
    with pytest.raises(CheckpointError, match="missing: blocks.2"):
        load_pretrained(tmp_path / "ckpt")


def test_config_json_roundtrip() -> None:
    for name in PRESETS:
        c = AlignVARConfig.from_preset(name)
        assert AlignVARConfig.from_json(c.to_json()) == c


def test_bad_configs_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'd17'.*d16"):
        AlignVARConfig.from_preset("d17")
    with pytest.raises(ConfigError, match="divisible by 4"):
        AlignVARConfig.from_preset("micro", width=36, heads=2)      # head dim 18
    with pytest.raises(ConfigError, match="GroupNorm groups"):
        AlignVARConfig.from_preset("micro", vq_ch=12)
    with pytest.raises(ConfigError, match="unknown config keys"):
        AlignVARConfig.from_dict({"depht": 3})


def test_bad_input_to_super_resolve() -> None:
    model = micro_model()
    with pytest.raises(InputError, match=r"\(B, 3, 8, 8\)"):
        model.super_resolve(torch.rand(1, 3, 9, 8))
    with pytest.raises(InputError, match="NaN or Inf"):
        model.super_resolve(torch.full((1, 3, 8, 8), float("nan")))
    with pytest.raises(InputError, match="float"):
        model.super_resolve(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    out = model.super_resolve(torch.rand(2, 3, 8, 8))
    assert out.shape == (2, 3, 32, 32) and out.min() >= 0 and out.max() <= 1


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")     # torch's own exporter, pickling its trees
def test_rollout_exports_with_dynamo(tmp_path) -> None:
    model = micro_model()
    path = tmp_path / "micro.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, 8, 8),), str(path), dynamo=True, opset_version=18,
                      external_data=False)
    import onnx
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert not ops & {"Loop", "If", "RandomNormal", "RandomUniform"}
    assert len(graph.output) == 1 + model.config.num_scales


def test_model_docs_preset_table_gives_infos_parameter_counts() -> None:
    """docs/model.md's preset table: each plain 'N M' in the params column is what `info --preset`
    counts for inference, to the digit shown."""
    import re
    from pathlib import Path

    from alignvar_edge.model.info import model_info
    doc = (Path(__file__).resolve().parent.parent / "docs" / "model.md").read_text()
    rows = re.findall(r"^\| `([\w-]+)`[^|]*(?:\|[^|]*){4}\| ([\d.]+) M \|$", doc, flags=re.M)
    assert {name for name, _ in rows} >= {"micro", "tiny", "tiny32"}
    for name, shown in rows:
        n = model_info(meta_model(AlignVARConfig.from_preset(name)), with_flops=False)["parameters"]["inference"]
        assert f"{n / 1e6:.{len(shown.split('.')[1]) if '.' in shown else 0}f}" == shown, (name, n)


def test_a_refiner_model_runs_in_half_precision():
    # the refiner's timestep sinusoid is computed in f32; a bf16/fp16 model used to feed it to its
    # half weights unconverted and fail with a dtype mismatch
    import torch

    from alignvar_edge.model.alignvar import AlignVAR
    from alignvar_edge.model.config import AlignVARConfig
    from alignvar_edge.quantize.calibration.tiles import lr_tiles
    torch.manual_seed(0)
    cfg = AlignVARConfig.from_preset("micro", refiner_width=16, refiner_depth=1, refiner_steps=2)
    m = AlignVAR(cfg).eval().to(torch.bfloat16)
    lr = torch.from_numpy(lr_tiles(cfg, 2, seed=0)).to(torch.bfloat16)
    with torch.inference_mode():
        sr, *tokens = m(lr, torch.randn(cfg.noise_shape(2), dtype=torch.bfloat16))
    assert sr.dtype == torch.bfloat16 and bool(torch.isfinite(sr).all()) and len(tokens) == len(cfg.patch_nums)


def test_eager_inference_takes_the_fused_attention_on_cuda_only():
    from alignvar_edge.export.random_model import random_model
    from alignvar_edge.model.transformer import SelfAttention, attention_form, inference_form
    from alignvar_edge.runtimes.torch_backend import TorchEngine
    assert [inference_form(d) for d in ("cuda", "cuda:1", "cpu", "mps")] == ["fused", "fused", "explicit", "explicit"]
    m = random_model("micro")
    with attention_form(m, "fused"):
        assert {a.form for a in m.modules() if isinstance(a, SelfAttention)} == {"fused"}
        engine = TorchEngine.from_model(m)          # a CPU engine runs the explicit reference
        assert {a.form for a in engine.model.modules() if isinstance(a, SelfAttention)} == {"explicit"}


def test_pillow_resize_in_a_half_model_is_the_float32_result():
    # Pillow-exact resizing sums integers up to 2**24: in fp16 they came out inf, and VARSR-d24 in
    # fp16 lost every token on a GPU; the module computes in float32 whatever its input's dtype
    import torch

    from alignvar_edge.model.resample import PILBicubicResize
    r = PILBicubicResize(32, 128)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for dtype in (torch.float16, torch.bfloat16):
        want = PILBicubicResize(32, 128)(x.to(dtype).float())       # the same half input, in float32
        got = r.to(dtype)(x.to(dtype))
        assert got.dtype == dtype and torch.equal(got, want.to(dtype))
