"""On-disk cache of frozen-upstream features, one entry per (upstream, manifest content).

An entry is a directory of safetensors shards (``features [layers, frames, dim]`` with the
utterances' frames concatenated, ``lengths [utterances]``) plus ``meta.json``. It is written
under a temporary name and renamed into place, so a half-written entry is never read.

Audio is read with the checks training makes (sample count as the manifest lists it, at least
one frame, decodable to the end, finite). Under ``on_bad_audio="skip"`` an unusable file is left
out and recorded in ``meta.json``; under ``"error"`` it stops extraction, and an entry that
recorded skipped files is refused for the same reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from armdistill.config import ConfigError
from armdistill.data.audio import AudioFileError, load_audio
from armdistill.data.bad_audio import BadAudioPolicy
from armdistill.data.manifest import read_manifest
from armdistill.errors import DataError, FileFormatError, MissingFileError
from armdistill.eval.upstream import Upstream
from armdistill.frames import MIN_SAMPLES

FeatureDtype = Literal["float16", "float32"]
META_NAME = "meta.json"
CACHE_FORMAT = 1
SHARD_BYTES = 256 * 2**20


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


def load_or_extract(
    upstream: Upstream,
    manifest_path: str | Path,
    cache_dir: str | Path,
    dtype: FeatureDtype = "float16",
    progress: bool = False,
    on_bad_audio: BadAudioPolicy = "error",
) -> tuple[FeatureSet, bool]:
    """Features of every usable utterance in the manifest, from the cache when present.

    Returns (features, hit); on a miss the upstream runs once per utterance and the entry is
    stored for the next call.
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
        for i in tqdm(range(len(manifest)), desc=f"features {upstream.name}", disable=not progress):
            try:
                wav = torch.from_numpy(load_audio(manifest.audio_path(i), expected=manifest.num_samples[i],
                                                  min_samples=MIN_SAMPLES))
            except AudioFileError as err:
                if on_bad_audio == "error":
                    raise err.at(f"{manifest_path}:{manifest.line_numbers[i]}") from err
                skipped[str(i)] = err.problem
                continue
            feats = upstream.extract(wav)
            if feats.dim() != 3:
                raise ValueError(f"upstream {upstream.name}: expected [layers, frames, dim], got {tuple(feats.shape)}")
            if dims is not None and (feats.shape[0], feats.shape[2]) != dims:
                raise ValueError(f"upstream {upstream.name}: layer/dim shape changed at utterance {i}")
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
