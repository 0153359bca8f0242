"""armdistill: attention-map reuse and masking distillation for speech SSL models."""
