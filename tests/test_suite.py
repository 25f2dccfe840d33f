"""The metric suite: parallel equals serial, failures recorded and counted, statistics right."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from restorekit.audio import save
from restorekit.errors import ConfigError, RegistryError
from restorekit.metrics.suite import (
    Job,
    MetricSuite,
    describe,
    key_labels,
    summarize,
    write_results,
    write_summary,
)
from test_metrics import SR, noisy, voiced

NODES = [{"name": "pesq_wb"}, {"name": "si_sdr"}, {"name": "stoi"}]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Four clean/degraded pairs at different SNRs, a silent output and an unreadable one."""
    root = tmp_path_factory.mktemp("suite")
    out = {}
    for i, snr in enumerate([0, 5, 10, 20]):
        clean = voiced(seed=i)
        out[f"c{i}"] = save(root / "clean" / f"f{i}.wav", clean, SR)
        out[f"d{i}"] = save(root / "deg" / f"f{i}.wav", noisy(clean, snr, seed=10 + i), SR)
    out["silent"] = save(root / "deg" / "silent.wav", np.zeros(int(1.5 * SR), np.float32), SR)
    out["broken"] = root / "deg" / "broken.wav"
    out["broken"].write_text("not audio")
    return out


def jobs(files, extra: bool = False) -> list[Job]:
    out = [Job("deg", f"f{i}", str(files[f"d{i}"]), str(files[f"c{i}"])) for i in range(4)]
    if extra:
        out += [Job("deg", "silent", str(files["silent"]), str(files["c0"])),
                Job("deg", "broken", str(files["broken"]), str(files["c0"]))]
    return out


def test_parallel_workers_give_the_same_values_as_serial(files):
    serial = MetricSuite(NODES, workers=1).run(jobs(files))
    parallel = MetricSuite(NODES, workers=2).run(jobs(files))
    assert [r.values for r in parallel] == [r.values for r in serial]
    assert [r.job.name for r in parallel] == ["f0", "f1", "f2", "f3"]
    pesq = [r.values["pesq_wb"] for r in serial]
    assert pesq == sorted(pesq)  # higher SNR, higher PESQ


def test_failures_are_recorded_with_reasons_and_counted_never_imputed(files, tmp_path):
    suite = MetricSuite(NODES, workers=1)
    results = suite.run(jobs(files, extra=True))
    silent, broken = results[4], results[5]
    assert silent.failures == {"pesq_wb": "the estimate is silent; PESQ is undefined for silence",
                               "si_sdr": "the estimate is silent; SI-SDR is undefined"}
    assert silent.values == {"stoi": 0.0}  # pystoi's own value for a silent estimate
    assert "pesq_wb" not in silent.values
    assert set(broken.failures) == {"pesq_wb", "si_sdr", "stoi"} and not broken.values
    assert broken.failures["stoi"].startswith("unreadable audio:")
    summary = summarize(results, suite.keys(), key_labels(suite.nodes))
    pesq = summary["systems"]["deg"]["metrics"]["pesq_wb"]
    assert (pesq["n"], pesq["failed"]) == (4, 2)
    assert pesq["mean"] == pytest.approx(np.mean([r.values["pesq_wb"] for r in results[:4]]))
    assert summary["failures"]["count"] == len(silent.failures) + 3
    paths = {**write_results(results, suite.keys(), tmp_path), **write_summary(summary, tmp_path)}
    rows = list(csv.DictReader(paths["per_file"].open()))
    assert rows[4]["name"] == "silent" and rows[4]["pesq_wb"] == "" and rows[0]["pesq_wb"] != ""
    reasons = list(csv.DictReader(paths["failures"].open()))
    assert {"system": "deg", "name": "silent", "metric": "pesq_wb",
            "reason": "the estimate is silent; PESQ is undefined for silence"} in reasons
    assert json.loads(paths["summary_json"].read_text())["failures"]["count"] == summary["failures"]["count"]
    assert "2 failed" in paths["summary_md"].read_text()


def test_statistics_use_the_t_distribution_95_percent_interval():
    from scipy import stats

    values = [3.1, 2.5, 4.0, 3.3, 2.9]
    got = describe(values, failed=1)
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert got["ci95"] == pytest.approx([lo, hi])
    assert got["std"] == pytest.approx(np.std(values, ddof=1))
    assert (got["n"], got["failed"]) == (5, 1)
    assert describe([1.0], 0)["ci95"] is None and describe([], 3)["mean"] is None


def test_wer_gets_the_transcript_of_its_job(files, monkeypatch):
    """Three files through the suite, the recogniser hearing "Hello, world!" in each: against their
    own transcripts they score 0 ("hello world") and 1/3 ("hello big world": one deletion); the
    file without one fails.

    Catches: the suite not passing a job's transcript to the metric, passing one job's
    transcript to another, and the metric keeping the first transcript it saw.
    """
    from restorekit.metrics.asr import PocketsphinxAsr

    monkeypatch.setattr(PocketsphinxAsr, "__call__", lambda self, wave: "Hello, world!")
    jobs = [Job("deg", "f0", str(files["d0"]), None, transcript="Hello world."),
            Job("deg", "f1", str(files["d1"]), None, transcript="hello big world"),
            Job("deg", "f2", str(files["d2"]), None, transcript=None)]
    results = MetricSuite([{"name": "wer"}], workers=1).run(jobs)
    assert [r.values for r in results] == [{"wer": 0.0}, {"wer": pytest.approx(1 / 3)}, {}]
    no_text = "no reference transcript for this file; list it in the transcripts file"
    assert results[2].failures == {"wer": no_text}


def test_a_metric_giving_nan_is_recorded_as_a_failure_and_left_out_of_the_statistics(
    files, monkeypatch
):
    """STOI returning NaN on every file: four recorded failures, no STOI values, n = 0; the other
    metrics are scored as usual.

    Catches: a NaN let through into the values (and the means, which would become NaN).
    """
    from restorekit.metrics.intrusive import Stoi

    monkeypatch.setattr(Stoi, "score", lambda self, est, ref, sr: {"stoi": float("nan")})
    suite = MetricSuite(NODES, workers=1)
    results = suite.run(jobs(files))
    assert all(r.failures == {"stoi": "Stoi gave a non-finite value for stoi"} for r in results)
    assert all(set(r.values) == {"pesq_wb", "si_sdr"} for r in results)
    stoi = summarize(results, suite.keys(), key_labels(suite.nodes))["systems"]["deg"]["metrics"]["stoi"]
    assert (stoi["n"], stoi["failed"], stoi["mean"]) == (0, 4, None)


def test_suite_config_errors_name_the_problem():
    with pytest.raises(RegistryError, match=r"unknown metrics 'pesq' at metrics.0.name. Did you mean 'pesq_wb'\?"):
        MetricSuite([{"name": "pesq"}])
    with pytest.raises(ConfigError, match="metrics must be a non-empty list of metric nodes"):
        MetricSuite([])
    with pytest.raises(ConfigError, match="suite workers must be >= 1, got 0"):
        MetricSuite(NODES, workers=0)
