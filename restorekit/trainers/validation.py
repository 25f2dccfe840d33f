"""Validation: synthesize the validation set, score it with the configured metrics, log it.

Scalars go to every logger (the console included); a few audio samples and spectrogram
images go to loggers that store them (wandb). Runs on rank 0 only.
"""
from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from restorekit.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from restorekit.trainers.base import BaseTrainer


class Validator:
    """Holds the validation loader and metrics of a trainer; ``run(step)`` logs and returns scalars."""

    def __init__(self, trainer: BaseTrainer) -> None:
        self.trainer = trainer
        self.loader = self._build_loader() if trainer.is_main else None
        self.metrics = self._build_metrics() if trainer.is_main else {}

    def _build_loader(self) -> torch.utils.data.DataLoader | None:
        from restorekit.datasets.collate import collate

        data = self.trainer.cfg.get("data") or {}
        node = data.get("valid")
        if node is None:
            return None
        dataset = self.trainer.build_dataset(node, "data.valid", validation=True)
        limit = int(self.trainer.args.max_valid_items)
        if limit and len(dataset) > limit:
            dataset = torch.utils.data.Subset(dataset, range(limit))
        # batch 1: validation items have different lengths and no padding should be scored
        return torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False, collate_fn=collate)

    def _build_metrics(self) -> dict[str, Any]:
        nodes = self.trainer.cfg.get("metrics") or []
        if not nodes:
            return {}
        from restorekit.metrics import METRICS

        if not isinstance(nodes, (list, tuple)) and not hasattr(nodes, "__len__"):
            raise ConfigError("metrics must be a list of {name, args} nodes")
        return {str(n["name"]): METRICS.build(n, where=f"metrics[{i}]") for i, n in enumerate(nodes)}

    def run(self, step: int) -> dict[str, float]:
        if self.loader is None:
            return {}
        from tqdm import tqdm

        sums: dict[str, list[float]] = defaultdict(list)
        failures: dict[str, int] = defaultdict(int)
        bar = tqdm(self.loader, desc=f"validation @ {step}", leave=False, dynamic_ncols=True)
        with torch.no_grad():
            for i, batch in enumerate(bar):
                batch = self.trainer.to_device(batch)
                for k, v in self.trainer.valid_losses(batch).items():
                    sums[f"valid/{k}"].append(float(v))
                made = self.trainer.synthesize(batch)
                if made is not None:
                    self._score(batch, made, sums, failures, log_media=i < self.trainer.args.num_audio_samples, step=step)
        scalars = {k: float(np.mean(v)) for k, v in sums.items() if v}
        scalars.update({f"metric_failures/{k}": float(n) for k, n in failures.items()})
        self.trainer.logger.log_scalars(scalars, step)
        return scalars

    def _score(self, batch: dict[str, Any], made: tuple[torch.Tensor, int], sums: dict, failures: dict,
               log_media: bool, step: int) -> None:
        from restorekit.audio import resample

        wave, sr = made
        in_sr = int(batch["sr"])
        n_in = int(batch["lengths"][0]) if "lengths" in batch else batch["degraded"].shape[-1]
        estimate = wave[0, : int(round(n_in * sr / in_sr))].float().cpu().numpy()
        reference = None
        if "clean" in batch:
            reference = batch["clean"][0, :n_in].float().cpu().numpy()
            reference = resample(reference, in_sr, sr) if in_sr != sr else reference
            n = min(len(reference), len(estimate))
            estimate, reference = estimate[:n], reference[:n]
        for name, metric in self.metrics.items():
            self._apply(name, metric, estimate, sr, reference, sums, failures)
        if log_media:
            self._log_media(batch["names"][0], estimate, sr, step)

    def _apply(self, name: str, metric: Any, estimate: np.ndarray, sr: int, reference: np.ndarray | None,
               sums: dict, failures: dict) -> None:
        from restorekit.metrics.base import MetricFailure

        if getattr(metric, "needs_reference", False) and reference is None:
            failures[name] += 1
            return
        try:
            values = metric(estimate, sr, reference)
        except MetricFailure:
            failures[name] += 1  # recorded, never replaced by an invented value
            return
        for k, v in values.items():
            sums[f"metric/{k}"].append(float(v))

    def _log_media(self, name: str, wave: np.ndarray, sr: int, step: int) -> None:
        logger = self.trainer.logger
        key = f"audio/{name}"
        logger.log_audio(key, np.clip(wave, -1.0, 1.0).astype(np.float32), sr, step)
        if _wants_images(logger):
            logger.log_image(f"spectrogram/{name}", spectrogram_image(wave, sr), step)


def _wants_images(logger: Any) -> bool:
    # drawing a figure costs ~0.1 s; skip it when only the console (which ignores images) listens
    from restorekit.loggers.console import ConsoleLogger

    members = getattr(logger, "loggers", [logger])
    return any(not isinstance(lg, ConsoleLogger) for lg in members)


def spectrogram_image(wave: np.ndarray, sr: int, n_fft: int = 1024) -> np.ndarray:
    """A log-magnitude spectrogram as an RGB uint8 image ``(height, width, 3)``."""
    # Figure + Agg canvas directly: no pyplot, so no global backend or figure state is touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = torch.from_numpy(np.asarray(wave, dtype=np.float32))
    n_fft = min(n_fft, max(16, len(x)))
    spec = torch.stft(x, n_fft, hop_length=max(1, n_fft // 4), window=torch.hann_window(n_fft), return_complex=True)
    db = 20 * torch.log10(spec.abs().clamp_min(1e-5)).numpy()
    fig = Figure(figsize=(6, 3), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=db.max() - 80, vmax=db.max(),
              extent=(0, len(x) / sr, 0, sr / 2000))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("kHz")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
