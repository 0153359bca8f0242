"""The transformers configuration of an exported ARM student (``configuration_armdistill.py``).

The student is described by its ``armdistill_student`` entry (our StudentConfig as a dict), which
transformers keeps as an attribute. The other fields are those transformers' speech models and
fine-tuning recipes read, with ``HubertConfig``'s defaults: the CTC head and loss, the
classification head, SpecAugment-style time masking during fine-tuning.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from armdistill.models.export_layout import REMOTE_MODEL_TYPE


class ArmdistillConfig(PretrainedConfig):
    model_type = REMOTE_MODEL_TYPE

    def __init__(
        self,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        vocab_size: int = 32,
        final_dropout: float = 0.1,
        apply_spec_augment: bool = True,
        mask_time_prob: float = 0.05,
        mask_time_length: int = 10,
        mask_time_min_masks: int = 2,
        ctc_loss_reduction: str = "sum",
        ctc_zero_infinity: bool = False,
        use_weighted_layer_sum: bool = False,
        classifier_proj_size: int = 256,
        pad_token_id: int = 0,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        **kwargs,
    ):
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.vocab_size = vocab_size
        self.final_dropout = final_dropout
        self.apply_spec_augment = apply_spec_augment
        self.mask_time_prob = mask_time_prob
        self.mask_time_length = mask_time_length
        self.mask_time_min_masks = mask_time_min_masks
        self.ctc_loss_reduction = ctc_loss_reduction
        self.ctc_zero_infinity = ctc_zero_infinity
        self.use_weighted_layer_sum = use_weighted_layer_sum
        self.classifier_proj_size = classifier_proj_size
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs)
