"""``armdistill demo``: the whole method at CPU scale on synthetic speech, and its ablation."""
