"""Evaluation: SUPERB-protocol probes of frozen upstreams, with MFCC / fbank baselines."""

from armdistill.eval.probe import ProbeConfig, run_probe
from armdistill.eval.upstream import Upstream, load_upstream

__all__ = ["ProbeConfig", "Upstream", "load_upstream", "run_probe"]
