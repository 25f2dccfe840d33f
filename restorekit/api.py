"""``restorekit.load(spec)``: one restorer object for an export folder, a Hub id or a baseline name.

It runs the same path as ``restorekit restore``: long recordings in chunks (unless the enhancer
chunks itself, as exports do), the export's level policy, and files beyond full scale scaled
down rather than clipped. So a file restored here and by the command line is the same file.

    import restorekit
    restorer = restorekit.load("runs/quickstart/stage3/export")   # or "user/repo", or "deepfilternet3"
    clean, sr = restorer(noisy, 16000)
    restorer.restore_file("noisy.wav", "restored.wav")
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from restorekit import audio
from restorekit.errors import ConfigError


class Restorer:
    """A loaded restorer: ``restorer(wave, sr) -> (wave, sr_out)``, ``enhance_batch``, ``restore_file``.

    ``chunk_seconds`` / ``overlap_seconds`` apply to enhancers that do not chunk long inputs
    themselves (the command line's ``chunk.seconds`` / ``chunk.overlap``).
    """

    def __init__(self, enhancer: Any, source: str, chunk_seconds: float | None = None,
                 overlap_seconds: float | None = None) -> None:
        from restorekit.inference import DEFAULTS

        self.enhancer, self.source = enhancer, source
        self.chunk_seconds = float(chunk_seconds or DEFAULTS["chunk"]["seconds"])
        self.overlap_seconds = float(overlap_seconds or DEFAULTS["chunk"]["overlap"])

    def __repr__(self) -> str:
        return f"Restorer({self.source!r}, {type(self.enhancer).__name__})"

    @property
    def sample_rate(self) -> int | None:
        """The rate the restorer writes (None: the input's rate)."""
        return self.enhancer.sample_rate

    def __call__(self, wave: Any, sr: int) -> tuple[np.ndarray, int]:
        """Restore mono audio ``(T,)`` (numpy or torch) at ``sr`` Hz -> ``(float32 (T'), rate)``."""
        return self.enhance_batch([wave], sr)[0]

    def enhance_batch(self, waves: Sequence[Any], sr: int) -> list[tuple[np.ndarray, int]]:
        """Restore several recordings at ``sr`` Hz; outputs in input order, each its own length."""
        from restorekit.inference import enhance_recordings, fit_full_scale

        items = [(_as_mono(w), sr) for w in waves]
        outputs = enhance_recordings(self.enhancer, items, self.chunk_seconds, self.overlap_seconds)
        return [(fit_full_scale(out)[0], int(out_sr)) for out, out_sr in outputs]

    def with_text(self, text: str) -> Restorer:
        """This restorer for recordings that say ``text``: a Miipher-1 export reads each one's transcript."""
        if not getattr(self.enhancer, "text_conditioned", False):
            raise ConfigError(f"{self.source} does not read a transcript; restore without with_text")
        return Restorer(self.enhancer.with_text(text), self.source, self.chunk_seconds, self.overlap_seconds)

    def restore_file(self, src: str | Path, dst: str | Path, overwrite: bool = False) -> Path:
        """Restore the audio file ``src`` into ``dst`` (format from its suffix); never overwrites ``src``."""
        src, dst = Path(src), Path(dst)
        if dst.resolve() == src.resolve():
            raise ConfigError(f"restore_file: {dst} is the input file; write the restored audio elsewhere")
        wave, sr = audio.load(src)
        out, out_sr = self(wave, sr)
        return audio.save(dst, out, out_sr, overwrite=overwrite)


def _as_mono(wave: Any) -> np.ndarray:
    if hasattr(wave, "detach"):  # a torch tensor
        wave = wave.detach().cpu().numpy()
    return np.asarray(wave, dtype=np.float32)


def load(spec: str | Path, device: str = "cpu", **kwargs: Any) -> Restorer:
    """A restorer for ``spec``: a registered enhancer name (``"deepfilternet3"``, ``"identity"``), an
    export folder, or a Hugging Face Hub id (``"user/repo"``, from the cache when offline). A
    ``mimi_codec`` export gives its codec round trip (``mimi_resynthesis`` at all its codebooks, or
    ``n_q`` in ``kwargs``).

    ``kwargs`` are the enhancer's arguments (``restorekit list enhancers``), e.g. ``seed`` or
    ``output_peak`` for an export; ``device`` applies to exports.
    """
    from restorekit.enhancers import ENHANCERS
    from restorekit.hub import resolve_export

    where = f"restorekit.load({str(spec)!r})"
    if isinstance(spec, str) and spec in ENHANCERS and not Path(spec).exists():
        return Restorer(ENHANCERS.build({"name": spec, "args": kwargs}, where=where), spec)
    folder = resolve_export(spec)
    if (Path(folder) / "codec.safetensors").is_file():  # a mimi_codec export: its round trip is the "restorer"
        node = {"name": "mimi_resynthesis", "args": {"n_q": _codec_levels(folder), **kwargs, "model": str(folder),
                                                     "device": device}}
    else:
        node = {"name": "restorekit", "args": {**kwargs, "path": str(folder), "device": device}}
    return Restorer(ENHANCERS.build(node, where=where), str(spec))


def _codec_levels(folder: str | Path) -> int:
    """The codebooks a mimi_codec export was trained with (mimi's default 8 when its config omits n_q)."""
    from restorekit.models.export import load_config

    codec = load_config(folder).models.get("codec") or {}
    return int((codec.get("args") or {}).get("n_q", 8))


def from_pretrained(spec: str | Path, **kwargs: Any) -> Any:
    """The restorer module (``torch.nn.Module``: ``Miipher2`` or ``WaveRestorer``) of an export folder or Hub id."""
    from restorekit.hub import resolve_export
    from restorekit.models.wave_restorer import restorer_from_export

    return restorer_from_export(resolve_export(spec), **kwargs)
