"""Masking distillation: the span mask sampler (``masking``) and the distillation losses (``losses``)."""
