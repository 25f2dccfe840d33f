"""``degraded_speech``: clean speech from indexed folders, cut, resampled and degraded on the fly."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from restorekit.audio import load
from restorekit.datasets import DATASETS
from restorekit.datasets.base import (
    SkipUnreadable,
    check_context,
    check_rate,
    check_roots,
    check_segment,
    context_item,
    context_offset,
    fit_length,
    load_segment,
    make_item,
    pick_offset,
    stem_name,
)
from restorekit.datasets.manifest import Manifest, read_manifest
from restorekit.datasets.text import ItemText
from restorekit.errors import AudioError, DataError


def build_chain(node: Any, where: str) -> Any:
    """The degradation chain a config node selects (None: no degradation, degraded == clean)."""
    if node is None:
        return None
    from restorekit.augmentations import AUGMENTATIONS  # below datasets in the import order

    return AUGMENTATIONS.build(node, where=where)


class CorpusIndex:
    """Rows kept from one or more manifests, as (manifest number, row) arrays: no per-file objects."""

    def __init__(self, manifests: list[Manifest], keep: list[np.ndarray]) -> None:
        self.manifests = manifests
        self.source = np.concatenate([np.full(int(k.sum()), i, dtype=np.int32) for i, k in enumerate(keep)])
        self.row = np.concatenate([np.flatnonzero(k) for k in keep]).astype(np.int64)
        self.durations = np.concatenate([m.durations[k] for m, k in zip(manifests, keep)])

    def __len__(self) -> int:
        return len(self.row)

    def file(self, i: int) -> tuple[Path, str]:
        m = self.manifests[int(self.source[i])]
        return m.root, m.path(int(self.row[i]))

    def subset(self, count: int) -> None:
        """Keep ``count`` rows spread evenly over the corpus (a fixed validation subset)."""
        pick = np.unique(np.linspace(0, len(self) - 1, num=min(count, len(self))).round().astype(np.int64))
        self.source, self.row, self.durations = self.source[pick], self.row[pick], self.durations[pick]


@DATASETS.register("degraded_speech")
class DegradedSpeech(Dataset):
    """Clean speech degraded on the fly -> clean/degraded float32 (time,) at sample_rate Hz, equal length.

    ``roots``: folders, each indexed by a metadata.csv (written on first use if absent).
    Files outside [min_duration, max_duration] s are left out. Each item is a
    ``segment_seconds`` window (null: whole file) resampled to ``sample_rate`` and mono, then
    degraded by the ``degradations`` chain node; ``degradations`` lists what was applied.
    ``short``: clips shorter than a segment are zero-padded (pad) or left out (drop).
    Training draws windows and degradations from (seed, epoch, index); ``validation`` fixes
    them per index (centred window, epoch 0). ``num_items`` keeps an evenly spread subset.

    ``context_seconds`` (FINALLY's WavLM context; null: off): a row that long is read and
    degraded whole (noise, reverb, codec run continuously through it), then the same
    ``segment_seconds`` window is cut from the clean and degraded rows at a random start that
    is a multiple of ``context_hop_seconds`` (0.016 s = 256 samples at 16 kHz; null: any
    sample). Items then also carry ``context`` (the degraded row, float32 (Tc,), Tc <=
    context_seconds * sample_rate, shorter for short files) and ``context_offset`` (int, the
    segment's first sample in it): degraded == context[context_offset:context_offset + T].

    ``transcripts`` (null: off; ``libritts_r``, ``vctk``, ``demo``, ``csv:<path>`` or a dict with
    ``failed_lists``, see restorekit.datasets.text): items also carry ``text`` (str, the whole
    file's transcript, whatever window is cut); files in a failed-restoration list are left out,
    and a file without a transcript is an error naming it (``missing_text: skip`` leaves it out).
    ``phonemes: true`` adds ``phonemes`` (LongTensor (L,), eSpeak NG IPA of the text in
    ``language``, ids in restorekit.text.PHONEME_SYMBOLS).
    """

    def __init__(self, roots: list[str] | str, sample_rate: int, degradations: dict | None = None,
                 segment_seconds: float | None = 4.0, min_duration: float = 0.0, max_duration: float | None = None,
                 short: str = "pad", validation: bool = False, seed: int = 0, num_items: int | None = None,
                 build_manifest: bool = True, context_seconds: float | None = None,
                 context_hop_seconds: float | None = 0.016, transcripts: str | dict | None = None,
                 phonemes: bool = False, language: str = "en-us", missing_text: str = "error") -> None:
        where = "degraded_speech"
        self.text = ItemText(transcripts, phonemes, language, missing_text, where)
        self.sample_rate = check_rate(sample_rate, where)
        check_segment(segment_seconds, short, where)
        self.context_seconds = context_seconds
        self.context_hop = check_context(context_seconds, context_hop_seconds, segment_seconds, self.sample_rate, where)
        self.segment_seconds, self.validation, self.seed, self.epoch = segment_seconds, validation, int(seed), 0
        manifests = [read_manifest(r, build_missing=build_manifest) for r in check_roots(roots, where)]
        self.index = CorpusIndex(manifests, [self._keep(m, min_duration, max_duration, short) for m in manifests])
        if num_items is not None:
            self.index.subset(int(num_items))
        if len(self.index) == 0:
            raise DataError(self._empty_message(manifests, min_duration, max_duration, short))
        self.chain = build_chain(degradations, f"{where}.degradations")
        self.skips = SkipUnreadable(where)

    def _keep(self, m: Manifest, lo: float, hi: float | None, short: str) -> np.ndarray:
        keep = m.durations >= lo
        if hi is not None:
            keep &= m.durations <= hi
        if short == "drop" and self.segment_seconds is not None:
            keep &= m.durations >= self.segment_seconds
        if self.text.active:
            rows = np.flatnonzero(keep)
            keep[rows] = self.text.keep(m.root, [m.path(int(i)) for i in rows])
        return keep

    def _empty_message(self, manifests: list[Manifest], lo: float, hi: float | None, short: str) -> str:
        total = sum(len(m) for m in manifests)
        roots = ", ".join(str(m.root) for m in manifests)
        if total == 0:
            return f"degraded_speech: no audio indexed in {roots}; add audio files and rebuild metadata.csv"
        if self.text.active:
            short = f"{short}, transcripts={self.text.spec!r}, missing_text={self.text.missing_text}"
        return (f"degraded_speech: none of the {total} files in {roots} is within min_duration={lo}, "
                f"max_duration={hi} s (short={short}, segment_seconds={self.segment_seconds}); relax the limits")

    def set_epoch(self, epoch: int) -> None:
        """New windows and degradations each epoch (training mode only)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"degraded_speech has {len(self)} items, asked for {index}")
        # A file that fails (stale metadata.csv, corrupt data) is reported and the next one used.
        for step in range(len(self)):
            j = (index + step) % len(self)
            root, rel = self.index.file(j)
            if self.skips.known_bad(root / rel):
                continue
            try:
                item = self._item(index, j, root, rel)
                item.update(self.text.fields(root, rel))
            except AudioError as exc:
                self.skips.failed(root / rel, exc)
                continue
            self.skips.ok()
            return item
        raise DataError(f"degraded_speech: none of the {len(self)} files could be read ({self.skips.skipped} "
                        "failed); rebuild metadata.csv with scripts/make_metadata_csv.py --root-dir DIR --update")

    def _item(self, index: int, j: int, root: Path, rel: str) -> dict[str, Any]:
        from restorekit.augmentations.chain import sample_rng

        rng = sample_rng(self.seed, 0 if self.validation else self.epoch, index)
        if self.context_hop is not None:
            return self._context_item(rng, j, root, rel)
        offset = pick_offset(float(self.index.durations[j]), self.segment_seconds, None if self.validation else rng)
        clean = load_segment(root / rel, self.sample_rate, offset, self.segment_seconds)
        if self.chain is None:
            return make_item(clean, clean.copy(), self.sample_rate, stem_name(rel), [])
        degraded, params = self.chain(clean, self.sample_rate, rng)
        return make_item(clean, degraded, self.sample_rate, stem_name(rel), params.get("applied", []))

    def _context_item(self, rng: np.random.Generator, j: int, root: Path, rel: str) -> dict[str, Any]:
        """A row of context_seconds, degraded whole; the segment cut from the clean and degraded rows."""
        draw = None if self.validation else rng
        sr, seg_len = self.sample_rate, int(round(self.segment_seconds * self.sample_rate))
        start = pick_offset(float(self.index.durations[j]), self.context_seconds, draw)
        row, _ = load(root / rel, sr=sr, offset=start, duration=self.context_seconds)
        row = row[: int(round(self.context_seconds * sr))]  # resampling may round one sample over
        row = fit_length(row, max(len(row), seg_len))  # a clip shorter than the segment is padded (short: pad)
        offset = context_offset(len(row), seg_len, self.context_hop, draw)  # drawn before the chain: same crop
        applied: list[dict[str, Any]] = []
        degraded = row.copy()
        if self.chain is not None:
            degraded, params = self.chain(row, sr, rng)
            applied = params.get("applied", [])
        return context_item(row, degraded, offset, seg_len, sr, stem_name(rel), applied)
