"""AlignVAR: VARSR-style next-scale super-resolution with SCA (and HCC for training).

Token sequence (length L = prefix + sum p_k^2), by the config's `prefix` layout:
    quality: [quality token | P*P LR tokens | scale 0 (sos) | scale 1 | ... | scale K-1]
             the prefix attends to itself; scale k to the prefix and scales <= k (block-causal)
    varsr:   [P*P LR tokens | scale 0 (sos) | scale 1 | ...]   (VARSR's layout)
             LR tokens and sos form one bidirectional block, run by step 0; then block-causal
Inference runs the rollout of model/rollout.py (condition, one step per scale with an explicit KV
cache, decode): the pieces here are what its steps are made of.
With VARSR's refiner, the last step also takes the sampler's noise (see model/refiner.py).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from alignvar_edge.errors import CheckpointError, InputError
from alignvar_edge.model.bundled import BUNDLED
from alignvar_edge.model.checkpoint import (load_config, match_state_dict, read_weights, resolve_checkpoint_dir,
                                           save_pretrained, weights_sha256)
from alignvar_edge.model.color_fix import adain_color_fix
from alignvar_edge.model.conditioning import ControlNetEmbedding
from alignvar_edge.model.config import AlignVARConfig
from alignvar_edge.model.pruning import PivotalSelect
from alignvar_edge.model.refiner import DiffusionRefiner
from alignvar_edge.model.rollout import STACKED, Context, FreeRunning, KVLayout, ModelStages, run
from alignvar_edge.model.rope import pair_tables, rope_tables, scale_positions, varsr_positions, varsr_rope_tables
from alignvar_edge.model.sca import SCAGuidance, affinity
from alignvar_edge.model.transformer import (AdaLNBeforeHead, AdaLNSelfAttn, BlockCausal, LREmbed,
                                             init_weights)
from alignvar_edge.model.vqvae import VQVAE
from alignvar_edge.name_text import PathArg, path_text

POSITIVE, NEGATIVE = 0, 1     # quality embedding rows: high-quality target / low-quality target


class AlignVAR(nn.Module):
    """The AlignVAR x4 super-resolution model in PyTorch: VARSR's next-scale transformer on a
    multi-scale VQ-VAE, with SCA (see the module docstring and docs/model.md).

    Load one with `AlignVAR.from_pretrained("alignvar-tiny")` (or a checkpoint directory), hand it
    to `export` for ONNX, or build one of a config: `AlignVAR(AlignVARConfig.from_preset("tiny"))`.
    `super_resolve(lr_B3hw)` runs it on LR tiles in [0, 1]; `save_pretrained(dir)` writes a checkpoint.
    """

    # submodules the config chooses (None where it leaves them out)
    lr_embed: LREmbed | None
    con_embedding: ControlNetEmbedding | None
    decoder_norm: nn.LayerNorm | None
    diffloss: DiffusionRefiner | None
    # non-persistent buffers derived from the config (register_buffer below); no RoPE: None
    rope_cos: torch.Tensor | None
    rope_sin: torch.Tensor | None
    same_scale: torch.Tensor
    lvl_ids: torch.Tensor
    sca_reach: torch.Tensor
    # set by from_pretrained: (the name or directory as given, the checkpoint: bundled name or absolute directory)
    _pretrained: tuple[str, str] | None = None

    def __init__(self, config: AlignVARConfig, *, random_init: bool = True):
        """`random_init=False` (`without_init`): the weights are left for a checkpoint to fill."""
        super().__init__()
        c = config
        self.config = c
        self.vae = VQVAE(c)
        C, P = c.width, c.latent_size
        self.joint_prefix = c.prefix == "varsr"     # LR tokens and sos are one block (step 0)
        # token pruning ratios for the last scales at inference, finest last (model/pruning.py);
        # a setting of the rollout, not of the weights: never saved with them
        self.prune: tuple[float, ...] = ()
        self.quality_emb = nn.Embedding(2, C)
        if c.lr_encoder == "controlnet":
            self.con_embedding = ControlNetEmbedding(C, c.lr_encoder_channels, c.lr_size, c.hr_size)
            self.lr_embed = None
        else:
            self.lr_embed = LREmbed(C, c.lr_embed_ch, c.vq_downsample // c.scale, c.vq_norm_groups)
            self.con_embedding = None
        self.word_embed = nn.Linear(c.vq_cvae, C)
        # learned start positions: scale 0's tokens, preceded by the LR tokens' in VARSR's layout
        self.pos_start = nn.Parameter(torch.zeros(1, (P * P if self.joint_prefix else 0) + c.patch_nums[0] ** 2, C))
        self.lvl_embed = nn.Embedding(c.num_scales, C)
        self.pos_1LC = nn.Parameter(torch.zeros(1, c.tokens_len, C)) if c.abs_pos else None
        self.blocks = nn.ModuleList([
            AdaLNSelfAttn(C, c.heads, c.mlp_ratio, c.norm_eps, c.sca, c.sca_alpha_init, c.sca_alpha_max,
                          c.sca_alpha_param)
            for _ in range(c.depth)])
        self.head_nm = AdaLNBeforeHead(C, c.norm_eps)
        self.head = nn.Linear(C, c.vq_vocab)
        self.select_pivotal = PivotalSelect()        # token pruning's choice; its exported scope stays f32
        self.sca_guidance = (SCAGuidance(c.lr_size, c.patch_nums, c.sca_kernel, gate=c.sca_gate,
                                         exclude_radius=c.sca_exclude_radius) if c.sca else None)
        if c.has_refiner:
            self.decoder_norm = nn.LayerNorm(C, eps=c.norm_eps)
            self.diffloss = DiffusionRefiner(c.vq_cvae, C, c.refiner_width, c.refiner_depth, c.refiner_steps)
        else:
            self.decoder_norm = self.diffloss = None

        # token bookkeeping: where each scale starts in the full sequence
        self.begin_ends: list[tuple[int, int]] = []
        cur = c.prefix_len
        for p in c.patch_nums:
            self.begin_ends.append((cur, cur + p * p))
            cur += p * p
        cos, sin = self._rope_tables(c)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        scales = [-1] * c.prefix_len + [k for k, p in enumerate(c.patch_nums) for _ in range(p * p)]
        # teacher forcing's mask: a row sees the keys of level <= its own, where the level is the
        # scale, and VARSR's LR tokens share scale 0's, so the two see each other
        self.train_blocks = BlockCausal.from_levels([max(k, 0) for k in scales] if self.joint_prefix else scales)
        scale_of = torch.tensor(scales)
        self.register_buffer("same_scale", ((scale_of[None, :] == scale_of[:, None]) & (scale_of[:, None] >= 0)).float(),
                             persistent=False)
        self.register_buffer("lvl_ids", torch.arange(c.num_scales), persistent=False)
        # SCA's reach over the full sequence: same-scale pairs, minus any excluded window
        sca_reach = self.same_scale.clone()
        if self.sca_guidance is not None and c.sca_exclude_radius >= 0:
            for k, (b, e) in enumerate(self.begin_ends):
                keep = self.sca_guidance.keep(c.patch_nums[k])
                assert keep is not None, "an exclude radius >= 0 excludes a window"
                sca_reach[b:e, b:e] *= keep
        self.register_buffer("sca_reach", sca_reach, persistent=False)

        if random_init:
            init_weights(self, c.depth)
            nn.init.trunc_normal_(self.pos_start, std=0.02)
            if self.pos_1LC is not None:
                nn.init.trunc_normal_(self.pos_1LC, std=0.02)

    @staticmethod
    def _rope_tables(c: AlignVARConfig) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        P = c.latent_size
        if c.rope == "none":
            return None, None
        if c.rope == "varsr":       # LR grid, then every scale, on VARSR's 32-unit lattice
            pos = [varsr_positions(P)] + [varsr_positions(p) for p in c.patch_nums]
            return pair_tables(*varsr_rope_tables(torch.cat(pos), c.head_dim, c.rope_base))
        # ours: quality token at the centre, LR tokens on the P grid, scales scale-aligned
        centre = torch.full((1, 2), (P - 1) / 2, dtype=torch.float64)
        pos = [centre, scale_positions(P, P)] + [scale_positions(p, P) for p in c.patch_nums]
        return pair_tables(*rope_tables(torch.cat(pos), c.head_dim, c.rope_base))

    def rope(self, start: int, end: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The rotary (cos, sin) rows of sequence positions start..end; (None, None) without RoPE."""
        if self.rope_cos is None or self.rope_sin is None:
            return None, None
        return self.rope_cos[start:end], self.rope_sin[start:end]

    # ------------------------------------------------------------------------------------------
    # shared pieces
    # ------------------------------------------------------------------------------------------
    @property
    def use_cfg(self) -> bool:
        """Whether the rollout runs VARSR's image CFG (config.cfg > 0): a negative half per batch."""
        return self.config.cfg > 0

    def condition(self, lr_B3hw: torch.Tensor, quality_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """AdaLN condition (B, C) and prefix tokens (B, prefix_len, C) for given quality labels."""
        cond = self.quality_emb(quality_B)
        if self.con_embedding is not None:
            lr_tokens = self.con_embedding(lr_B3hw)
        else:
            assert self.lr_embed is not None, "the config has one LR encoder or the other"
            lr_tokens = self.lr_embed(lr_B3hw * 2 - 1)
        if self.joint_prefix:
            n = lr_tokens.shape[1]
            return cond, lr_tokens + self.pos_start[:, :n] + self.lvl_embed.weight[0]
        return cond, torch.cat([cond.unsqueeze(1).expand(lr_tokens.shape[0], -1, -1), lr_tokens], dim=1)

    def scale_input(self, k: int, tokens_BlCv: torch.Tensor | None, cond_BD: torch.Tensor) -> torch.Tensor:
        """Transformer input of scale k: sos for k = 0 (one row per row of cond_BD), else
        word_embed(area(f_hat, p_k))."""
        if k == 0:
            n0 = self.config.patch_nums[0] ** 2
            x = cond_BD.unsqueeze(1) + self.pos_start[:, -n0:]
        else:
            assert tokens_BlCv is not None
            x = self.word_embed(tokens_BlCv)
        x = x + self.lvl_embed.weight[k]
        if self.pos_1LC is not None:
            b, e = self.begin_ends[k]
            p0 = self.config.prefix_len
            x = x + self.pos_1LC[:, b - p0:e - p0]
        return x

    def logits(self, h_BlC: torch.Tensor, cond_BD: torch.Tensor) -> torch.Tensor:
        """Codebook logits (B, l, vocab) of hidden states, through the AdaLN head."""
        return self.head(self.head_nm(h_BlC, cond_BD))

    def descriptors(self, guide_B1hw: torch.Tensor, k: int) -> torch.Tensor | None:
        """SCA's structure descriptors of scale k from the LR guide; None for a model without SCA."""
        if self.sca_guidance is None:
            return None
        return self.sca_guidance.descriptors(guide_B1hw, self.config.patch_nums[k])

    # ------------------------------------------------------------------------------------------
    # training: teacher-forced full sequence
    # ------------------------------------------------------------------------------------------
    def forward_teacher(self, lr_B3hw: torch.Tensor, idx_list: list[torch.Tensor],
                        quality_B: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, tokens_len, V) for every scale given ground-truth tokens of all scales."""
        c = self.config
        B = lr_B3hw.shape[0]
        if quality_B is None:
            quality_B = torch.full((B,), POSITIVE, dtype=torch.long, device=lr_B3hw.device)
        cond, prefix = self.condition(lr_B3hw, quality_B)
        nxt = self.vae.quantize.teacher_inputs(idx_list)                    # B, L-p0^2, Cvae
        xs = [self.scale_input(0, None, cond)]
        off = 0
        for k, p in enumerate(c.patch_nums[1:], start=1):
            xs.append(self.scale_input(k, nxt[:, off:off + p * p], cond))
            off += p * p
        x = torch.cat([prefix] + xs, dim=1)
        sca_S = None
        if self.sca_guidance is not None:
            g = self.sca_guidance.guidance(lr_B3hw)
            d = [torch.zeros(B, c.prefix_len, c.sca_kernel ** 2, device=x.device, dtype=x.dtype)]
            d += [self.sca_guidance.descriptors(g, p) for p in c.patch_nums]
            d_all = torch.cat(d, dim=1)
            sca_S = affinity(d_all, d_all) * self.sca_reach
        for blk in self.blocks:
            x, _, _ = blk(x, cond, self.rope_cos, self.rope_sin, self.train_blocks, sca_S)
        return self.logits(x[:, c.prefix_len:], cond)

    # ------------------------------------------------------------------------------------------
    # inference: the pieces of the rollout's stages (model/rollout.py)
    # ------------------------------------------------------------------------------------------
    def prepare(self, lr_B3hw: torch.Tensor) -> tuple[Context, torch.Tensor]:
        """The per-tile context and the prefix tokens (B2, prefix_len, C), with CFG's negative rows.

        Without CFG every tile has the same condition, so it is one row (1, C) that broadcasts: an
        exported graph then folds AdaLN's modulation into weights the whole batch shares, where B
        identical rows became a copy of every gated weight per tile (OpenVINO: a batched matmul of
        B small GEMMs instead of one)."""
        B = lr_B3hw.shape[0]
        if self.use_cfg:
            q = torch.full((B,), POSITIVE, dtype=torch.long, device=lr_B3hw.device)
            q = torch.cat([q, torch.full_like(q, NEGATIVE)])
            lr2 = torch.cat([lr_B3hw, lr_B3hw])
        else:
            q = torch.full((1,), POSITIVE, dtype=torch.long, device=lr_B3hw.device)
            lr2 = lr_B3hw
        cond, prefix = self.condition(lr2, q)
        return Context(cond, self.guide(lr_B3hw)), prefix

    def guide(self, lr_B3hw: torch.Tensor) -> torch.Tensor:
        """SCA's structural guidance (B, 1, h, w); without SCA a placeholder the steps ignore."""
        return self.sca_guidance.guidance(lr_B3hw) if self.sca_guidance is not None else lr_B3hw[:, :1]

    def coarse_tokens(self, f_hat_BCPP: torch.Tensor, k: int) -> torch.Tensor:
        """Scale k's input tokens (B, p_k^2, Cvae): f_hat so far, area-downsampled to p_k x p_k."""
        p = self.config.patch_nums[k]
        return self.vae.quantize.resample.area(f_hat_BCPP, p).flatten(2).transpose(1, 2)

    # ------------------------------------------------------------------------------------------
    # training: free-running rollout (HCC on the latent the model itself builds)
    # ------------------------------------------------------------------------------------------
    def forward_free(self, lr_B3hw: torch.Tensor, quality_B: torch.Tensor,
                     choose: Callable[[int, torch.Tensor], torch.Tensor]
                     ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor | None]]:
        """Coarse to fine on the model's own choices: scale k's input is area(f_hat_{k-1}, p_k) where
        f_hat accumulates `choose(k, logits_k)` (B, p_k^2, V) token distributions (e.g. Gumbel
        straight-through one-hots), so a deviation at scale j reaches every later scale's input.

        Returns per-scale logits (B, p_k^2, V), the choices, and the inputs (B, p_k^2, Cvae), None
        at k = 0. No CFG pairing: the quality labels are the caller's.
        """
        _, choices, extras = run(FreeRunning(self, quality_B, choose), lr_B3hw)
        return [lg for lg, _ in extras], choices, [x for _, x in extras]

    def refine(self, h_BlC: torch.Tensor, idx_Bl: torch.Tensor, noise_SNC: torch.Tensor, t: float) -> torch.Tensor:
        """VARSR's continuous residual (B, Cvae, P, P) for the last scale's hidden states and tokens."""
        assert self.decoder_norm is not None and self.diffloss is not None
        B, l = idx_Bl.shape
        chosen = self.word_embed(self.vae.quantize.embedding(idx_Bl))
        # the reference samples without guidance exactly when its weight is 1: then it denoises both
        # CFG halves row by row and keeps the positive one, which is the positive rows' own sample
        guidance = t if self.use_cfg and t != 1.0 else None
        if guidance is None:
            h_BlC = h_BlC[:B]
        else:
            chosen = torch.cat([chosen, chosen])
        z = self.decoder_norm(h_BlC + chosen)
        z = z.reshape(-1, z.shape[-1])
        res = self.diffloss.sample(z, noise_SNC, guidance)                    # B*l, Cvae
        P = self.config.latent_size
        return res.reshape(B, l, -1).transpose(1, 2).reshape(B, -1, P, P)

    def decode(self, f_hat_BCPP: torch.Tensor, lr_B3hw: torch.Tensor) -> torch.Tensor:
        """The VQ decoder: the summed latent (B, C, P, P) -> the SR image (B, 3, hr, hr)."""
        return self.vae.decode(f_hat_BCPP, lr_B3hw)

    def rollout(self, lr_B3hw: torch.Tensor, noise_SNC: torch.Tensor | None = None,
                layout: KVLayout = STACKED) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """The whole coarse-to-fine generation: SR image, per-scale tokens, per-scale guided logits.

        `layout`: how the KV cache is held between scales (the numbers do not depend on it)."""
        return run(ModelStages(self, layout), lr_B3hw, noise_SNC)

    def forward(self, lr_B3hw: torch.Tensor, noise_SNC: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Export entry point: LR tile (and refiner noise) -> (SR tile, tokens_0, ..., tokens_{K-1})."""
        sr, tokens, _ = self.rollout(lr_B3hw, noise_SNC)
        return (sr, *tokens)

    # ------------------------------------------------------------------------------------------
    # user API
    # ------------------------------------------------------------------------------------------
    def check_input(self, lr_B3hw: torch.Tensor) -> None:
        """Refuse, in one InputError, LR tiles that are not a finite float tensor (B, 3, lr, lr)."""
        c = self.config
        if not isinstance(lr_B3hw, torch.Tensor):
            raise InputError(f"expected a torch.Tensor of shape (B, 3, {c.lr_size}, {c.lr_size}), "
                             f"got {type(lr_B3hw).__name__}")
        if lr_B3hw.dim() != 4 or tuple(lr_B3hw.shape[1:]) != (3, c.lr_size, c.lr_size):
            raise InputError(
                f"expected an LR tile of shape (B, 3, {c.lr_size}, {c.lr_size}), got {tuple(lr_B3hw.shape)}; "
                "use alignvar_edge.runtimes.tiling (or `alignvar-edge upscale`) for other image sizes")
        if not lr_B3hw.is_floating_point():
            raise InputError(f"expected a float tensor in [0, 1], got dtype {lr_B3hw.dtype}")
        if not bool(torch.isfinite(lr_B3hw).all()):
            raise InputError("input contains NaN or Inf values; pass a finite image in [0, 1]")

    @torch.no_grad()
    def super_resolve(self, lr_B3hw: torch.Tensor, refine: bool = True, color_fix: bool | None = None,
                      noise: torch.Tensor | None = None) -> torch.Tensor:
        """LR tile(s) (B, 3, lr, lr) in [0, 1] -> SR (B, 3, hr, hr) in [0, 1].

        With VARSR's refiner, `refine` adds its residual; the sampler's noise is `noise` (shape
        `config.noise_shape(B)`) or else the fixed draw every engine feeds (`config.refiner_noise`),
        so the result is deterministic and equals the engines'. Pass `noise=torch.randn(...)` for a
        fresh sample. `color_fix` matches each
        channel's mean and deviation to the LR image's (VARSR's AdaIN colour fix); by default it is on for
        VARSR-style models (whose test script applies it) and off otherwise.
        """
        if color_fix is None:
            color_fix = self.config.color_fix
        self.check_input(lr_B3hw)
        dtype = next(self.parameters()).dtype
        lr = lr_B3hw.clamp(0, 1).to(dtype)
        if noise is None:
            noise = self.engine_noise(lr, refine)
        sr, _, _ = self.rollout(lr, noise.to(lr) if refine and noise is not None else None)
        if color_fix:
            sr = adain_color_fix(sr, self.color_reference(lr))
        return sr.float()

    def engine_noise(self, lr_B3hw: torch.Tensor, refine: bool = True) -> torch.Tensor | None:
        """The refiner noise every engine feeds with these tiles (`forward`'s second input): the fixed
        draw `config.refiner_noise`, on the tiles' device and dtype, so PyTorch references (the torch
        engine, golden outputs, compare) compute what the exported graphs do. None without a refiner,
        or with `refine` off (an export made with --no-refine)."""
        fixed = self.config.refiner_noise(lr_B3hw.shape[0]) if refine else None
        return None if fixed is None else torch.from_numpy(fixed).to(lr_B3hw)

    def color_reference(self, lr_B3hw: torch.Tensor) -> torch.Tensor:
        """The LR image at the output size that the colour fix matches: VARSR's Pillow resize."""
        if self.con_embedding is not None:
            return self.con_embedding.resize(lr_B3hw)
        return self.vae.lr_up.bicubic(lr_B3hw, self.config.hr_size).clamp(0, 1)

    @torch.no_grad()
    def tokens(self, lr_B3hw: torch.Tensor) -> list[torch.Tensor]:
        """The greedy rollout's token indices per scale (B, p_k^2), coarsest first, of LR tiles in [0, 1]."""
        self.check_input(lr_B3hw)
        return self.rollout(lr_B3hw.clamp(0, 1))[1]

    def parameter_report(self) -> dict[str, int]:
        """Parameter counts per component, what inference uses, and the total (`info` prints them)."""
        def count(*mods: nn.Module | nn.Parameter | None) -> int:
            n = 0
            for m in mods:
                if m is None:
                    continue
                n += m.numel() if isinstance(m, nn.Parameter) else sum(p.numel() for p in m.parameters())
            return n

        blocks = cast("Iterable[AdaLNSelfAttn]", self.blocks)
        sca = sum(b.attn.sca_alpha.numel() for b in blocks if b.attn.sca_alpha is not None)
        report = {
            "vq_encoder": count(self.vae.encoder, self.vae.quant_conv),
            "vq_decoder": count(self.vae.decoder, self.vae.post_quant_conv, self.vae.lr_skip),
            "quantizer": count(self.vae.quantize),
            "lr_embedding": count(self.lr_embed, self.con_embedding, self.quality_emb),
            "token_embedding": count(self.word_embed, self.pos_start, self.lvl_embed, self.pos_1LC),
            "transformer_blocks": count(*self.blocks) - sca,
            "sca": sca,
            "head": count(self.head_nm, self.head),
            "refiner": count(self.decoder_norm, self.diffloss),
        }
        report["transformer_total"] = (report["lr_embedding"] + report["token_embedding"]
                                       + report["transformer_blocks"] + report["sca"] + report["head"]
                                       + report["refiner"])
        report["inference"] = report["transformer_total"] + report["quantizer"] + report["vq_decoder"]
        report["total"] = count(self)
        return report

    # ------------------------------------------------------------------------------------------
    # checkpoints (files: model/checkpoint.py)
    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_dir: PathArg) -> AlignVAR:
        """A bundled model name (e.g. 'alignvar-tiny') or a directory with config.json + safetensors.

        The model remembers where it came from (`pretrained_checkpoint`), so that `export` records
        that checkpoint, as the CLI's export does, while the weights are still the ones loaded."""
        given = path_text(name_or_dir)          # bytes too, as os.listdir(b'...') gives a name
        model = load_pretrained(given)
        model._pretrained = (given, given if given in BUNDLED else str(resolve_checkpoint_dir(given).resolve()))
        return model

    def pretrained_checkpoint(self, weights: str) -> tuple[str, str] | None:
        """(the name or directory as given, the checkpoint: a bundled name or an absolute directory)
        that `from_pretrained` loaded, where that checkpoint's weights are still this model's
        (`weights`: its `weights_sha256` now; weights fine-tuned or converted after loading, or a
        checkpoint written over since, are another model); else None. The checkpoint is loaded
        again to compare: export's cost (it takes minutes), not every load's."""
        if self._pretrained is None:
            return None
        try:
            same = weights_sha256(load_pretrained(self._pretrained[1])) == weights
        except CheckpointError:          # moved or deleted since
            return None
        return self._pretrained if same else None

    def save_pretrained(self, out_dir: PathArg, overwrite: bool = False,
                        weights_dtype: torch.dtype | None = None) -> None:
        """config.json + model.safetensors, atomically (checkpoint.save_pretrained): `weights_dtype=
        torch.float16` stores half-size weights, widened back to float32 on load."""
        save_pretrained(self, out_dir, overwrite=overwrite, weights_dtype=weights_dtype)


class _RandomInitSkipped(TorchFunctionMode):
    """torch's random initialisers as no-ops: they draw from the process's random generator (a host
    seeding it got other numbers after loading a model), and they write every weight once more for
    nothing. A torch function mode is the calling thread's only."""

    # torch.nn.init's random initialisers (some reach a mode whole, and draw inside it unseen), and
    # the tensor methods the others draw with
    SKIPPED = frozenset({nn.init.uniform_, nn.init.normal_, nn.init.trunc_normal_, nn.init.kaiming_uniform_,
                         nn.init.kaiming_normal_, nn.init.xavier_uniform_, nn.init.xavier_normal_,
                         nn.init.orthogonal_, nn.init.sparse_, torch.Tensor.uniform_, torch.Tensor.normal_})

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func in self.SKIPPED:
            return args[0] if args else kwargs["tensor"]      # nn.init passes it by name
        return func(*args, **kwargs)


def without_init(config: AlignVARConfig) -> AlignVAR:
    """The model of `config` with its random weights left as allocated, unwritten (the OS gives a
    large tensor's pages only when they are first written), for a checkpoint's weights to fill."""
    # the mode skips the submodules' own initialisers; random_init=False the model's pass over them
    # all, whose depth scaling of the residual projections would write a third of every block
    with _RandomInitSkipped():
        return AlignVAR(config, random_init=False)


def load_pretrained(name_or_dir: PathArg, strict: bool = True) -> AlignVAR:
    """Config (typed and bounded) -> its shapes against the weights file's header -> the tensors,
    each checked finite -> the model. Nothing large is written before the header agrees: the
    shapes are those of the model built without its random weights (a meta-device build ran some
    of torch's operations through its compiler stack, importing torch._dynamo: seconds, a cache
    folder). The process's random generator is left alone (with `strict=False`, the weights the
    checkpoint lacks are drawn, as a new model's)."""
    path = resolve_checkpoint_dir(name_or_dir)
    config = load_config(path)
    # strict: the header holds every weight, so none keeps what it was built with
    model = without_init(config) if strict else AlignVAR(config)
    sd = read_weights(path, {k: tuple(v.shape) for k, v in model.state_dict().items()}, strict)
    kept, _ = match_state_dict(model, sd)
    model.load_state_dict(kept, strict=False)
    return model.eval()
