"""A waveform generator used as a restorer: HiFi++, FINALLY, or a mel vocoder in copy synthesis.

The generator's export (``generator`` role) is all it needs. Input at any rate is resampled
(julius, on the model's device) to the generator's ``input_rate``; a mel vocoder (a generator
with ``features``) re-synthesises the mel of its input, which checks a vocoder, not a restorer.
Long inputs go through overlapping chunks (memory of one chunk), level-matched and cross-faded
at the seams as ``Miipher2.restore`` does, and the output follows the same level policy
(``apply_level_policy``): the CLI, the ``restorekit`` enhancer and ``restorekit.load`` agree.

``restore_batch`` batches only pieces of equal length (chunks of long files, files of one length):
these generators have no padding mask (their convolutions, and FINALLY's WavLM, would read
padding), so padding would change a file's output; unequal pieces run one at a time. Outputs
equal ``restore`` of each file alone within float rounding.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import julius
import numpy as np
import torch
from torch import nn

from restorekit.audio import check_sample_rate
from restorekit.errors import ConfigError
from restorekit.models import MODELS
from restorekit.models.miipher2 import (
    Piece,
    _as_tensor,
    _fit,
    apply_level_policy,
    autocast,
    check_level_args,
    check_precision,
    render_files,
)


@MODELS.register("wave_restorer")
class WaveRestorer(nn.Module):
    """Waveform-generator restorer: wave (T,) at any rate -> (T * sample_rate / sr,) at the generator's rate.

    ``generator``: a config node (or built module) of an audio-to-audio generator (``a2a_hifipp``,
    ``finally``) or a mel vocoder (``hifigan``, ``hifipp``: copy synthesis). Inputs longer than
    ``chunk_seconds`` are restored in chunks overlapping by ``overlap_seconds``. Level: peak
    ``output_peak`` (null: as made), muted where the input is below ``silence_dbfs`` (null: no gate).
    ``precision``: ``bf16`` (autocast) or ``fp32``; null: bf16 on CUDA, fp32 on CPU.
    """

    def __init__(self, generator: Mapping[str, Any] | nn.Module, chunk_seconds: float = 10.0,
                 overlap_seconds: float = 1.0, output_peak: float | None = 0.9,
                 silence_dbfs: float | None = -70.0, precision: str | None = None) -> None:
        super().__init__()
        if not 0 < overlap_seconds < chunk_seconds:
            raise ConfigError(f"wave_restorer: overlap_seconds ({overlap_seconds}) must be > 0 and < "
                              f"chunk_seconds ({chunk_seconds})")
        check_level_args("wave_restorer", output_peak)
        self.precision = check_precision("wave_restorer", precision)
        self.generator = generator if isinstance(generator, nn.Module) else MODELS.build(generator, "models.generator")
        self.chunk_seconds, self.overlap_seconds = float(chunk_seconds), float(overlap_seconds)
        self.output_peak, self.silence_dbfs = output_peak, silence_dbfs
        self.sample_rate = int(self.generator.sample_rate)
        self.input_rate = int(getattr(self.generator, "input_rate", self.sample_rate))
        self.eval()

    @classmethod
    def from_export(cls, directory: str | Path, **kwargs: Any) -> WaveRestorer:
        """A restorer from an export folder holding a ``generator``."""
        from restorekit.models.export import load_export

        return cls(load_export(directory, roles=["generator"])["generator"], **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def restore(self, wave: np.ndarray | torch.Tensor, sr: int) -> tuple[np.ndarray, int]:
        """Restore mono audio (T,) at ``sr`` Hz; returns (float32 (round(T * rate / sr),), rate)."""
        return self.restore_batch([wave], sr, batch_size=1)[0]

    @torch.inference_mode()
    def restore_batch(self, waves: Sequence[np.ndarray | torch.Tensor], sr: int,
                      batch_size: int = 8) -> list[tuple[np.ndarray, int]]:
        """Restore mono files [(T_i,)] at ``sr`` Hz -> [(float32 (round(T_i * rate / sr),), rate)], in order;
        pieces of equal length (chunks of long files) ``batch_size`` at a time, each file as ``restore``."""
        sr = check_sample_rate(sr, "input sample rate")
        xs = [_as_tensor(w).to(self.device) for w in waves]
        chunk, overlap = max(1, round(self.chunk_seconds * sr)), max(1, round(self.overlap_seconds * sr))
        with autocast(self.device, self.precision):
            ys = render_files(lambda pieces: self._render_batch(pieces, sr), xs, self.sample_rate / sr, chunk,
                              overlap, batch_size, equal_lengths=True)
        return [(apply_level_policy(y, x.cpu().numpy(), sr, self.output_peak, self.silence_dbfs), self.sample_rate)
                for y, x in zip(ys, xs)]

    def _render_batch(self, pieces: list[Piece], sr: int) -> list[np.ndarray]:
        x = torch.stack([piece for piece, _, _ in pieces]).float()  # equal lengths: no padding
        if sr != self.input_rate:
            x = julius.resample_frac(x, int(sr), self.input_rate)
        gen = self.generator
        y = gen(gen.features(x)) if hasattr(gen, "features") else gen(x)
        return [_fit(y[i].reshape(-1), n) for i, (_, _, n) in enumerate(pieces)]


def restorer_from_export(directory: str | Path, **kwargs: Any) -> nn.Module:
    """The restorer an export holds: ``Miipher2`` (feature_cleaner + vocoder; ``Miipher1`` when the cleaner is a
    ``miipher1_cleaner``) or ``WaveRestorer`` (generator)."""
    from restorekit.errors import CheckpointError
    from restorekit.models.miipher2 import Miipher2

    roles = {p.stem for p in Path(directory).glob("*.safetensors")}
    if {"feature_cleaner", "vocoder"} <= roles:
        from restorekit.models.export import load_config
        from restorekit.models.miipher1 import Miipher1

        miipher1 = load_config(directory).models.feature_cleaner.name == "miipher1_cleaner"  # reads a transcript
        return (Miipher1 if miipher1 else Miipher2).from_export(directory, **kwargs)
    if "generator" in roles:
        return WaveRestorer.from_export(directory, **kwargs)
    raise CheckpointError(
        f"{directory}: this export holds {sorted(roles) or 'no weights'}, which make no restorer; restorers are "
        "the exports of miipher2_vocoder_finetune (feature_cleaner + vocoder) and of the waveform-generator "
        "stages (generator: hifigan, hifipp, finally_*); a stage-1 or stage-2 Miipher-2 export is not one"
        + ("; a mimi_codec export (codec) round-trips through the mimi_resynthesis enhancer or restorekit.load"
           if "codec" in roles else "")
    )
