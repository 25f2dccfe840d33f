"""The ``restorekit`` enhancer: any restorekit export folder, used like a baseline."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from restorekit.enhancers import ENHANCERS
from restorekit.enhancers.base import Enhancer, check_input, fit_length, output_length
from restorekit.errors import ConfigError


def default_batch_size(device: str) -> int:
    """Pieces per forward pass when none is given: 8 on a GPU; 1 on the CPU, where a padded batch of 8
    ran the full-size Miipher-2 1.85x slower than one file at a time (benchmarks/README.md): the
    convolutions already fill the cores, and padding and masks only add work."""
    return 8 if str(device).startswith("cuda") else 1


@ENHANCERS.register("restorekit")
class RestorekitExport(Enhancer):
    """A restorekit export at ``path``: (T,) at any rate -> (T * rate / sr,) at the restorer's rate.

    ``path`` is the ``export/`` folder a trainer wrote (config.yaml + <role>.safetensors): a
    Miipher-2 restorer (24 kHz out), a Miipher-1 restorer (reads each recording's transcript: restore
    through ``with_text(text)``) or a waveform generator (HiFi++ 16 kHz, FINALLY 16 or 48 kHz; a
    mel vocoder re-synthesises its input).
    Inputs longer than ``chunk_seconds`` are restored in chunks overlapping by
    ``overlap_seconds`` (level-matched, cross-faded), so memory is bounded by one chunk.
    ``device`` is a torch device string (``cpu``, ``cuda:0``); ``seed`` fixes WaveFit's noise
    (generators draw none).
    Level: output peak ``output_peak`` whatever the input gain, silent where the input is below
    ``silence_dbfs`` (see ``restorekit.models.miipher2``).
    ``enhance_batch`` restores its recordings together, ``batch_size`` pieces (short files, chunks
    of long ones) per forward pass, each output equal to the one-file call within float rounding;
    null: 8 on CUDA, 1 on the CPU (where batching measured slower, benchmarks/README.md).
    ``precision``: ``bf16`` (autocast) or ``fp32``; null: bf16 on CUDA, fp32 on CPU.
    ``compile``: a Miipher-2 / Miipher-1 export's WaveFit passes through ``torch.compile`` (see
    ``restorekit.models.compiling``: equal output, faster after a first call that compiles).
    """

    chunks_internally = True  # the restorer chunks on feature-frame boundaries itself

    def __init__(
        self,
        path: str,
        chunk_seconds: float = 10.0,
        overlap_seconds: float = 1.0,
        seed: int = 0,
        device: str = "cpu",
        output_peak: float | None = 0.9,
        silence_dbfs: float | None = -70.0,
        batch_size: int | None = None,
        precision: str | None = None,
        compile: bool = False,
    ) -> None:
        from restorekit.models.export import load_config
        from restorekit.models.wave_restorer import restorer_from_export

        self.path = Path(path)
        load_config(self.path)  # a clear error when the folder is not an export
        if batch_size is None:
            batch_size = default_batch_size(device)
        if batch_size < 1:
            raise ConfigError(f"restorekit enhancer: batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        level = {"chunk_seconds": chunk_seconds, "overlap_seconds": overlap_seconds,
                 "output_peak": output_peak, "silence_dbfs": silence_dbfs, "precision": precision}
        is_generator = (self.path / "generator.safetensors").is_file()
        if compile and is_generator:
            raise ConfigError(f"restorekit enhancer: compile=true applies to Miipher-2 / Miipher-1 exports (a WaveFit "
                              f"vocoder); {self.path} holds a waveform generator; set compile=false")
        extra = {} if is_generator else {"seed": seed, "compile": bool(compile)}
        self.restorer = restorer_from_export(self.path, **level, **extra).to(device)
        self.sample_rate = int(self.restorer.sample_rate)

    def enhance(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        return self.restorer.restore(wave, sr)

    def enhance_batch(self, items: list[tuple[np.ndarray, int]]) -> list[tuple[np.ndarray, int]]:
        """The recordings restored together (one ``restore_batch`` per input rate), in input order,
        each checked and trimmed to its exact length as ``__call__`` does."""
        checked = [check_input(wave, sr, type(self).__name__) for wave, sr in items]
        outputs: list[tuple[np.ndarray, int]] = [None] * len(checked)  # type: ignore[list-item]
        for sr in dict.fromkeys(s for _, s in checked):
            index = [i for i, (_, s) in enumerate(checked) if s == sr]
            restored = self.restorer.restore_batch([checked[i][0] for i in index], sr, self.batch_size)
            for i, (out, rate) in zip(index, restored):
                outputs[i] = (fit_length(out, output_length(len(checked[i][0]), sr, rate)), int(rate))
        return outputs

    @property
    def text_conditioned(self) -> bool:
        """True when the export reads each recording's transcript (Miipher-1): use ``with_text``."""
        return bool(getattr(self.restorer, "text_conditioned", False))

    def with_text(self, text: str | None) -> Enhancer:
        """This enhancer restoring recordings that say ``text`` (a Miipher-1 export's transcript)."""
        return _WithText(self, text)


class _WithText(Enhancer):
    """A text-conditioned export bound to one transcript (inference gives each file its own)."""

    chunks_internally = True

    def __init__(self, export: RestorekitExport, text: str | None) -> None:
        self.export, self.text, self.sample_rate = export, text, export.sample_rate

    def enhance(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        return self.export.restorer.restore(wave, sr, text=self.text)
