"""Learned MOS predictors the FINALLY recipe scores with: WV-MOS and UTMOSv2 (restorekit.models.mos).

The predictors load once, in the constructor, from their released checkpoints; without them the
build fails with a CheckpointError that says where to get the file and which argument to set.
"""
from __future__ import annotations

import numpy as np
import torch

from restorekit.metrics import METRICS
from restorekit.metrics.base import Metric


class _TorchMos(Metric):
    """Scores one file with a frozen :class:`restorekit.models.mos.MosPredictor` at 16 kHz."""

    sample_rate = 16000

    def score(self, estimate: np.ndarray, reference: np.ndarray | None, sr: int) -> dict[str, float]:
        with torch.inference_mode():
            value = self.model(torch.from_numpy(estimate)[None], sr)
        return {self.keys[0]: float(value.squeeze())}


@METRICS.register("wvmos")
class Wvmos(_TorchMos):
    """WV-MOS (Andreev et al. 2022; wav2vec 2.0 + MLP), predicted MOS (~1-5), at 16 kHz; no reference.

    ``checkpoint``: the released ``wav2vec2.ckpt`` (Zenodo record 6201162); None looks where the
    wvmos package caches it (~/.cache/wv_mos/wv_mos.ckpt). ``encoder``: hub id or local folder
    with the wav2vec 2.0 config.json and preprocessor_config.json (its weights come from the
    checkpoint). ``trust_checkpoint``: allow pickled objects beyond tensors in the file.
    """

    keys = ("wvmos",)

    def __init__(self, checkpoint: str | None = None, encoder: str = "facebook/wav2vec2-base",
                 trust_checkpoint: bool = False) -> None:
        from restorekit.models.mos import load_wvmos

        self.model = load_wvmos(checkpoint, encoder, trust_checkpoint)


@METRICS.register("utmosv2")
class Utmosv2Metric(_TorchMos):
    """UTMOSv2 (Baba et al. 2024; wav2vec 2.0 + spectrogram EfficientNetV2s) MOS (~1-5), at 16 kHz; no reference.

    ``checkpoint``: a released fold (``fold0_s42_best_model.pth``, Hub repo sarulab-speech/UTMOSv2);
    None looks where the utmosv2 package caches it. ``encoder``: hub id or local folder with the
    wav2vec 2.0 config.json and preprocessor_config.json. ``backbone``: the timm model of the
    spectrogram branch. ``dataset``: the data-domain id fed to the fusion layer (UTMOSv2's default
    "sarulab"). UTMOSv2 scores random crops; ``num_repetitions`` averages that many draws, from
    ``seed`` for every file, so a file's score is repeatable.
    """

    keys = ("utmosv2",)

    def __init__(self, checkpoint: str | None = None, encoder: str = "facebook/wav2vec2-base",
                 backbone: str = "tf_efficientnetv2_s", dataset: str = "sarulab", num_repetitions: int = 1,
                 seed: int = 0) -> None:
        from restorekit.models.mos import load_utmosv2

        self.model = load_utmosv2(checkpoint, encoder, backbone, dataset)
        self.num_repetitions, self.seed = max(1, int(num_repetitions)), seed

    def score(self, estimate: np.ndarray, reference: np.ndarray | None, sr: int) -> dict[str, float]:
        self.model.reseed(self.seed)
        with torch.inference_mode():
            wave = torch.from_numpy(estimate)[None]
            values = [float(self.model(wave, sr).squeeze()) for _ in range(self.num_repetitions)]
        return {"utmosv2": float(np.mean(values))}
