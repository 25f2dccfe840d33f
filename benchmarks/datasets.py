"""Dataset speed, printed as JSON.

- start-up: ``degraded_speech`` over a metadata.csv of 1,000,000 synthetic rows (target < 5 s;
  no audio files are touched at start-up, so the rows need no files behind them);
- throughput: items per second from a DataLoader with 0 and 2 workers, 4 s segments at
  24 kHz through the miipher2 degradation chain (configs/degradations/miipher2.yaml), over
  6 s clips made from the demo corpus, with the real noises and RIRs of ../shared/data/real
  when present (else a generated noise and RIR).

    python benchmarks/datasets.py [--rows 1000000] [--items 64]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from omegaconf import OmegaConf  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from restorekit.config import load_yaml  # noqa: E402
from restorekit.datasets import DATASETS, collate  # noqa: E402
from restorekit.datasets.demo import demo_corpus_dir  # noqa: E402
from restorekit.datasets.manifest import COLUMNS, read_manifest  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "real"


def synthetic_manifest(root: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    durations = rng.uniform(1.0, 20.0, rows)
    with open(root / "metadata.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(COLUMNS)
        w.writerows((f"spk{i % 2000:04d}/chapter{i % 37}/spk{i % 2000:04d}_{i:08d}.flac", f"{d:.6f}", 24000, 1,
                     f"spk{i % 2000:04d}", 123456, 1700000000000000000) for i, d in enumerate(durations))


def startup(rows: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_manifest(Path(tmp), rows)
        t0 = time.perf_counter()
        manifest = read_manifest(tmp, build_missing=False)
        t1 = time.perf_counter()
        ds = DATASETS.build({"name": "degraded_speech", "args": {"roots": [tmp], "segment_seconds": 4.0,
                                                                 "min_duration": 2.0, "short": "drop"}},
                            where="bench", sample_rate=24000)
        t2 = time.perf_counter()
        assert len(manifest) == rows and 0 < len(ds) < rows
        return {"rows": rows, "read_manifest_s": round(t1 - t0, 3), "dataset_startup_s": round(t2 - t1, 3),
                "items_after_filter": len(ds), "target_s": 5.0}


def clips(out: Path, count: int = 24, seconds: float = 6.0) -> Path:
    """6 s clips of demo speech (utterances joined), 22.05 kHz: the dataset resamples to 24 kHz."""
    files = sorted(demo_corpus_dir("train").rglob("*.wav"))
    waves = [sf.read(f, dtype="float32")[0] for f in files]
    joined = np.concatenate(waves * 3)
    n = int(seconds * 22050)
    for k in range(count):
        start = (k * n // 3) % (len(joined) - n)
        sf.write(out / f"clip_{k:03d}.wav", joined[start:start + n], 22050)
    return out


def noise_and_rirs(tmp: Path) -> tuple[str, str]:
    if (REAL / "noises").is_dir() and (REAL / "rirs").is_dir():
        return str(REAL / "noises"), str(REAL / "rirs")
    rng = np.random.default_rng(0)
    (tmp / "noise").mkdir()
    (tmp / "rir").mkdir()
    sf.write(tmp / "noise" / "white.wav", 0.1 * rng.standard_normal(48000 * 5).astype(np.float32), 48000)
    t = np.arange(12000) / 48000
    sf.write(tmp / "rir" / "room.wav", (rng.standard_normal(12000) * np.exp(-t / 0.08)).astype(np.float32), 48000)
    return str(tmp / "noise"), str(tmp / "rir")


def throughput(items: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "speech").mkdir()
        clips(tmp / "speech")
        noise, rir = noise_and_rirs(tmp)
        cfg = load_yaml(REPO / "configs" / "degradations" / "miipher2.yaml")
        cfg.data.noise_dirs, cfg.data.rir_dirs = [noise], [rir]
        chain = OmegaConf.to_container(cfg.data.degradations, resolve=True)
        ds = DATASETS.build({"name": "degraded_speech", "args": {"roots": [str(tmp / "speech")], "segment_seconds": 4.0,
                                                                 "degradations": chain}},
                            where="bench", sample_rate=24000)
        out = {"segment_seconds": 4.0, "sample_rate": 24000, "chain": "configs/degradations/miipher2.yaml",
               "noises_and_rirs": "shared/data/real" if noise.startswith(str(REAL)) else "generated"}
        for workers in (0, 2):
            out[f"items_per_s_workers_{workers}"] = round(_rate(ds, items, workers), 2)
        return out


def _rate(ds, items: int, workers: int) -> float:
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=workers, collate_fn=collate,
                        persistent_workers=False)
    seen, t0 = 0, time.perf_counter()
    while seen < items:
        for batch in loader:
            seen += len(batch["names"])
            if seen >= items:
                break
    return seen / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=64)
    args = parser.parse_args()
    print(json.dumps({"startup": startup(args.rows), "throughput": throughput(args.items)}, indent=2))


if __name__ == "__main__":
    main()
