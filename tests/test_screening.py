"""screening: each restoration scored beside its input, flagged by thresholds, screening.csv merged on reruns.

The threshold logic runs on stand-in metrics (fast); one test runs the real resemblyzer on eSpeak
speech through the command line, with an enhancer that adds noise.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from restorekit import audio
from restorekit.errors import ConfigError, DataError
from restorekit.inference import main
from restorekit.metrics.base import MetricFailure
from restorekit.screening import Screener, write_screening

SR = 16_000


class FakeDnsmos:
    """OVRL 4 minus the peak: louder is 'worse'; silence cannot be scored."""

    def __call__(self, wave, sr):
        if not np.any(wave):
            raise MetricFailure("the estimate is silent")
        return {"dnsmos_ovrl": 4.0 - float(np.max(np.abs(wave)))}


class FakeSpeaker:
    """1 minus the mean absolute difference of the pair."""

    def __call__(self, estimate, sr, reference):
        return {"speaker_similarity": 1.0 - float(np.mean(np.abs(estimate - reference)))}


class FakeWer:
    """'Recognises' one word per 0.25 peak ('a', 'a a', ...); WER as the word-count difference."""

    sample_rate = SR

    def asr(self, wave):
        return " ".join(["a"] * int(np.max(np.abs(wave)) / 0.25))

    def __call__(self, wave, sr, transcript=None):
        if not transcript:
            raise MetricFailure("no reference transcript for this file; list it in the transcripts file")
        words = len(transcript.split())
        return {"wer": abs(len(self.asr(wave).split()) - words) / words}


def screener(monkeypatch, thresholds=None, transcripts=None) -> Screener:
    from restorekit.metrics import METRICS

    fakes = {"dnsmos": FakeDnsmos, "speaker_similarity": FakeSpeaker, "wer": FakeWer}
    monkeypatch.setattr(METRICS, "build", lambda node, where="": fakes[node["name"]]())
    return Screener(["dnsmos", "speaker_similarity", {"name": "wer", "args": {}}], thresholds, transcripts)


def test_a_worse_output_is_flagged_with_reasons_and_its_twin_is_not(monkeypatch) -> None:
    """Input at peak 0.6; the identity output scores like its input (flag 0, deltas 0, WER against the
    input's own words); an output at peak 1.0 lost 0.4 DNSMOS, 0.2 similarity and gained a word.

    Catches: a delta's sign flipped, thresholds compared the wrong way, the input's ASR transcript
    not used as the reference when none is given.
    """
    wave = np.full(SR // 10, 0.6, np.float32)
    screen = screener(monkeypatch)
    same = screen.score("twin", wave, SR, wave.copy(), SR)
    assert same == {"file": "twin", "dnsmos_in": 3.4, "dnsmos_out": 3.4, "dnsmos_delta": 0.0, "speaker_similarity": 1.0,
                    "transcript": "asr of input", "wer_in": 0.0, "wer_out": 0.0, "wer_delta": 0.0,
                    "flag": 0, "reasons": ""}
    worse = screen.score("worse", wave, SR, wave / 0.6, SR)
    assert (worse["dnsmos_delta"], worse["speaker_similarity"], worse["wer_delta"]) == (-0.4, 0.6, 1.0)
    assert worse["flag"] == 1
    assert worse["reasons"] == ("dnsmos fell -0.40 (more than 0.0); speaker similarity 0.60 < 0.8; "
                                "wer rose +1.00 (more than 0.0)")
    lenient = screener(monkeypatch, {"dnsmos_drop": 0.5, "speaker_similarity_min": 0.5, "wer_rise": 1.0})
    assert lenient.score("worse", wave, SR, wave / 0.6, SR)["flag"] == 0  # within every threshold


def test_given_transcripts_and_unscorable_outputs(monkeypatch, tmp_path) -> None:
    """A transcripts CSV (name without suffix; a unique stem also finds it) is the reference for input
    and output, and transcripts=asr (Miipher-1's option) means the input's ASR; a silent output
    cannot be scored, so its cells stay empty and it is flagged with the metric's reason.

    Catches: the transcripts file ignored, a failure recorded as a pass (nothing vouches for it).
    """
    listing = tmp_path / "text.csv"
    listing.write_text("name,text\nspk/one.wav,a a a a\n")
    screen = screener(monkeypatch, transcripts=str(listing))
    wave = np.full(SR // 10, 0.6, np.float32)  # 'recognised' as two words
    row = screen.score("spk/one", wave, SR, wave / 0.6, SR)
    assert (row["transcript"], row["wer_in"], row["wer_out"]) == ("given", 0.5, 0.0)
    assert screen.score("other/one", wave, SR, wave, SR)["transcript"] == "given"  # found by its stem
    assert screener(monkeypatch, transcripts="asr").score("spk/one", wave, SR, wave, SR)["transcript"] == "asr of input"
    silent = screen.score("spk/one", wave, SR, np.zeros_like(wave), SR)
    assert silent["flag"] == 1 and "dnsmos_out" not in silent
    assert silent["reasons"].startswith("dnsmos not scored (the estimate is silent); speaker similarity 0.40 < 0.8")
    with pytest.raises(DataError, match="transcripts=.*missing.csv: file not found; give a CSV with columns name,text"):
        screener(monkeypatch, transcripts=str(tmp_path / "missing.csv"))


def test_screen_options_are_checked(monkeypatch) -> None:
    with pytest.raises(ConfigError, match=r"screen\[1\]: 'dnsmoss' cannot screen restorations. Did you mean 'dnsmos'"):
        Screener(["wer", "dnsmoss"])
    with pytest.raises(ConfigError, match="screen_thresholds: unknown key.* wer_raise; the thresholds are dnsmos_drop"):
        screener(monkeypatch, {"wer_raise": 0.1})


def test_screening_csv_is_merged_across_reruns(tmp_path) -> None:
    """A rerun's rows replace the same files' rows and keep the others, sorted by file.

    Catches: a resumed run (which screens only what it restores) wiping the earlier rows.
    """
    write_screening([{"file": "b", "dnsmos_in": 3.0, "flag": 1, "reasons": "dnsmos fell"},
                     {"file": "a", "dnsmos_in": 2.0, "flag": 0, "reasons": ""}], tmp_path)
    path = write_screening([{"file": "b", "dnsmos_in": 3.5, "flag": 0, "reasons": ""}], tmp_path)
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["file"], r["dnsmos_in"], r["flag"]) for r in rows] == [("a", "2.0", "0"), ("b", "3.5", "0")]
    assert list(rows[0]) == ["file", "dnsmos_in", "flag", "reasons"]


class NoiseAt16k:
    """Adds white noise (std 0.1) to 16 kHz inputs; passes other rates through unchanged."""

    chunks_internally = False
    sample_rate = None

    def enhance_batch(self, items):
        rng = np.random.default_rng(0)
        return [(w + (0.1 * rng.standard_normal(len(w))).astype(np.float32) if s == SR else w, s) for w, s in items]


@pytest.mark.slow  # resemblyzer (and its librosa/scipy imports): 13 s wall on the loaded shared cores
def test_screening_flags_a_file_made_worse_and_not_its_clean_twin(tmp_path, monkeypatch, capsys) -> None:
    """One eSpeak utterance twice: at 22.05 kHz (passed through unchanged) and at 16 kHz (noise added),
    screened with the real resemblyzer: screening.csv flags the noisy one (similarity < 0.8), not its
    twin, and the summary counts one flagged file. (The real DNSMOS costs ~10 s of CPU per call on
    the shared cores and pocketsphinx seconds; their threshold logic is tested above, the metrics
    themselves in test_metrics, and the keys screening reads are checked below.)

    Catches: screening the input against itself, the output's rate ignored, flags not counted.
    """
    from restorekit.datasets.demo import demo_corpus_dir

    wave, sr = audio.load(demo_corpus_dir("valid") / "spk5" / "spk5_006.wav")  # 2 s, 22.05 kHz
    inputs = tmp_path / "in"
    inputs.mkdir()
    sf.write(inputs / "clean_twin.wav", wave, sr, subtype="FLOAT")
    sf.write(inputs / "noisy_twin.wav", audio.resample(wave, sr, SR), SR, subtype="FLOAT")
    monkeypatch.setattr("restorekit.inference.build_enhancer", lambda cfg: NoiseAt16k())
    out = tmp_path / "out"
    assert main(["enhancer=identity", f"input={inputs}", f"output_dir={out}", "screen=[speaker_similarity]"]) == 0
    with (out / "screening.csv").open(newline="") as fh:
        rows = {r["file"]: r for r in csv.DictReader(fh)}
    clean, noisy = rows["clean_twin"], rows["noisy_twin"]
    assert (clean["flag"], clean["reasons"]) == ("0", "") and float(clean["speaker_similarity"]) > 0.99
    assert noisy["flag"] == "1" and float(noisy["speaker_similarity"]) < 0.8
    assert noisy["reasons"].startswith("speaker similarity 0.")
    assert json.loads((out / "inference_summary.json").read_text())["flagged"] == 1
    assert "inference: 2 done, 0 skipped, 0 failed, 1 flagged;" in capsys.readouterr().out


def test_the_metric_values_screening_reads_exist() -> None:
    """The keys and attributes screening takes from the real metrics (without loading their models)."""
    from restorekit.metrics.asr import Wer
    from restorekit.metrics.nonintrusive import Dnsmos
    from restorekit.metrics.speaker import SpeakerSimilarity

    assert "dnsmos_ovrl" in Dnsmos.keys and SpeakerSimilarity.keys == ("speaker_similarity",)
    assert Wer.keys == ("wer",) and Wer.sample_rate == 16_000 and Wer.needs_transcript
