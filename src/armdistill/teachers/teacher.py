"""A frozen speech SSL teacher around a transformers model, padding-exact and mask-aware.

The CNN front end is run here from the transformers modules' own weights so that GroupNorm
statistics (and waveform normalisation) use each utterance's valid samples only: an utterance
in a padded batch gets the layer outputs it gets alone. The encoder is the transformers one,
called with a frame-level attention mask; layer outputs are collected with forward hooks, so
each is exactly what its layer emits (pre-LN stacks: before the encoder's final LayerNorm).
Attention runs through SDPA by default, WavLM's too (``teachers/attention.py``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel, Wav2Vec2FeatureExtractor

from armdistill.checks import check_shape
from armdistill.errors import FileFormatError, expected
from armdistill.finite import nonfinite_names
from armdistill.frames import conv_output_lengths, masked_group_norm, padding_mask, valid_mask
from armdistill.io.digest import weights_digest
from armdistill.io.hub import resolve_pretrained
from armdistill.teachers.attention import set_attention
from armdistill.teachers.convert import load_original
from armdistill.teachers.model_dir import load_model_dir

PREPROCESSOR_NAME = "preprocessor_config.json"
# fairseq / unilm normalise waveforms with F.layer_norm's default epsilon.
WAVEFORM_EPS = 1e-5


@dataclass
class TeacherOutput:
    """hidden_states: L+1 tensors ``[batch, frames, dim]``: [0] encoder input, [l+1] layer l's output;
    padding_mask: ``[batch, frames]`` True at padding (None without lengths); lengths: valid frames."""

    hidden_states: tuple[Tensor, ...]
    padding_mask: Tensor | None
    lengths: Tensor | None

    @property
    def layers(self) -> tuple[Tensor, ...]:
        return self.hidden_states[1:]


def read_normalize(directory: Path) -> bool:
    """``do_normalize`` of a model directory's ``preprocessor_config.json`` (False when absent)."""
    path = directory / PREPROCESSOR_NAME
    if not path.is_file():
        return False
    try:
        value = json.loads(path.read_text()).get("do_normalize", False)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise FileFormatError(f"{path}: expected a JSON object with a boolean 'do_normalize' ({err})") from None
    if not isinstance(value, bool):
        raise FileFormatError(expected(f"{path}: do_normalize", "true or false", value))
    return value


def normalize_waveform(wav: Tensor, lengths: Tensor | None) -> Tensor:
    """Zero mean, unit variance per utterance over its valid samples; padding set to 0.

    wav: ``[batch, samples]``; lengths: valid samples per utterance.
    """
    if lengths is None:
        return F.layer_norm(wav, wav.shape[-1:], eps=WAVEFORM_EPS)
    valid = valid_mask(lengths, wav.shape[1]).to(wav.dtype)
    count = lengths.to(wav.dtype).clamp(min=1)[:, None]
    mean = (wav * valid).sum(dim=1, keepdim=True) / count
    var = (((wav - mean) * valid) ** 2).sum(dim=1, keepdim=True) / count
    return (wav - mean) * torch.rsqrt(var + WAVEFORM_EPS) * valid


