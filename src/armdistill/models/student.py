"""The ARM student: CNN front end, Transformer encoder with attention-map reuse, projection heads.

Reuse itself lives in ``models/attention.py``; this module wires layers together, carrying the
most recent computing layer's attention state to the reusing layers after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from armdistill.checks import check_choice, check_shape
from armdistill.config import ConfigError, to_dict
from armdistill.errors import FileFormatError, MissingFileError, NonFiniteError
from armdistill.finite import nonfinite_names
from armdistill.frames import SAMPLE_RATE, conv_output_lengths, padding_mask
from armdistill.io.hub import resolve_pretrained
from armdistill.models.attention import REUSE_KERNELS, REUSE_MODES, AttentionState, ReuseKernel, ReuseMode
from armdistill.models.config import StudentConfig, preset_config
from armdistill.models.exported import from_hf_names, is_export, read_export
from armdistill.models.frontend import FeatureExtractor
from armdistill.models.layers import EncoderLayer, PositionalConv, scale_grad

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class StudentOutput:
    """hidden_states: encoder input then each layer's output, each ``[batch, frames, dim]``;
    projections: each head's output ``[batch, frames, proj_dim]``, head k reading layer
    ``config.head_layers[k]`` (None without heads);
    attentions: each layer's applied map ``[batch, heads, frames, frames]`` (when asked);
    padding_mask: ``[batch, frames]``, True at padded frames (None without ``lengths``);
    lengths: valid frames per utterance (None without ``lengths``)."""

    hidden_states: tuple[Tensor, ...]
    projections: tuple[Tensor, ...] | None
    attentions: tuple[Tensor, ...] | None
    padding_mask: Tensor | None
    lengths: Tensor | None


class FeatureProjection(nn.Module):
    """LayerNorm over CNN features, then a linear map to the model width when they differ."""

    def __init__(self, conv_dim: int, dim: int, dropout: float):
        super().__init__()
        self.layer_norm = nn.LayerNorm(conv_dim)
        self.projection = nn.Linear(conv_dim, dim) if conv_dim != dim else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer_norm(x)
        if self.projection is not None:
            x = self.projection(x)
        return self.dropout(x)


class Encoder(nn.Module):
    """Positional convolution, LayerNorm and the (reusing) Transformer layers.

    Post-LN applies the encoder LayerNorm before the first layer; pre-LN after the last one.
    """

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.pos_conv_embed = PositionalConv(cfg.dim, cfg.pos_conv_kernel, cfg.pos_conv_groups)
        self.layer_norm = nn.LayerNorm(cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layer_norm_first = cfg.layer_norm_first
        self.layers = nn.ModuleList(
            EncoderLayer(
                cfg.dim, cfg.ffn_dim, cfg.num_heads, computes, cfg.layer_norm_first,
                cfg.dropout, cfg.attention_dropout, cfg.activation_dropout,
            )
            for computes in cfg.reuse_pattern
        )
        n = len(self.layers)
        # The release's per-layer gradient split: the running state keeps m_i of the gradient,
        # the branch that feeds the loss gets (1 - m_i) on top of it.
        self.grad_scales = [(n - i) / (n + 1 - i) for i in range(n)] if cfg.grad_scale else None

    def forward(
        self, x: Tensor, pad: Tensor | None, mode: ReuseMode, need_weights: bool
    ) -> tuple[list[Tensor], list[Tensor]]:
        """x ``[batch, frames, dim]`` -> (encoder input + per-layer outputs, per-layer maps)."""
        if pad is not None:
            x = x.masked_fill(pad[..., None], 0.0)
        x = x + self.pos_conv_embed(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        hidden, maps = [x], []
        state: AttentionState | None = None
        for i, layer in enumerate(self.layers):
            x, new_state, weights = layer(x, pad, mode, state, need_weights)
            state = new_state or state
            branch = x
            if self.grad_scales is not None:
                x = scale_grad(x, self.grad_scales[i])
                branch = scale_grad(x, 1.0 - self.grad_scales[i])
            hidden.append(branch)
            if weights is not None:
                maps.append(weights)
        if self.layer_norm_first:
            # Pre-LN stacks end with the encoder LayerNorm, as fairseq's final output does.
            hidden[-1] = self.layer_norm(hidden[-1])
        return hidden, maps


class Student(nn.Module):
    """A speech SSL student; ``student(wav, lengths, mask)`` -> :class:`StudentOutput`."""

    def __init__(self, config: StudentConfig):
        super().__init__()
        self.config = config
        self.feature_extractor = FeatureExtractor(config.conv_layers, bias=config.conv_bias)
        self.feature_projection = FeatureProjection(config.conv_dim, config.dim, config.feature_dropout)
        self.mask_embedding = nn.Parameter(torch.rand(config.dim))
        self.encoder = Encoder(config)
        self.heads = (
            nn.ModuleList(nn.Linear(config.dim, config.proj_dim) for _ in config.head_layers)
            if config.proj_dim is not None
            else None
        )
        self._init_linear()

    def _init_linear(self) -> None:
        for module in [self.encoder.layers, self.heads]:
            if module is None:
                continue
            for m in module.modules():
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=0.02)
                    nn.init.zeros_(m.bias)

    # -- construction / persistence -------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides) -> "Student":
        return cls(preset_config(name, **overrides))

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors``; refused when any tensor is non-finite."""
        bad = self.nonfinite_tensors()
        if bad:
            raise NonFiniteError(f"{directory}: not written: {len(bad)} tensor(s) hold NaN or inf values ({', '.join(bad[:3])})")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(to_dict(self.config), indent=2) + "\n")
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": "armdistill-student"})

    @classmethod
    def from_pretrained(cls, directory: str | Path, **overrides) -> "Student":
        """Load a directory written by :meth:`save_pretrained` or by ``armdistill export --format hf``
        (JSON + safetensors; no pickle, no remote code), or a Hub id ``org/name[@revision]`` of either."""
        directory = resolve_pretrained(directory, "student")
        cfg_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (cfg_path, weights_path):
            if not path.is_file():
                raise MissingFileError(f"{path}: missing; expected a directory written by save_pretrained")
        try:
            data = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{cfg_path}: not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{cfg_path}: expected a JSON object of student settings, got {type(data).__name__}")
        try:
            if is_export(data):
                data, state = read_export(directory, data, weights_path)
            else:
                state = load_file(str(weights_path))
        except SafetensorError as err:
            raise FileFormatError(f"{directory}: its weights are not readable safetensors ({err})") from None
        try:
            model = cls(StudentConfig.from_dict({**data, **overrides}))
        except ConfigError as err:
            raise ConfigError(f"{cfg_path}: {err}") from None
        expected = model.state_dict()
        problems = [f"missing {k}" for k in expected if k not in state]
        problems += [f"unexpected {k}" for k in state if k not in expected]
        problems += [f"{k}: {tuple(v.shape)} in the file, {tuple(expected[k].shape)} by {CONFIG_NAME}"
                     for k, v in state.items() if k in expected and v.shape != expected[k].shape]
        if problems:
            raise FileFormatError(f"{weights_path}: the weights do not match {cfg_path} ({len(problems)} tensors): "
                                  f"{'; '.join(problems[:3])}")
        model.load_state_dict(state)
        return model

    def nonfinite_tensors(self) -> list[str]:
        """Names of the weights and buffers holding a NaN or an infinity (empty when all are finite)."""
        return nonfinite_names(self.state_dict())

    def init_from_teacher(self, teacher_state: dict[str, Tensor]) -> list[str]:
        """Copy every tensor of a transformers wav2vec2-family state dict whose name and shape
        match ours (our names follow that layout): the CNN, feature projection, positional
        convolution and the first layers, as DistilHuBERT initialises. Returns the copied names."""
        renamed = from_hf_names(teacher_state)
        own = self.state_dict()
        copied = [k for k, v in renamed.items() if k in own and own[k].shape == v.shape]
        self.load_state_dict({k: renamed[k] for k in copied}, strict=False)
        return copied

    # -- properties -----------------------------------------------------------------
    @property
    def reuse_mode(self) -> ReuseMode:
        return self.config.reuse_mode

    @reuse_mode.setter
    def reuse_mode(self, mode: ReuseMode) -> None:
        check_choice("reuse_mode", mode, REUSE_MODES)
        self.config.reuse_mode = mode

    @property
    def frame_rate_hz(self) -> float:
        return SAMPLE_RATE / self.config.downsample

    def num_parameters(self) -> dict[str, int]:
        heads = sum(p.numel() for p in self.heads.parameters()) if self.heads is not None else 0
        total = sum(p.numel() for p in self.parameters())
        return {"params_total": total, "params_backbone": total - heads, "params_heads": heads}

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Valid frames for waveforms of ``lengths`` samples (the conv-length formula)."""
        return conv_output_lengths(lengths, self.feature_extractor.kernels_strides)

    # -- forward ----------------------------------------------------------------------
    def forward(
        self,
        wav: Tensor,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
        output_attentions: bool = False,
        kernel: ReuseKernel = "sdpa",
    ) -> StudentOutput:
        """wav ``[batch, samples]`` (16 kHz); lengths ``[batch]`` valid samples; mask
        ``[batch, frames]`` bool, frames replaced by the learned mask embedding.

        ``kernel`` applies to ``paper`` mode: ``sdpa`` recomputes a reused map inside SDPA,
        ``stored`` keeps each computed map and applies it (the ``explicit`` route; same maths).
        """
        check_shape("wav", wav, ("batch", "samples"))
        check_choice("kernel", kernel, REUSE_KERNELS, error=ValueError)
        mode = "explicit" if kernel == "stored" and self.config.reuse_mode == "paper" else self.config.reuse_mode
        # The release's plain GroupNorm over padding (the table in models/attention.py).
        exact = mode != "release"
        feats, frame_lengths = self.feature_extractor(wav, lengths, exact_padding=exact)
        feats = scale_grad(feats, self.config.feature_grad_mult)
        x = self.feature_projection(feats)
        pad = padding_mask(frame_lengths, x.shape[1]) if frame_lengths is not None else None
        if mask is not None:
            check_shape("mask", mask, x.shape[:2], dtype=torch.bool)
            x = torch.where(mask[..., None], self.mask_embedding.to(x.dtype), x)
        hidden, maps = self.encoder(x, pad, mode, output_attentions)
        projections = None
        if self.heads is not None:
            projections = tuple(head(hidden[i + 1]) for head, i in zip(self.heads, self.config.head_layers))
        return StudentOutput(
            hidden_states=tuple(hidden),
            projections=projections,
            attentions=tuple(maps) if output_attentions else None,
            padding_mask=pad,
            lengths=frame_lengths,
        )
