"""Our teachers' layer outputs against the transformers model they wrap, in any transformers
version the project supports (4.46+ and 5)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def max_diff(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    assert len(a) == len(b)
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def assert_matches_transformers(states: Sequence[torch.Tensor], expected, reference: torch.nn.Module,
                                atol: float = 1e-5) -> None:
    """``states`` (encoder input + every layer's output) against ``reference``'s output with
    ``output_hidden_states=True``. For pre-LN stacks transformers 4 returns the last hidden state
    after the encoder's final LayerNorm, transformers 5 before it; ours is the layer's output as
    emitted. So every state but the last must equal transformers' own, and the last, with that
    LayerNorm applied for pre-LN stacks, must equal ``last_hidden_state`` (the same in both)."""
    assert len(states) == len(expected.hidden_states)
    assert max_diff(states[:-1], expected.hidden_states[:-1]) < atol
    last = states[-1]
    if reference.config.do_stable_layer_norm:
        assert (last - expected.last_hidden_state).abs().max() > 1e-2
        with torch.no_grad():
            last = reference.encoder.layer_norm(last)
    assert max_diff([last], [expected.last_hidden_state]) < atol
