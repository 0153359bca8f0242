"""Checkpoint key converters in one rule style: each key matches exactly one rule.

A rule is a full-match pattern on the source key and the template of our name (``re``
backreferences), or None to drop the key. A key that matches no rule is refused, so nothing
unknown is loaded silently; a key that matches two rules is a bug in the table.

``FAIRSEQ_LAYOUT`` holds what fairseq's wav2vec 2.0 family (HuBERT, wav2vec 2.0, unilm WavLM,
the released ARM students) shares: its module names against transformers', which the student
follows too. Teachers (``teachers/convert.py``) and released students (``models/release.py``)
add their own rules to it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from armdistill.errors import FileFormatError

Rule = tuple[str, str | None]  # (pattern, template or None to drop)

# The positional convolution's weight norm: fairseq's weight_g / weight_v (or the same tensors
# under torch's parametrization names) are the magnitude and direction, original0 / original1.
WEIGHT_NORM: list[Rule] = [
    # encoder.pos_conv.0.weight_g -> encoder.pos_conv_embed.conv.parametrizations.weight.original0
    (r"encoder\.pos_conv\.0\.(?:weight_g|parametrizations\.weight\.original0)",
     "encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    # encoder.pos_conv.0.weight_v -> encoder.pos_conv_embed.conv.parametrizations.weight.original1
    (r"encoder\.pos_conv\.0\.(?:weight_v|parametrizations\.weight\.original1)",
     "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    # encoder.pos_conv.0.bias -> encoder.pos_conv_embed.conv.bias
    (r"encoder\.pos_conv\.0\.bias", "encoder.pos_conv_embed.conv.bias"),
]

FAIRSEQ_LAYOUT: list[Rule] = WEIGHT_NORM + [
    # feature_extractor.conv_layers.3.0.weight -> feature_extractor.conv_layers.3.conv.weight
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    # feature_extractor.conv_layers.0.2.weight -> feature_extractor.conv_layers.0.layer_norm.weight
    # (GroupNorm at index 2; layer-norm CNNs wrap it: conv_layers.3.2.1.weight, TransposeLast around it)
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.(?:1\.)?(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    # layer_norm.weight -> feature_projection.layer_norm.weight
    (r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    # post_extract_proj.weight -> feature_projection.projection.weight
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    # encoder.layer_norm.weight -> encoder.layer_norm.weight
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    # encoder.layers.3.self_attn.k_proj.weight -> encoder.layers.3.attention.k_proj.weight
    (r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)", r"encoder.layers.\1.attention.\2_proj.\3"),
    # encoder.layers.3.self_attn_layer_norm.weight -> encoder.layers.3.layer_norm.weight
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    # encoder.layers.3.fc1.weight -> encoder.layers.3.feed_forward.intermediate_dense.weight
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    # encoder.layers.3.fc2.weight -> encoder.layers.3.feed_forward.output_dense.weight
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    # encoder.layers.3.final_layer_norm.weight -> encoder.layers.3.final_layer_norm.weight
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
]


class KeyMap:
    """Renames the keys of one kind of checkpoint (``what`` names it in errors)."""

    def __init__(self, what: str, rules: Sequence[Rule]):
        self.what = what
        self.rules = [(re.compile(pattern), template) for pattern, template in rules]

    def rename(self, key: str) -> str | None:
        """Our name for ``key``; None for a key the rules drop."""
        hits = [(match, template) for pattern, template in self.rules if (match := pattern.fullmatch(key))]
        if not hits:
            raise FileFormatError(f"unrecognised key in the {self.what}: {key!r}")
        if len(hits) > 1:
            raise RuntimeError(f"{self.what}: key {key!r} matches {len(hits)} rules: {[m.re.pattern for m, _ in hits]}")
        match, template = hits[0]
        return None if template is None else match.expand(template)