class Teacher(nn.Module):
    """Frozen teacher: ``layer_outputs(wav, lengths, mask)`` -> :class:`TeacherOutput`.

    ``batch_masked``: the masked and unmasked encoder passes run as one batch;
    ``share_front_end``: they share one CNN pass (False runs the CNN for each, as the release did);
    ``sdpa``: self-attention through SDPA, else transformers' eager kernel (same maths).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        normalize: bool = False,
        batch_masked: bool = True,
        share_front_end: bool = True,
        sdpa: bool = True,
    ):
        super().__init__()
        for name in ("feature_extractor", "feature_projection", "encoder"):
            if not hasattr(model, name):
                raise FileFormatError(f"{type(model).__name__} has no {name}: not a wav2vec 2.0-family speech model")
        for i, layer in enumerate(model.feature_extractor.conv_layers):
            if not isinstance(getattr(layer, "conv", None), nn.Conv1d) or not hasattr(layer, "activation"):
                raise FileFormatError(f"{type(model).__name__}: conv layer {i} is not conv -> norm -> activation")
        self.model = model
        model.config.layerdrop = 0.0
        model.requires_grad_(False)
        self.normalize = bool(normalize)
        self.batch_masked = bool(batch_masked)
        self.share_front_end = bool(share_front_end)
        self.sdpa = bool(sdpa)
        set_attention(model, self.sdpa)
        self.kernels_strides = [
            (layer.conv.kernel_size[0], layer.conv.stride[0]) for layer in model.feature_extractor.conv_layers
        ]
        self.downsample = math.prod(stride for _, stride in self.kernels_strides)
        self.num_layers = len(model.encoder.layers)
        self.dim = int(model.config.hidden_size)
        # pre-LN ("stable layer norm": HuBERT/WavLM Large, XLS-R) vs post-LN (Base models, data2vec-audio,
        # whose config has no such flag); decides loss.target_norm "auto"
        self.pre_ln = bool(getattr(model.config, "do_stable_layer_norm", False))
        self.train(False)

    # -- construction / persistence -------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        normalize: bool | None = None,
        batch_masked: bool = True,
        share_front_end: bool = True,
        sdpa: bool = True,
    ) -> "Teacher":
        """A transformers model directory, a fairseq / unilm / s3prl ``.pt`` file, or a Hub id
        ``org/name[@revision]`` of a transformers model.

        ``normalize`` None keeps the checkpoint's own waveform-normalisation flag.
        """
        path = resolve_pretrained(path, "teacher")
        if path.is_dir():
            model, stored = load_model_dir(path), read_normalize(path)
        else:
            model, stored = load_original(path)
        bad = nonfinite_names(model.state_dict())
        if bad:
            raise FileFormatError(f"{path}: {len(bad)} teacher tensors hold NaN or inf values ({', '.join(bad[:3])})")
        try:
            return cls(model, stored if normalize is None else normalize, batch_masked, share_front_end, sdpa)
        except FileFormatError as err:  # a transformers model of another family
            raise FileFormatError(f"{path}: {err}") from None

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the transformers model and a ``preprocessor_config.json`` carrying ``normalize``."""
        directory = Path(directory)
        self.model.save_pretrained(directory)
        Wav2Vec2FeatureExtractor(do_normalize=self.normalize, return_attention_mask=True).save_pretrained(directory)

    def train(self, mode: bool = True) -> "Teacher":
        """Always eval: a teacher's targets must not see dropout or layer drop."""
        return super().train(False)

    def fingerprint(self) -> str:
        """sha256 over every weight's name, dtype, shape and bytes."""
        return weights_digest(self.model)

    # -- forward ---------------------------------------------------------------------
    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Valid frames ``[batch]`` for valid sample counts ``[batch]`` (the student's formula)."""
        return conv_output_lengths(lengths, self.kernels_strides)

    def layer_outputs(self, wav: Tensor, lengths: Tensor | None = None, mask: Tensor | None = None) -> TeacherOutput:
        """wav ``[batch, samples]``, lengths ``[batch]`` samples, mask ``[batch, frames]`` bool ->
        every layer's output; the mask embedding replaces the features at mask frames."""
        with torch.no_grad():
            x, frames, pad = self._front_end(wav, lengths)
            if mask is not None:
                x = self._apply_mask(x, mask)
            return TeacherOutput(self._encode(x, pad), pad, frames)

    def forward(self, wav: Tensor, lengths: Tensor | None = None, mask: Tensor | None = None) -> TeacherOutput:
        return self.layer_outputs(wav, lengths, mask)

    def attention_maps(self, wav: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, ...]:
        """Each layer's attention probabilities ``[batch, heads, frames, frames]`` through the
        padding-exact front end; padded keys get zero weight (rows of padded queries mean nothing).

        transformers returns maps only on its eager attention path, so the model runs on it for
        this call. WavLM's attention returns head-averaged maps: there ``heads`` is 1.
        """
        previous = self.model.config._attn_implementation
        maps: list[Tensor] = []

        def take(module: nn.Module, args: tuple, output: tuple) -> None:
            maps.append(output[1] if output[1].dim() == 4 else output[1][:, None])

        handles = [layer.attention.register_forward_hook(take) for layer in self.model.encoder.layers]
        self.model.set_attn_implementation("eager")
        try:
            with torch.no_grad():
                x, _, pad = self._front_end(wav, lengths)
                self._encode(x, pad)
        finally:
            self.model.set_attn_implementation(previous)
            for handle in handles:
                handle.remove()
        return tuple(maps)

    def masked_and_unmasked(self, wav: Tensor, lengths: Tensor | None, mask: Tensor) -> tuple[TeacherOutput, TeacherOutput]:
        """(masked, unmasked) outputs for masking distillation from one CNN pass (two without
        ``share_front_end``); the encoder runs on both in one batch of ``2 * batch`` when
        ``batch_masked``, else in two passes."""
        with torch.no_grad():
            x, frames, pad = self._front_end(wav, lengths)
            masked = self._apply_mask(x, mask)
            if not self.share_front_end:
                x = self._front_end(wav, lengths)[0]
            if not self.batch_masked:
                return TeacherOutput(self._encode(masked, pad), pad, frames), TeacherOutput(self._encode(x, pad), pad, frames)
            both = self._encode(torch.cat([masked, x]), None if pad is None else pad.repeat(2, 1))
            batch = x.shape[0]
            return (
                TeacherOutput(tuple(h[:batch] for h in both), pad, frames),
                TeacherOutput(tuple(h[batch:] for h in both), pad, frames),
            )

    def _front_end(self, wav: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """wav ``[batch, samples]`` -> (projected features ``[batch, frames, dim]``, valid frames, padding mask)."""
        check_shape("wav", wav, ("batch", "samples"))
        param = next(self.model.parameters())
        wav = wav.to(device=param.device, dtype=param.dtype)
        if lengths is not None:
            lengths = lengths.to(device=wav.device, dtype=torch.long)
            check_shape("lengths", lengths, wav.shape[:1])
            if int(lengths.min()) < 1 or int(lengths.max()) > wav.shape[1]:
                raise ValueError(expected("lengths", f"sample counts in 1..{wav.shape[1]}", lengths.tolist()))
        # Padding-aware statistics only when some row is padded: unpadded input takes the module's own path.
        valid = lengths if lengths is not None and int(lengths.min()) < wav.shape[1] else None
        if self.normalize:
            wav = normalize_waveform(wav, valid)
        x = wav[:, None, :]
        for layer in self.model.feature_extractor.conv_layers:
            x = layer.conv(x)
            if valid is not None:
                valid = conv_output_lengths(valid, [(layer.conv.kernel_size[0], layer.conv.stride[0])])
            norm = getattr(layer, "layer_norm", None)
            if isinstance(norm, nn.GroupNorm):
                x = masked_group_norm(x, valid, norm)
            elif isinstance(norm, nn.LayerNorm):
                x = norm(x.transpose(1, 2)).transpose(1, 2)
            x = layer.activation(x)
        projected = self.model.feature_projection(x.transpose(1, 2))
        if isinstance(projected, tuple):  # wav2vec 2.0 / WavLM also return the normalised CNN features
            projected = projected[0]
        if lengths is None:
            return projected, None, None
        frames = self.frame_lengths(lengths)
        return projected, frames, padding_mask(frames, projected.shape[1])

    def _apply_mask(self, x: Tensor, mask: Tensor) -> Tensor:
        check_shape("mask", mask, x.shape[:2], dtype=torch.bool)
        embed = getattr(self.model, "masked_spec_embed", None)
        if embed is None:
            raise FileFormatError(f"{type(self.model).__name__} has no mask embedding (mask_time_prob is 0 in its config)")
        return torch.where(mask.to(x.device)[..., None], embed.to(x.dtype), x)

    def _encode(self, x: Tensor, pad: Tensor | None) -> tuple[Tensor, ...]:
        """x ``[batch, frames, dim]`` -> (encoder input, each layer's output)."""
        layers = self.model.encoder.layers
        captured: list[Tensor] = []

        def take_input(module: nn.Module, args: tuple, kwargs: dict) -> None:
            captured.append(args[0] if args else kwargs["hidden_states"])

        def take_output(module: nn.Module, args: tuple, output: Tensor | tuple) -> None:
            captured.append(output[0] if isinstance(output, tuple) else output)

        handles = [layers[0].register_forward_pre_hook(take_input, with_kwargs=True)]
        handles += [layer.register_forward_hook(take_output) for layer in layers]
        pos_layers = getattr(self.model.encoder.pos_conv_embed, "layers", None)
        if pad is not None and pos_layers is not None:
            # Stacked positional convs (data2vec) would carry values from padded frames into the
            # last valid ones; zeroing padding between them keeps each utterance as it is alone.
            keep = (~pad)[:, None, :].to(x.dtype)
            handles += [layer.register_forward_hook(lambda m, a, out: out * keep) for layer in pos_layers]
        try:
            self.model.encoder(x, attention_mask=None if pad is None else ~pad)
        finally:
            for handle in handles:
                handle.remove()
        return tuple(captured)
