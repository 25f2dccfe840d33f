"""Word error rate of an ASR transcript of the estimate against a reference transcript.

Two recognisers: pocketsphinx (its English model ships in the wheel, so it runs offline) and
Whisper through transformers (a hub id or local folder; fails with a clear message when the
weights are not available). Scoring is jiwer's WER on lower-cased, punctuation-free text.
"""
from __future__ import annotations

import re

import numpy as np

from restorekit.errors import CheckpointError, ConfigError, one_line
from restorekit.metrics import METRICS
from restorekit.metrics.base import Metric, MetricFailure, check_values, offline

BACKENDS = ("pocketsphinx", "whisper")


def normalize_text(text: str) -> str:
    """Lower case, punctuation removed (apostrophes kept), single spaces."""
    text = re.sub(r"[^\w\s']", " ", text.lower())
    return " ".join(text.split())


class PocketsphinxAsr:
    """pocketsphinx's default US-English acoustic model, dictionary and language model, 16 kHz."""

    def __init__(self) -> None:
        from restorekit.optional import check_installed

        check_installed(("pocketsphinx",), "wer (its default pocketsphinx recogniser)")
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=16000, loglevel="FATAL")

    def __call__(self, wave: np.ndarray) -> str:
        pcm = (np.clip(wave, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


class WhisperAsr:
    """A Whisper checkpoint through transformers (greedy decoding, English), 16 kHz."""

    def __init__(self, model: str, language: str = "en") -> None:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        try:
            self.processor = WhisperProcessor.from_pretrained(model, local_files_only=offline())
            self.model = WhisperForConditionalGeneration.from_pretrained(model, local_files_only=offline()).eval()
        except OSError as exc:
            raise CheckpointError(
                f"wer: Whisper weights '{model}' are not available ({one_line(exc)[:200]}); "
                "download them once online (huggingface-cli download MODEL) or set "
                "metrics args.model to a local folder with config.json and the weights"
            ) from exc
        self.language = language

    def __call__(self, wave: np.ndarray) -> str:
        import torch

        feats = self.processor(wave, sampling_rate=16000, return_tensors="pt").input_features
        with torch.inference_mode():
            ids = self.model.generate(feats, language=self.language, task="transcribe")
        return self.processor.batch_decode(ids, skip_special_tokens=True)[0]


@METRICS.register("wer")
class Wer(Metric):
    """Word error rate (0 = perfect) of an ASR transcript vs the reference transcript, at 16 kHz; lower is better."""

    requires = ("jiwer",)  # the default pocketsphinx backend is checked when it is chosen

    sample_rate = 16000
    keys = ("wer",)
    lower_is_better = frozenset({"wer"})
    needs_transcript = True

    def __init__(self, backend: str = "pocketsphinx", model: str = "openai/whisper-tiny.en") -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"wer: unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
        self.asr = PocketsphinxAsr() if backend == "pocketsphinx" else WhisperAsr(model)

    def __call__(
        self, estimate: np.ndarray, sr: int, reference: np.ndarray | None = None, transcript: str | None = None
    ) -> dict[str, float]:
        if not transcript or not normalize_text(transcript):
            raise MetricFailure("no reference transcript for this file; list it in the transcripts file")
        self._transcript = normalize_text(transcript)
        return super().__call__(estimate, sr, reference)

    def score(self, estimate: np.ndarray, reference: np.ndarray | None, sr: int) -> dict[str, float]:
        import jiwer

        hypothesis = normalize_text(self.asr(estimate))
        return check_values({"wer": jiwer.wer(self._transcript, hypothesis)}, "wer")
