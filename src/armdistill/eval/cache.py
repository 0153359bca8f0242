"""On-disk cache of frozen-upstream features, one entry per (upstream, manifest content).

An entry is a directory of safetensors shards (``features [layers, frames, dim]`` with the
utterances' frames concatenated, ``lengths [utterances]``) plus ``meta.json``. It is written
under a temporary name and renamed into place, so a half-written entry is never read.

Audio is read with the checks training makes (sample count as the manifest lists it, at least
one frame, decodable to the end, finite). Under ``on_bad_audio="skip"`` an unusable file is left
out and recorded in ``meta.json``; under ``"error"`` it stops extraction, and an entry that
recorded skipped files is refused for the same reason.

Extraction reads the manifest in windows of ``WINDOW`` utterances; a padding-exact upstream
runs each window as length-sorted, zero-padded batches of at most ``batch_seconds`` of padded
audio (others one utterance at a time), and features are stored in manifest order.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from armdistill.checks import check_shape
from armdistill.config import ConfigError
from armdistill.data.audio import AudioFileError, load_audio
from armdistill.data.bad_audio import BadAudioPolicy
from armdistill.data.collate import collate_audio
from armdistill.data.manifest import Manifest, read_manifest
from armdistill.data.sampler import DynamicBatchSampler
from armdistill.errors import DataError, FileFormatError, MissingFileError
from armdistill.eval.upstream import Upstream
from armdistill.frames import MIN_SAMPLES, SAMPLE_RATE
from armdistill.threads import auto_threads, torch_threads

FeatureDtype = Literal["float16", "float32"]
META_NAME = "meta.json"
CACHE_FORMAT = 1
SHARD_BYTES = 256 * 2**20
# utterances held at once: batches are formed within a window, which bounds memory
WINDOW = 64
# padded seconds per extraction batch by device type. On a 2-core CPU, one thread, the shipped
# teacher took 0.18-0.25 s per 2.3 s utterance in 16 s batches, 0.20-0.26 s alone and 0.32-0.36 s
# in 60 s batches (docs/throughput.md); the CUDA value is unmeasured
FEATURE_BATCH_SECONDS = {"cpu": 16.0, "cuda": 240.0}


def default_batch_seconds(device: str | torch.device) -> float:
    """The extraction batch budget for ``device`` (CPU value for unknown types)."""
    return FEATURE_BATCH_SECONDS.get(torch.device(device).type, FEATURE_BATCH_SECONDS["cpu"])


@dataclass
class FeatureSet:
    """features: ``[layers, total_frames, dim]``, utterance ``i`` at frames
    ``offsets[i]:offsets[i] + lengths[i]``; lengths: ``[utterances]`` frames. ``skipped``: manifest
    entries left out as bad audio (entry -> problem); the utterances are the others, in order."""

    features: Tensor
    lengths: Tensor
    layer_names: list[str]
    skipped: dict[int, str] = field(default_factory=dict)

    @property
    def offsets(self) -> Tensor:
        return torch.cumsum(self.lengths, 0) - self.lengths

    @property
    def num_layers(self) -> int:
        return self.features.shape[0]

    @property
    def dim(self) -> int:
        return self.features.shape[2]

    def __len__(self) -> int:
        return self.lengths.shape[0]


def manifest_fingerprint(manifest_path: str | Path) -> str:
    """sha256 over the manifest's text and each audio file's size and modification time, so a
    regenerated corpus with an unchanged manifest is not served stale features."""
    manifest_path = Path(manifest_path)
    manifest = read_manifest(manifest_path)
    digest = hashlib.sha256(manifest_path.read_bytes())
    for i in range(len(manifest)):
        audio = manifest.audio_path(i)
        try:
            stat = audio.stat()
        except FileNotFoundError:
            raise MissingFileError(f"{manifest_path}: audio file {audio} not found") from None
        digest.update(f"{audio}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_key(upstream: Upstream, manifest_path: str | Path, dtype: FeatureDtype) -> str:
    text = f"{CACHE_FORMAT}|{upstream.fingerprint()}|{manifest_fingerprint(manifest_path)}|{dtype}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _load_entry(entry: Path) -> FeatureSet:
    meta = json.loads((entry / META_NAME).read_text())
    shards = [load_file(str(entry / name)) for name in meta["shards"]]
    features = torch.cat([s["features"] for s in shards], dim=1)
    lengths = torch.cat([s["lengths"] for s in shards])
    skipped = {int(i): problem for i, problem in meta.get("skipped", {}).items()}
    if len(lengths) + len(skipped) != meta["num_utterances"]:
        raise FileFormatError(f"{entry}: cache entry holds {len(lengths)} utterances and {len(skipped)} skipped, "
                              f"meta.json says {meta['num_utterances']}")
    return FeatureSet(features=features, lengths=lengths, layer_names=list(meta["layer_names"]), skipped=skipped)


def _write_shard(directory: Path, index: int, chunks: list[Tensor], dtype: torch.dtype) -> str:
    name = f"shard-{index:05d}.safetensors"
    features = torch.cat(chunks, dim=1).to(dtype).contiguous()
    if not torch.isfinite(features).all():
        raise ConfigError(f"feature_dtype: features overflow {dtype} (non-finite values); use feature_dtype float32")
    lengths = torch.tensor([c.shape[1] for c in chunks], dtype=torch.long)
    save_file({"features": features, "lengths": lengths}, str(directory / name))
    return name


def extract_features(upstream: Upstream, wavs: list[Tensor], batch_seconds: float) -> list[Tensor]:
    """Each waveform's ``[layers, frames, dim]``, in order: padding-exact upstreams run on
    length-sorted padded batches of at most ``batch_seconds`` (a longer utterance alone)."""
    if not upstream.padding_exact or len(wavs) < 2:
        return [upstream.extract(wav) for wav in wavs]
    sizes = [len(wav) for wav in wavs]
    budget = max(batch_seconds, max(sizes) / SAMPLE_RATE)
    feats: list[Tensor] = [torch.empty(0)] * len(wavs)
    for batch in DynamicBatchSampler(sizes, budget, SAMPLE_RATE, num_buckets=1, shuffle=False):
        padded = collate_audio([{"index": i, "wav": wavs[i]} for i in batch])
        for i, out in zip(batch, upstream.extract_batch(padded["wav"], padded["lengths"])):
            feats[i] = out
    return feats


def _manifest_features(
    upstream: Upstream, manifest: Manifest, where: str | Path, batch_seconds: float, on_bad_audio: BadAudioPolicy,
    skipped: dict[str, str],
) -> Iterator[tuple[int, Tensor]]:
    """(index, features) of every usable utterance of ``manifest`` in order, extracted a window
    at a time; unusable files raise or, under ``skip``, are recorded in ``skipped``."""
    for start in range(0, len(manifest), WINDOW):
        window, wavs = [], []
        for i in range(start, min(start + WINDOW, len(manifest))):
            try:
                wav = load_audio(manifest.audio_path(i), expected=manifest.num_samples[i], min_samples=MIN_SAMPLES)
            except AudioFileError as err:
                if on_bad_audio == "error":
                    raise err.at(f"{where}:{manifest.line_numbers[i]}") from err
                skipped[str(i)] = err.problem
                continue
            window.append(i)
            wavs.append(torch.from_numpy(wav))
        yield from zip(window, extract_features(upstream, wavs, batch_seconds))


def load_or_extract(
    upstream: Upstream,
    manifest_path: str | Path,
    cache_dir: str | Path,
    dtype: FeatureDtype = "float16",
    progress: bool = False,
    on_bad_audio: BadAudioPolicy = "error",
    batch_seconds: float = FEATURE_BATCH_SECONDS["cpu"],
    threads: int | None = None,
) -> tuple[FeatureSet, bool]:
    """Features of every usable utterance in the manifest, from the cache when present.

    Returns (features, hit); on a miss the upstream runs over the manifest (by
    :func:`extract_features`, with ``threads`` torch threads, None: :func:`auto_threads`) and
    the entry is stored for the next call.
    """
    cache_dir = Path(cache_dir)
    entry = cache_dir / cache_key(upstream, manifest_path, dtype)
    manifest = read_manifest(manifest_path)
    if (entry / META_NAME).is_file():
        feats = _load_entry(entry)
        if feats.skipped and on_bad_audio == "error":
            first = min(feats.skipped)
            where = f"{manifest_path}:{manifest.line_numbers[first]}"
            raise AudioFileError(manifest.audio_path(first), feats.skipped[first], where)
        return feats, True
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=entry.name + ".tmp-", dir=cache_dir))
    torch_dtype = getattr(torch, dtype)
    try:
        shards, chunks, chunk_bytes, dims, skipped = [], [], 0, None, {}
        features = _manifest_features(upstream, manifest, manifest_path, batch_seconds, on_bad_audio, skipped)
        with torch_threads(threads or auto_threads()):
            for i, feats in tqdm(features, total=len(manifest), desc=f"features {upstream.name}", disable=not progress):
                shape = ("layers", "frames", "dim") if dims is None else (dims[0], "frames", dims[1])
                check_shape(f"upstream {upstream.name}, utterance {i}", feats, shape)
                dims = (feats.shape[0], feats.shape[2])
                chunks.append(feats.cpu())
                chunk_bytes += feats.numel() * torch_dtype.itemsize
                if chunk_bytes >= SHARD_BYTES:
                    shards.append(_write_shard(tmp, len(shards), chunks, torch_dtype))
                    chunks, chunk_bytes = [], 0
        if chunks or not shards:
            if not chunks:
                raise DataError(f"{manifest_path}: manifest lists no usable utterances ({len(skipped)} skipped)")
            shards.append(_write_shard(tmp, len(shards), chunks, torch_dtype))
        meta = {
            "format": CACHE_FORMAT, "upstream": upstream.name, "fingerprint": upstream.fingerprint(),
            "manifest": str(Path(manifest_path).resolve()), "num_utterances": len(manifest),
            "num_layers": dims[0], "dim": dims[1], "dtype": dtype, "shards": shards,
            "layer_names": list(upstream.layer_names), "skipped": skipped,
        }
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.rename(tmp, entry)
        except OSError:
            # Another process stored the same entry first; theirs is identical.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _load_entry(entry), False
