"""``webdataset_shards``: degraded_speech items streamed from tar shards (webdataset).

For corpora too large to scan: ``write_shards`` (``scripts/make_shards.py``) packs an indexed
folder into tar shards of the original encoded files plus a JSON header each; the dataset
streams them, split across ranks (``RANK``/``WORLD_SIZE`` or torch.distributed) and DataLoader
workers by webdataset, and degrades each item on the fly like ``degraded_speech``.
"""
from __future__ import annotations

import io
import json
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from torch.utils.data import IterableDataset

from restorekit.audio import check_finite, resample
from restorekit.datasets import DATASETS
from restorekit.datasets.base import (
    check_context,
    check_rate,
    check_segment,
    context_item,
    context_offset,
    fit_length,
    make_item,
    pick_offset,
)
from restorekit.datasets.degraded import build_chain
from restorekit.datasets.manifest import read_manifest
from restorekit.errors import AudioError, ConfigError, DataError

AUDIO_KEYS = ("flac", "wav", "ogg", "opus", "mp3")


def shard_key(rel: str) -> str:
    """A webdataset key for a relative path: no suffix, no dots (webdataset splits keys at dots)."""
    stem = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel
    return stem.replace(".", "_")


def write_shards(root: str | Path, out_dir: str | Path, maxcount: int = 1000, maxsize: float = 1e9) -> list[Path]:
    """Pack the indexed audio under ``root`` into ``out_dir/shard-NNNNNN.tar``; returns the shard paths.

    Files are stored as they are (no re-encoding) with a JSON header (path, duration,
    sample_rate, speaker); ``root/metadata.csv`` is built first if absent.
    """
    import webdataset as wds

    manifest = read_manifest(root)
    if len(manifest) == 0:
        raise DataError(f"make_shards: no audio indexed in {manifest.root}; nothing to pack")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    if any(out.glob("shard-*.tar")):
        raise DataError(f"make_shards: {out} already holds shards; choose an empty output folder")
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=maxcount, maxsize=maxsize, verbose=0) as sink:
        for i in range(len(manifest)):
            rel = manifest.path(i)
            header = {"path": rel, "duration": float(manifest.durations[i]),
                      "sample_rate": int(manifest.sample_rates[i])}
            suffix = rel.rsplit(".", 1)[-1].lower()
            sink.write({"__key__": shard_key(rel), suffix: (manifest.root / rel).read_bytes(), "json": header})
    return sorted(out.glob("shard-*.tar"))


