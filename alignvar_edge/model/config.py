"""AlignVAR configuration: one dataclass, JSON round-trip, named presets, validation."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alignvar_edge import jsonsafe
from alignvar_edge.degrade import DegradationConfig
from alignvar_edge.errors import ConfigError, InputError

PATCH_NUMS_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
PATCH_NUMS_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
PREFIXES = ("quality", "varsr")
# sizes a config may ask for: far beyond any published model, far below what would exhaust memory
BOUNDS: dict[str, tuple[float, float]] = {
    "scale": (1, 16), "hr_size": (1, 8192), "patch_nums": (1, 1024), "vq_ch": (1, 4096),
    "vq_ch_mult": (1, 64), "vq_num_res_blocks": (1, 64), "vq_norm_groups": (1, 1024), "vq_vocab": (1, 1 << 20),
    "vq_cvae": (1, 4096), "vq_phi_count": (1, 64), "depth": (1, 256), "width": (1, 16384), "heads": (1, 256),
    "mlp_ratio": (0.0625, 64), "lr_embed_ch": (1, 16384), "lr_encoder_channels": (1, 16384),
    "refiner_width": (0, 16384), "refiner_depth": (0, 256), "sca_kernel": (1, 63),
}


class ConfigValueError(ConfigError):
    """One config key with a value the model refuses: `key` names it (a dotted path inside the
    `degradation` block), `detail` says why without the config's name, so a caller can name its own
    source: config.json (checkpoint.load_config) or a command-line flag (the trainer's overrides)."""

    def __init__(self, config_name: str, key: str, detail: str):
        super().__init__(f"config '{config_name}': {detail}")
        self.key = key
        self.detail = detail


@contextlib.contextmanager
def named_by_flags(given: Mapping[str, Any], flags: Mapping[str, str]) -> Iterator[None]:
    """A value the caller's options set (`given`), refused by the config's own check: named by its
    command-line flag (`flags`), or as `overrides['key']` (the Python API), not as a config file's."""
    try:
        yield
    except ConfigValueError as e:
        key = e.key.split(".")[0]
        if key not in given:
            raise
        raise InputError(f"{flags.get(key, f'overrides[{key!r}]')}: {e.detail}") from e


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _shown(v: Any) -> str:
    """`v` as a refusal quotes it: a config.json's 400-digit integer is not printed whole."""
    r = repr(v)
    return r if len(r) <= 40 else f"{r[:16]}... ({len(r)} characters)"


def _is_real(v: Any) -> bool:
    """A finite number a float holds (JSON's 400-digit integer is none: float() overflows)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False

ROPES = ("scale", "varsr", "none")
LR_ENCODERS = ("strided", "controlnet")
HCC_ROLLOUTS = ("teacher", "gumbel")       # where HCC's predictions come from (model/hcc.py)
CFG_NEGATIVES = ("dropout", "degraded")     # what image CFG's negative label is trained on (trainer)
ALPHA_PARAMS = ("clamp", "softplus")      # SCA alpha parametrisations (model/sca.py: alpha_from_raw)
# the attention core's inference forms (model/transformer.py); here, torch-free, for export's --attention choices
ATTENTION_FORMS = ("explicit", "fused")
VAR_VQ_BETA = 0.25                         # VAR's and VARSR's VQVAE(beta=0.25): their commitment weight


@dataclass
class AlignVARConfig:
    """Everything needed to build the network; stored as `config.json` beside the weights."""

    name: str = "custom"
    # --- tile geometry -------------------------------------------------------------------
    scale: int = 4
    hr_size: int = 64                      # SR tile side (pixels)
    patch_nums: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
    # --- VQ-VAE (VAR semantics) ---------------------------------------------------------
    vq_ch: int = 32
    vq_ch_mult: tuple[int, ...] = (1, 2, 2, 2)   # downsampling factor = 2 ** (len - 1)
    vq_num_res_blocks: int = 1
    vq_norm_groups: int = 8
    vq_using_sa: bool = True
    vq_vocab: int = 1024
    vq_cvae: int = 32
    vq_beta: float = 0.02                  # VAR: VAR_VQ_BETA; small CPU runs collapse with it (measured)
    vq_phi_count: int = 4                  # partially shared phi convs (VAR: 4)
    vq_phi_ratio: float = 0.5              # phi(x) = (1-r) x + r conv(x)
    # Code HR minus bicubic(LR) and add bicubic(LR) back after decoding (off = pure VAR form).
    residual_to_bicubic: bool = True
    # Give the decoder LR features where its resolution equals the LR tile (off = pure VAR form).
    decoder_lr: bool = True
    # --- transformer ----------------------------------------------------------------------
    depth: int = 4
    width: int = 128
    heads: int = 4
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    rope_base: float = 100.0
    abs_pos: bool = False                  # VAR's absolute pos_1LC (set when importing VAR)
    lr_embed_ch: int = 64                  # width of the LR conditioning conv stack
    # --- SCA (spatial consistency autoregression) ---------------------------------------
    sca: bool = True
    sca_kernel: int = 3                    # descriptor = k x k guidance neighbourhood
    sca_alpha_init: float = 0.5
    sca_alpha_max: float = 8.0             # |alpha * S| <= alpha_max keeps fp16 finite
    sca_alpha_param: str = "clamp"         # "clamp": clamp(a, 0, max); "softplus": max*tanh(softplus(a)/max)
    sca_exclude_radius: int = -1           # r >= 0: no bias within Chebyshev distance r (0: diagonal)
    sca_gate: float = 0.0                  # kappa > 0: shrink descriptors at the LR's noise level
    # --- architecture switches (an imported checkpoint sets them; defaults: AlignVAR as trained here)
    # "quality": [quality token | LR tokens] prefix, scale 0 (sos) after it, the prefix blind to it;
    # "varsr": [LR tokens | sos] as one bidirectional block, pos_start over all of it (VARSR).
    prefix: str = "quality"
    # "scale": our scale-aligned centre positions; "varsr": VARSR's (i/p * 32) grid; "none": VAR.
    rope: str = "scale"
    # "strided": LREmbed on the LR tile; "controlnet": VARSR's conv stack on the LR resized to the
    # HR size with PIL's bicubic (uint8 arithmetic, as VARSR's data loader does).
    lr_encoder: str = "strided"
    lr_encoder_channels: tuple[int, ...] = ()   # controlnet widths (VARSR: 32, 128, 256, 512, 1536)
    vq_phi_last: bool = True               # VARSR applies no phi at the last scale
    # VARSR's diffusion refiner (DiffLoss MLP) on the last scale; width 0: none
    refiner_width: int = 0
    refiner_depth: int = 0
    refiner_steps: int = 10                # respaced DDPM steps at inference (VARSR: 10)
    # --- inference -------------------------------------------------------------------------
    cfg: float = 0.0                       # image CFG strength at the last scale (0: one branch)
    # --- training-only ---------------------------------------------------------------------
    hcc_weight: float = 1.0                # lambda (0: no HCC)
    hcc_scale_weights: tuple[float, ...] = ()   # w_k per scale; empty: 1/K each
    hcc_rollout: str = "teacher"           # "teacher": teacher-forced soft predictions; "gumbel": free-running
    hcc_tau: float = 1.0                   # Gumbel-softmax temperature of the "gumbel" rollout
    cond_drop: float = 0.1                 # probability of the negative quality embedding
    # what the negative label learns: "dropout": the same target (VAR's null class, random condition
    # dropout); "degraded": the tokens of a degraded low-quality image of the crop (VARSR's image CFG)
    cfg_negative: str = "dropout"
    degradation: dict[str, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self._check_types()
        self.patch_nums = tuple(int(p) for p in self.patch_nums)
        self.vq_ch_mult = tuple(int(m) for m in self.vq_ch_mult)
        self.lr_encoder_channels = tuple(int(m) for m in self.lr_encoder_channels)
        self.hcc_scale_weights = tuple(float(w) for w in self.hcc_scale_weights)
        self.validate()

    @property
    def vq_downsample(self) -> int:
        return 2 ** (len(self.vq_ch_mult) - 1)

    @property
    def lr_size(self) -> int:
        return self.hr_size // self.scale

    @property
    def latent_size(self) -> int:
        """P: side of the VQ latent and of the finest token map."""
        return self.hr_size // self.vq_downsample

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    @property
    def prefix_len(self) -> int:
        """Tokens before scale 0: quality token + P x P LR tokens (VARSR: the LR tokens alone)."""
        return self.latent_size ** 2 + (0 if self.prefix == "varsr" else 1)

    @property
    def color_fix(self) -> bool:
        """Whether an SR image gets VARSR's AdaIN colour fix by default: for models with VARSR's LR
        encoder, whose test script applies it to every output; AlignVAR's own models do not."""
        return self.lr_encoder == "controlnet"

    @property
    def has_refiner(self) -> bool:
        return self.refiner_width > 0

    def noise_shape(self, batch: int) -> tuple[int, int, int]:
        """The refiner's noise input for `batch` tiles: (steps, batch * P * P, Cvae)."""
        return (self.refiner_steps, batch * self.latent_size ** 2, self.vq_cvae)

    def refiner_noise(self, batch: int, seed: int = 0) -> np.ndarray | None:
        """The noise every engine and the export's parity check feed the refiner: one tile's draw of
        standard normal float32 from numpy's PCG64(seed), repeated for each tile of the batch, so
        a tile refines alike on every backend and at every batch size. None without a refiner."""
        if not self.has_refiner:
            return None
        tile = np.random.default_rng(seed).standard_normal(self.noise_shape(1), dtype=np.float32)
        return np.tile(tile, (1, batch, 1))

    def refiner_noise_code(self, batch: int) -> str:
        """`refiner_noise(batch)` as one numpy expression (numpy imported as np), for whoever feeds an
        engine's graph without alignvar-edge: the manifest's input contract and the engine READMEs."""
        return (f"np.tile(np.random.default_rng(0).standard_normal({self.noise_shape(1)}, dtype=np.float32), "
                f"(1, {batch}, 1))")

    @property
    def tokens_len(self) -> int:
        return sum(p * p for p in self.patch_nums)

    @property
    def seq_len(self) -> int:
        return self.prefix_len + self.tokens_len

    def _check_types(self) -> None:
        """Every field of its declared type and sizes within bounds, before anything is allocated
        from them (a config.json is input: `depth: "two"` or `width: 1048576` must not get further)."""
        for f in dataclasses.fields(self):
            v, kind = getattr(self, f.name), str(f.type)
            ok = {"int": _is_int(v), "float": _is_real(v), "bool": isinstance(v, bool), "str": isinstance(v, str),
                  "tuple[int, ...]": isinstance(v, (list, tuple)) and all(_is_int(x) for x in v),
                  "dict[str, Any]": isinstance(v, dict)}.get(kind, True)
            if not ok:
                raise ConfigValueError(str(self.name), f.name, f"{f.name} must be {kind}, got {_shown(v)}")
        for name, (low, high) in BOUNDS.items():
            v = getattr(self, name)
            for x in (v if isinstance(v, (list, tuple)) else [v]):
                if not low <= x <= high:
                    raise ConfigValueError(self.name, name, f"{name} must lie in [{low}, {high}], got {_shown(x)}")
        if not 1 <= len(self.patch_nums) <= 64:
            raise ConfigValueError(self.name, "patch_nums",
                                   f"patch_nums must have 1 to 64 scales, got {len(self.patch_nums)}")

    def validate(self) -> None:
        """Every value the model (and training) can work with: the one check of a config, run by the
        constructor, so a config.json (checkpoint.load_config), a preset with overrides and
        `replace(**changes)` (the trainer's flags on an --init checkpoint) all pass through it.
        Refusals are ConfigValueError, naming the key."""
        fields_ = {f.name for f in dataclasses.fields(self)}

        def bad(msg: str) -> None:
            first = msg.split(" ", 1)[0].rstrip(":")
            key = first if first.split(".")[0] in fields_ else ""
            raise ConfigValueError(self.name, key, msg)

        if self.scale < 1:
            bad(f"scale must be >= 1, got {self.scale}")
        if self.hr_size % self.scale:
            bad(f"hr_size {self.hr_size} is not a multiple of scale {self.scale}")
        if self.hr_size % self.vq_downsample:
            bad(f"hr_size {self.hr_size} is not a multiple of the VQ downsampling {self.vq_downsample}")
        if list(self.patch_nums) != sorted(set(self.patch_nums)) or self.patch_nums[0] < 1:
            bad(f"patch_nums must be strictly increasing positive ints, got {self.patch_nums}")
        if self.patch_nums[-1] != self.latent_size:
            bad(f"the last patch_num ({self.patch_nums[-1]}) must equal the latent size "
                f"hr_size/vq_downsample = {self.latent_size}")
        if self.vq_downsample < self.scale:
            bad(f"the VQ downsampling ({self.vq_downsample}) must be >= scale ({self.scale}): the LR "
                "embedding maps the LR tile onto the P x P latent grid with a strided conv stack")
        if self.decoder_lr and self.lr_size not in {self.latent_size * 2 ** i for i in range(len(self.vq_ch_mult))}:
            bad(f"decoder_lr needs a decoder level at the LR size {self.lr_size}")
        if len(self.patch_nums) < 2:
            bad("need at least two scales")
        if self.width % self.heads:
            bad(f"width {self.width} is not divisible by heads {self.heads}")
        for name, value, allowed in (("prefix", self.prefix, PREFIXES), ("rope", self.rope, ROPES),
                                     ("lr_encoder", self.lr_encoder, LR_ENCODERS)):
            if value not in allowed:
                bad(f"{name} must be one of {list(allowed)}, got {value!r}")
        if self.rope == "varsr" and self.prefix != "varsr":
            bad("rope 'varsr' places VARSR's LR grid first: it needs prefix 'varsr'")
        if self.sca and self.prefix != "quality":
            bad("SCA biases scale blocks after a separate prefix: it needs prefix 'quality'")
        if self.lr_encoder == "controlnet":
            n = len(self.lr_encoder_channels)
            if n < 1 or 2 ** (n - 1) != self.vq_downsample:
                bad(f"lr_encoder_channels {list(self.lr_encoder_channels)} must have "
                    f"log2(vq_downsample) + 1 = {self.vq_downsample.bit_length()} entries")
        if self.refiner_width < 0 or (self.refiner_width and self.refiner_depth < 1):
            bad("refiner_width must be >= 0, and refiner_depth >= 1 when it is > 0")
        if not 1 <= self.refiner_steps <= 1000:
            bad(f"refiner_steps must lie in [1, 1000], got {self.refiner_steps}")
        if self.rope != "none" and self.head_dim % 4:
            bad(f"head dim {self.head_dim} (width/heads) must be divisible by 4 for 2-D rotary "
                f"positions; choose width/heads from e.g. {self.heads * 4 * (self.head_dim // 4 + 1)}")
        for m in self.vq_ch_mult:
            if (self.vq_ch * m) % self.vq_norm_groups:
                bad(f"VQ width {self.vq_ch * m} (vq_ch*{m}) is not a multiple of the "
                    f"GroupNorm groups {self.vq_norm_groups}")
        if self.lr_encoder == "strided" and self.lr_embed_ch % self.vq_norm_groups:
            bad(f"lr_embed_ch {self.lr_embed_ch} is not a multiple of {self.vq_norm_groups}")
        if self.sca_kernel % 2 == 0:
            bad(f"sca_kernel must be odd, got {self.sca_kernel}")
        if not 0 < self.sca_alpha_max <= 100:
            bad("sca_alpha_max must lie in (0, 100]")
        if self.sca_alpha_param not in ALPHA_PARAMS:
            bad(f"sca_alpha_param must be one of {list(ALPHA_PARAMS)}, got {self.sca_alpha_param!r}")
        if self.sca_alpha_param == "softplus" and not 0 < self.sca_alpha_init < self.sca_alpha_max:
            bad(f"sca_alpha_param 'softplus' needs 0 < sca_alpha_init < sca_alpha_max, got {self.sca_alpha_init}")
        if self.sca_exclude_radius < -1:
            bad(f"sca_exclude_radius must be -1 (off) or >= 0, got {self.sca_exclude_radius}")
        if self.sca_gate < 0:
            bad(f"sca_gate must be >= 0 (0: off), got {self.sca_gate}")
        if self.hcc_scale_weights and len(self.hcc_scale_weights) != self.num_scales:
            bad(f"hcc_scale_weights needs one weight per scale ({self.num_scales}), got "
                f"{len(self.hcc_scale_weights)}; leave it empty for 1/K each")
        if self.hcc_rollout not in HCC_ROLLOUTS:
            bad(f"hcc_rollout must be one of {list(HCC_ROLLOUTS)}, got {self.hcc_rollout!r}")
        if self.hcc_tau <= 0:
            bad(f"hcc_tau must be > 0, got {self.hcc_tau}")
        if self.cfg_negative not in CFG_NEGATIVES:
            bad(f"cfg_negative must be one of {list(CFG_NEGATIVES)}, got {self.cfg_negative!r}")
        if self.cfg < 0:
            bad(f"cfg must be >= 0, got {self.cfg}")
        if self.vq_phi_count < 1:
            bad("vq_phi_count must be >= 1")
        # what the command-line flags of the same names refuse (argtypes: fraction, nonneg_float,
        # positive_float), so a config.json or an override cannot train on what a flag may not
        for name, ok, what in (("hcc_weight", self.hcc_weight >= 0, ">= 0 (0 turns HCC off)"),
                               ("cond_drop", 0 <= self.cond_drop <= 1, "a probability in [0, 1]"),
                               ("vq_beta", self.vq_beta >= 0, ">= 0"),
                               ("norm_eps", self.norm_eps > 0, "> 0"),
                               ("rope_base", self.rope_base > 0, "> 0")):
            if not ok:
                bad(f"{name} must be {what}, got {_shown(getattr(self, name))}")
        if any(w < 0 for w in self.hcc_scale_weights):
            bad(f"hcc_scale_weights must all be >= 0, got {list(self.hcc_scale_weights)}")
        self._check_degradation(bad)

    def _check_degradation(self, bad: Callable[[str], None]) -> None:
        """The degradation block: values DegradationConfig accepts, at the model's own scale (the
        LR it makes is what the model's LR tile is cut from)."""
        try:
            deg = self.lr_degradation()
        except ConfigError as e:
            bad(f"degradation: {e}")
            return
        if deg.scale != self.scale:
            bad(f"degradation.scale {deg.scale} differs from the model's scale {self.scale}: the LR it "
                f"makes would not fit the model's LR tile; set degradation.scale to {self.scale} or leave it out")

    def lr_degradation(self) -> DegradationConfig:
        """The HR -> LR degradation the model was trained with (the `degradation` block; the default
        recipe where it records none), at the model's scale unless the block names one."""
        d = dict(self.degradation)
        d.setdefault("scale", self.scale)
        return DegradationConfig.from_dict(d)

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["patch_nums"] = list(self.patch_nums)
        d["vq_ch_mult"] = list(self.vq_ch_mult)
        d["lr_encoder_channels"] = list(self.lr_encoder_channels)
        d["hcc_scale_weights"] = list(self.hcc_scale_weights)
        return d

    @classmethod
    def check_keys(cls, d: dict[str, Any], name: str = "custom") -> None:
        """Refuse keys that are not config fields (a typo would otherwise be a raw TypeError)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigValueError(name, unknown[0], f"unknown config keys {unknown}; valid keys: {sorted(known)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlignVARConfig:
        cls.check_keys(d, str(d.get("name", "custom")))
        return cls(**d)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> AlignVARConfig:
        s = str(path_or_text)
        text = s if s.lstrip().startswith("{") else Path(s).read_text()
        try:
            d = jsonsafe.loads(text)
        except ValueError as e:
            raise ConfigError(f"config {path_or_text} is not valid JSON: {e}") from e
        return cls.from_dict(d)

    def replace(self, **changes: Any) -> AlignVARConfig:
        """A copy with `changes`, checked as a config.json is (check_keys, then validate)."""
        self.check_keys(changes, self.name)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> AlignVARConfig:
        if name not in PRESETS:
            raise ConfigError(f"unknown preset '{name}'; choose one of {sorted(PRESETS)}")
        cls.check_keys(overrides, name)
        d = dict(PRESETS[name])
        d.update(overrides)
        return cls(name=name, **d)


def _var_preset(depth: int, hr_size: int) -> dict[str, Any]:
    """A VAR/VARSR-sized model: width 64*depth, heads=depth, VQ-VAE ch160 V4096 z32 x16."""
    return dict(
        hr_size=hr_size,
        patch_nums=PATCH_NUMS_256 if hr_size == 256 else PATCH_NUMS_512,
        vq_ch=160, vq_ch_mult=(1, 1, 2, 2, 4), vq_num_res_blocks=2, vq_norm_groups=32,
        vq_vocab=4096, vq_cvae=32, vq_beta=VAR_VQ_BETA, residual_to_bicubic=False, decoder_lr=False,
        depth=depth, width=64 * depth, heads=depth, lr_embed_ch=256, cfg=0.0,
    )


# The switches that make the network VARSR's (qyp2000/VARSR `VAR_RoPE` with its VQ-VAE).
VARSR_SWITCHES: dict[str, Any] = dict(
    prefix="varsr", rope="varsr", rope_base=10000.0, lr_encoder="controlnet", vq_phi_last=False,
    sca=False, abs_pos=False, residual_to_bicubic=False, decoder_lr=False, cfg=6.0, scale=4, vq_beta=VAR_VQ_BETA)


PRESETS: dict[str, dict[str, Any]] = {
    # Trains on a 2-core CPU in well under an hour; the bundled default uses it.
    "tiny": dict(),
    # An even smaller network for fast tests.
    "micro": dict(hr_size=32, patch_nums=(1, 2, 4, 8), vq_ch=16, vq_ch_mult=(1, 2, 2),
                  vq_norm_groups=8, vq_vocab=64, vq_cvae=8, depth=2, width=32, heads=2,
                  lr_embed_ch=16, vq_phi_count=2),
}
# The next default's recipe (trained in docs/training.md's runs, not shipped yet): a 32 px LR tile
# (128 px SR, 16 x 16 latent), so attention reaches twice as far, with free-running HCC, SCA that
# skips the diagonal, gates noise and cannot freeze its alphas, and image CFG's negative label
# trained on degraded images.
PRESETS["tiny32"] = dict(hr_size=128, patch_nums=(1, 2, 3, 4, 6, 8, 11, 16), hcc_rollout="gumbel",
                         sca_exclude_radius=0, sca_gate=2.0, sca_alpha_param="softplus",
                         cfg_negative="degraded")
for _d in (16, 20, 24):
    PRESETS[f"d{_d}"] = _var_preset(_d, 256)
    PRESETS[f"d{_d}-512"] = _var_preset(_d, 512)
# VARSR as published (its test script: depth 24, VQ-VAE ch160 V4096 z32, 512 px, cfg 6)
PRESETS["varsr-d24"] = {**_var_preset(24, 512), **VARSR_SWITCHES,
                        "lr_encoder_channels": (32, 128, 256, 512, 1536),
                        "refiner_width": 1024, "refiner_depth": 6, "refiner_steps": 10}
