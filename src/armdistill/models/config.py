"""Student configuration and presets (the paper's students and small ones for tests/demo)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from armdistill.checks import check_choice, check_range
from armdistill.config import ConfigError, from_dict
from armdistill.errors import expected
from armdistill.frames import WAV2VEC2_KERNELS_STRIDES
from armdistill.models.attention import REUSE_MODES, ReuseMode

ConvSpec = tuple[int, int, int]  # (channels, kernel, stride)
# wav2vec 2.0 / HuBERT Base's CNN: 512 channels throughout
WAV2VEC2_CNN: list[ConvSpec] = [(512, kernel, stride) for kernel, stride in WAV2VEC2_KERNELS_STRIDES]


@dataclass
class StudentConfig:
    """Everything that defines a student's shape and behaviour.

    ``reuse_pattern[i]`` is True when layer ``i`` computes its own attention map and False when
    it reuses the map of the most recent computing layer (and so has no query/key projections).
    An empty pattern means every layer computes attention.

    ``feature_grad_mult`` scales the gradient reaching the CNN front end (fairseq's
    ``feature_grad_mult``; DistilHuBERT uses 0.1).

    ``head_inputs[k]`` is the layer whose output head ``k`` reads (0-based); None gives one head
    per layer (head k reads layer k), as the paper's students. DistilHuBERT's prediction heads
    all read the last layer: ``[L-1, L-1, L-1]``.
    """

    conv_layers: list[ConvSpec] = field(default_factory=list)
    conv_bias: bool = False
    dim: int = 480
    ffn_dim: int = 864
    num_heads: int = 12
    num_layers: int = 12
    reuse_pattern: list[bool] = field(default_factory=list)
    layer_norm_first: bool = False
    feature_dropout: float = 0.05
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.1
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    proj_dim: int | None = 768
    head_inputs: list[int] | None = None
    grad_scale: bool = False
    feature_grad_mult: float = 1.0
    reuse_mode: ReuseMode = "paper"

    @property
    def conv_dim(self) -> int:
        return self.conv_layers[-1][0]

    @property
    def downsample(self) -> int:
        rate = 1
        for _, _, stride in self.conv_layers:
            rate *= stride
        return rate

    def __post_init__(self) -> None:
        self.conv_layers = [tuple(int(v) for v in spec) for spec in self.conv_layers]
        self.reuse_pattern = [bool(v) for v in self.reuse_pattern]
        if not self.conv_layers:
            raise ConfigError(expected("conv_layers", "at least one (channels, kernel, stride) layer", self.conv_layers))
        for i, spec in enumerate(self.conv_layers):
            if len(spec) != 3 or min(spec) < 1:
                raise ConfigError(f"conv_layers[{i}]: expected positive (channels, kernel, stride), got {spec}")
        check_range("num_layers", self.num_layers, ge=1)
        if not self.reuse_pattern:
            self.reuse_pattern = [True] * self.num_layers
        if len(self.reuse_pattern) != self.num_layers:
            what = f"one entry per layer (num_layers={self.num_layers})"
            raise ConfigError(expected("reuse_pattern", what, self.reuse_pattern))
        if not self.reuse_pattern[0]:
            raise ConfigError(expected("reuse_pattern[0]", "True (the first layer computes attention)", self.reuse_pattern[0]))
        check_range("num_heads", self.num_heads, ge=1)
        if self.dim < 1 or self.dim % self.num_heads:
            raise ConfigError(expected("dim", f"a positive multiple of num_heads={self.num_heads}", self.dim))
        check_range("ffn_dim", self.ffn_dim, ge=1)
        if self.dim % self.pos_conv_groups:
            raise ConfigError(expected("pos_conv_groups", f"a divisor of dim={self.dim}", self.pos_conv_groups))
        check_range("pos_conv_kernel", self.pos_conv_kernel, ge=2)
        for name in ("feature_dropout", "dropout", "attention_dropout", "activation_dropout"):
            check_range(name, getattr(self, name), ge=0, lt=1)
        check_range("proj_dim", self.proj_dim, ge=1, null=True)
        if self.head_inputs is not None:
            self.head_inputs = [int(i) for i in self.head_inputs]
            bad = [i for i in self.head_inputs if not 0 <= i < self.num_layers]
            if bad or not self.head_inputs or self.proj_dim is None:
                raise ConfigError(
                    f"head_inputs: expected layer indices in [0, {self.num_layers}) and proj_dim set, got {self.head_inputs}"
                )
        check_range("feature_grad_mult", self.feature_grad_mult, ge=0, le=1)
        check_choice("reuse_mode", self.reuse_mode, REUSE_MODES)

    @property
    def head_layers(self) -> list[int]:
        """The layer each projection head reads (empty without heads)."""
        if self.proj_dim is None:
            return []
        return list(self.head_inputs) if self.head_inputs is not None else list(range(self.num_layers))

    @classmethod
    def from_dict(cls, data: dict) -> "StudentConfig":
        return from_dict(cls, data)

    def replace(self, **overrides) -> "StudentConfig":
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown config key {unknown[0]!r}")
        return dataclasses.replace(self, **overrides)


def _release_cnn(dim: int) -> list[ConvSpec]:
    return [(128, 10, 5), (256, 1, 1)] + [(256, 3, 2)] * 4 + [(dim, 1, 1)] + [(dim, 2, 2)] * 2


_ALTERNATE_12 = [True, False] * 6

PRESETS: dict[str, StudentConfig] = {
    "armhubert": StudentConfig(
        conv_layers=_release_cnn(480), dim=480, ffn_dim=864, reuse_pattern=_ALTERNATE_12, grad_scale=True
    ),
    "armhubert-s": StudentConfig(
        conv_layers=_release_cnn(432), dim=432, ffn_dim=816, reuse_pattern=_ALTERNATE_12, grad_scale=True
    ),
    "armwavlm-s": StudentConfig(
        conv_layers=_release_cnn(432), dim=432, ffn_dim=816, reuse_pattern=_ALTERNATE_12, grad_scale=True
    ),
    "maskhubert": StudentConfig(
        conv_layers=_release_cnn(480), dim=480, ffn_dim=640, grad_scale=False
    ),
    # DistilHuBERT (Chang et al., 2022): HuBERT Base's CNN, 2 layers of 768, three prediction heads
    # on the last layer for teacher layers 4/8/12; initialised from the teacher's first layers.
    "distilhubert": StudentConfig(
        conv_layers=WAV2VEC2_CNN, dim=768, ffn_dim=3072,
        num_heads=12, num_layers=2, proj_dim=768, head_inputs=[1, 1, 1], feature_dropout=0.1,
        feature_grad_mult=0.1,
    ),
    # Small students for tests and the CPU demo: same structure, total stride 320 (50 Hz).
    "tiny-arm": StudentConfig(
        conv_layers=[(64, 10, 5), (128, 3, 2), (128, 3, 2), (128, 3, 2), (128, 3, 2), (128, 2, 2), (128, 2, 2)],
        dim=128, ffn_dim=256, num_heads=4, num_layers=4, reuse_pattern=[True, False] * 2, pos_conv_kernel=32,
        pos_conv_groups=8, proj_dim=256, grad_scale=True,
    ),
    "tiny-mask": StudentConfig(
        conv_layers=[(64, 10, 5), (128, 3, 2), (128, 3, 2), (128, 3, 2), (128, 3, 2), (128, 2, 2), (128, 2, 2)],
        dim=128, ffn_dim=256, num_heads=4, num_layers=4, pos_conv_kernel=32,
        pos_conv_groups=8, proj_dim=256, grad_scale=False,
    ),
}


def preset_config(name: str, **overrides) -> StudentConfig:
    check_choice("preset", name, sorted(PRESETS))
    return PRESETS[name].replace(**overrides)