def decode_audio(sample: dict[str, Any], sr: int) -> np.ndarray:
    """The sample's audio as mono float32 at ``sr`` Hz (any rate and channel count converted)."""
    key = next((k for k in AUDIO_KEYS if k in sample), None)
    if key is None:
        raise AudioError(f"{sample.get('__key__')} in {sample.get('__url__')}: no audio member "
                         f"(expected one of {', '.join(AUDIO_KEYS)})")
    try:
        data, file_sr = sf.read(io.BytesIO(sample[key]), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{sample['__key__']}.{key} in {sample.get('__url__')}: cannot be decoded ({exc})") from exc
    if data.size == 0:
        raise AudioError(f"{sample['__key__']}.{key} in {sample.get('__url__')}: contains no samples")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    check_finite(wave, f"{sample['__key__']} in {sample.get('__url__')}")
    return resample(wave, file_sr, sr)


@DATASETS.register("webdataset_shards")
class WebDatasetShards(IterableDataset):
    """Clean speech streamed from tar shards, degraded on the fly -> clean/degraded float32 (time,) at sample_rate Hz.

    ``urls``: a brace pattern ('data/shard-{000000..000099}.tar') or a list. Shards are
    split across ranks and workers (give at least ranks x workers shards); training shuffles
    shards per (seed, epoch) and items in a ``shuffle_buffer``; ``validation`` streams in order
    with windows and degradations fixed per item key. Undecodable items are skipped and counted.
    ``context_seconds``/``context_hop_seconds``: FINALLY's context rows, as in degraded_speech
    (items add ``context`` float32 (Tc,) and ``context_offset`` int).
    """

    def __init__(self, urls: str | list[str], sample_rate: int, degradations: dict | None = None,
                 segment_seconds: float | None = 4.0, short: str = "pad", validation: bool = False,
                 seed: int = 0, shuffle_buffer: int = 1000, context_seconds: float | None = None,
                 context_hop_seconds: float | None = 0.016) -> None:
        where = "webdataset_shards"
        self.sample_rate = check_rate(sample_rate, where)
        check_segment(segment_seconds, short, where)
        self.context_seconds = context_seconds
        self.context_hop = check_context(context_seconds, context_hop_seconds, segment_seconds, self.sample_rate, where)
        self.urls = self._expand(urls)
        self.segment_seconds, self.short, self.validation = segment_seconds, short, validation
        self.seed, self.epoch, self.shuffle_buffer = int(seed), 0, int(shuffle_buffer)
        self.chain = build_chain(degradations, f"{where}.degradations")
        self.skipped = 0

    @staticmethod
    def _expand(urls: str | list[str]) -> list[str]:
        import braceexpand

        items = [urls] if isinstance(urls, str) else list(urls or [])
        out = [u for item in items for u in braceexpand.braceexpand(str(item))]
        if not out:
            raise ConfigError("webdataset_shards.urls is empty; give a brace pattern or a list of .tar shards")
        missing = [u for u in out if "://" not in u and not Path(u).expanduser().is_file()]
        if missing:
            raise DataError(f"webdataset_shards: {len(missing)} shard(s) not found, e.g. {missing[0]}; "
                            "check the pattern or build them with scripts/make_shards.py")
        return out

    def set_epoch(self, epoch: int) -> None:
        """A new shard order and new degradations each epoch (training mode)."""
        self.epoch = int(epoch)

    def _shard_order(self) -> list[str]:
        if self.validation:
            return list(self.urls)
        # The same permutation on every rank (seeded by seed and epoch), so the split is disjoint.
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.urls))
        return [self.urls[i] for i in perm]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import webdataset as wds

        stages: list[Any] = [wds.SimpleShardList(self._shard_order()), wds.split_by_node, wds.split_by_worker,
                             wds.tarfile_to_samples()]
        if not self.validation and self.shuffle_buffer > 1:
            stages.append(wds.shuffle(self.shuffle_buffer, seed=self.seed + self.epoch))
        for sample in wds.DataPipeline(*stages):
            item = self._item(sample)
            if item is not None:
                yield item

    def _item(self, sample: dict[str, Any]) -> dict[str, Any] | None:
        from restorekit.augmentations.chain import sample_rng

        try:
            wave = decode_audio(sample, self.sample_rate)
        except AudioError as exc:
            self.skipped += 1
            print(f"warning: webdataset_shards: skipping {exc}", file=sys.stderr)
            return None
        sr, seg = self.sample_rate, self.segment_seconds
        if seg is not None and self.short == "drop" and len(wave) < seg * sr:
            return None
        rng = sample_rng(self.seed, 0 if self.validation else self.epoch, zlib.crc32(sample["__key__"].encode()))
        name = json.loads(sample["json"]).get("path", sample["__key__"]) if "json" in sample else sample["__key__"]
        if self.context_hop is not None:
            return self._context_item(wave, rng, shard_key(name))
        start = int(round(pick_offset(len(wave) / sr, seg, None if self.validation else rng) * sr))
        clean = wave if seg is None else fit_length(wave[start:], int(round(seg * sr)))
        if self.chain is None:
            return make_item(clean, clean.copy(), sr, shard_key(name), [])
        degraded, params = self.chain(clean, sr, rng)
        return make_item(clean, degraded, sr, shard_key(name), params.get("applied", []))

    def _context_item(self, wave: np.ndarray, rng: np.random.Generator, name: str) -> dict[str, Any]:
        """A row of context_seconds, degraded whole; the segment cut from the clean and degraded rows."""
        draw = None if self.validation else rng
        sr = self.sample_rate
        seg_len, row_len = int(round(self.segment_seconds * sr)), int(round(self.context_seconds * sr))
        start = int(round(pick_offset(len(wave) / sr, self.context_seconds, draw) * sr))
        row = wave[start:start + row_len]
        row = fit_length(row, max(len(row), seg_len))
        offset = context_offset(len(row), seg_len, self.context_hop, draw)  # drawn before the chain, as in degraded_speech
        if self.chain is None:
            return context_item(row, row.copy(), offset, seg_len, sr, name, [])
        degraded, params = self.chain(row, sr, rng)
        return context_item(row, degraded, offset, seg_len, sr, name, params.get("applied", []))
