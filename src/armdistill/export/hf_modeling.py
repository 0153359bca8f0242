"""transformers classes around the student (``modeling_armdistill.py`` of an export).

``ArmdistillModel`` is our :class:`Student` without its projection heads, fed as transformers
speech models are (``input_values`` ``[batch, samples]``, ``attention_mask`` ``[batch, samples]``
with 1 at valid samples); its ``hidden_states`` are the student's own, padding-exact: an
utterance in a padded batch gets what it gets alone. ``ArmdistillForCTC`` and
``ArmdistillForSequenceClassification`` add the heads, losses and fine-tuning behaviour of
transformers' ``HubertForCTC`` / ``HubertForSequenceClassification``, so the same recipes run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutput, ModelOutput, SequenceClassifierOutput
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

from armdistill.errors import expected
from armdistill.export.hf_configuration import ArmdistillConfig
from armdistill.frames import valid_mask
from armdistill.models.config import StudentConfig
from armdistill.models.export_layout import STUDENT_KEY
from armdistill.models.exported import transformers_config
from armdistill.models.student import Student


class ArmdistillPreTrainedModel(PreTrainedModel):
    config_class = ArmdistillConfig
    base_model_prefix = "armdistill"
    main_input_name = "input_values"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        # Only what an export does not hold is ever initialised here: the task heads (the
        # student's own linear init) and the layer weights of a weighted layer sum.
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, std=0.02)
            init.zeros_(module.bias)
        elif isinstance(module, ArmdistillForSequenceClassification) and module.layer_weights is not None:
            init.constant_(module.layer_weights, 1.0 / (self.config.num_hidden_layers + 1))


class ArmdistillModel(ArmdistillPreTrainedModel):
    def __init__(self, config: ArmdistillConfig):
        super().__init__(config)
        self.student = Student(transformers_config(StudentConfig.from_dict(getattr(config, STUDENT_KEY))))
        self.post_init()

    def frame_lengths(self, input_values: Tensor, attention_mask: Tensor | None) -> Tensor | None:
        """Valid frames ``[batch]`` (None without ``attention_mask``)."""
        if attention_mask is None:
            return None
        return self.student.frame_lengths(attention_mask.sum(-1).long())

    def _time_mask(self, input_values: Tensor, attention_mask: Tensor | None) -> Tensor | None:
        """SpecAugment-style time masking while fine-tuning, as transformers' HuBERT applies it."""
        cfg = self.config
        if not (self.training and cfg.apply_spec_augment and cfg.mask_time_prob > 0):
            return None
        batch, samples = input_values.shape
        frames = int(self.student.frame_lengths(torch.tensor([samples]))[0])
        lengths = self.frame_lengths(input_values, attention_mask)
        valid = None if lengths is None else valid_mask(lengths, frames).long()
        mask = _compute_mask_indices((batch, frames), cfg.mask_time_prob, cfg.mask_time_length, valid,
                                     min_masks=cfg.mask_time_min_masks)
        return torch.from_numpy(mask).to(input_values.device)

    def forward(
        self,
        input_values: Tensor,
        attention_mask: Tensor | None = None,
        mask_time_indices: Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutput | tuple:
        """``hidden_states``: the encoder input and each layer's output ``[batch, frames, dim]``."""
        lengths = None if attention_mask is None else attention_mask.sum(-1).long()
        if mask_time_indices is None:
            mask_time_indices = self._time_mask(input_values, attention_mask)
        out = self.student(input_values, lengths, mask_time_indices, output_attentions=bool(output_attentions))
        keep_hidden = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        result = BaseModelOutput(
            last_hidden_state=out.hidden_states[-1],
            hidden_states=out.hidden_states if keep_hidden else None,
            attentions=out.attentions,
        )
        return result.to_tuple() if return_dict is False else result


class _ArmdistillWithHead(ArmdistillPreTrainedModel):
    """The student with a task head: ``forward`` -> (loss when ``labels`` are given, logits)."""

    output_class: type[ModelOutput]

    def __init__(self, config: ArmdistillConfig):
        super().__init__(config)
        self.armdistill = ArmdistillModel(config)

    def freeze_feature_encoder(self) -> None:
        self.armdistill.student.feature_extractor.requires_grad_(False)

    @property
    def reads_every_layer(self) -> bool:
        return False

    def head(self, outputs: BaseModelOutput, frames: Tensor | None, labels: Tensor | None) -> tuple[Tensor | None, Tensor]:
        """(loss, logits) from the encoder's outputs; ``frames``: valid frames (None: all)."""
        raise NotImplementedError

    def forward(
        self,
        input_values: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ModelOutput | tuple:
        hidden = output_hidden_states or self.reads_every_layer
        outputs = self.armdistill(input_values, attention_mask, None, output_attentions, hidden)
        loss, logits = self.head(outputs, self.armdistill.frame_lengths(input_values, attention_mask), labels)
        result = self.output_class(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                   attentions=outputs.attentions)
        return result.to_tuple() if return_dict is False else result


class ArmdistillForCTC(_ArmdistillWithHead):
    """labels ``[batch, target]``: token ids, padded with -100 (or the blank, ``pad_token_id``)."""

    output_class = CausalLMOutput

    def __init__(self, config: ArmdistillConfig):
        super().__init__(config)
        self.dropout = nn.Dropout(config.final_dropout)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def head(self, outputs: BaseModelOutput, frames: Tensor | None, labels: Tensor | None) -> tuple[Tensor | None, Tensor]:
        logits = self.lm_head(self.dropout(outputs.last_hidden_state))
        if labels is None:
            return None, logits
        if labels.max() >= self.config.vocab_size:
            raise ValueError(expected("labels", f"token ids below vocab_size={self.config.vocab_size}", int(labels.max())))
        if frames is None:
            frames = torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long, device=logits.device)
        blank = self.config.pad_token_id
        keep = (labels >= 0) & (labels != blank)
        log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
        with torch.backends.cudnn.flags(enabled=False):
            loss = F.ctc_loss(log_probs, labels.masked_select(keep), frames, keep.sum(-1), blank=blank,
                              reduction=self.config.ctc_loss_reduction, zero_infinity=self.config.ctc_zero_infinity)
        return loss, logits


class ArmdistillForSequenceClassification(_ArmdistillWithHead):
    """labels ``[batch]``: class ids; the projected frames are mean-pooled over valid frames."""

    output_class = SequenceClassifierOutput

    def __init__(self, config: ArmdistillConfig):
        super().__init__(config)
        layers = config.num_hidden_layers + 1  # the encoder input and each layer
        self.layer_weights = nn.Parameter(torch.ones(layers) / layers) if config.use_weighted_layer_sum else None
        self.projector = nn.Linear(config.hidden_size, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)
        self.post_init()

    @property
    def reads_every_layer(self) -> bool:
        return self.layer_weights is not None

    def head(self, outputs: BaseModelOutput, frames: Tensor | None, labels: Tensor | None) -> tuple[Tensor | None, Tensor]:
        if self.layer_weights is not None:
            stacked = torch.stack(outputs.hidden_states, dim=1)  # [batch, layers, frames, dim]
            x = (stacked * F.softmax(self.layer_weights, dim=-1)[:, None, None]).sum(dim=1)
        else:
            x = outputs.last_hidden_state
        x = self.projector(x)
        if frames is None:
            pooled = x.mean(dim=1)
        else:
            valid = valid_mask(frames, x.shape[1]).to(x.dtype)[..., None]
            pooled = (x * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)
        logits = self.classifier(pooled)
        loss = None if labels is None else F.cross_entropy(logits.view(-1, self.config.num_labels), labels.view(-1))
        return loss, logits
