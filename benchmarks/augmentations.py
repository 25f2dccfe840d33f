"""Degradation speed: seconds of audio degraded per CPU second, on one core.

    python benchmarks/augmentations.py [--seconds 4] [--budget 1.5] [--rates 16000 24000]

Every registered op (each codec also on its own) and both recipe chains
(configs/degradations/miipher2.yaml, finally.yaml) run on a 4 s speech segment at 16 and
24 kHz, pinned to one CPU with BLAS/FFT threads set to 1. Noise and RIR files are the real
ones in ../shared/data/real when present, otherwise synthetic files in a temporary folder.
Caches (decoded files, simulated-room pools) are warmed first: they are paid once per
process, not per sample. Prints JSON; the target is >= 50x real time for the miipher2 chain.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy loads: one core means one thread

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REAL = Path(os.environ.get("RESTOREKIT_REAL_DATA", REPO.parent / "shared" / "data" / "real"))

from restorekit import audio  # noqa: E402
from restorekit.augmentations import AUGMENTATIONS  # noqa: E402
from restorekit.augmentations.chain import sample_rng  # noqa: E402
from restorekit.augmentations.preview import build_chain  # noqa: E402


def data_dirs(tmp: Path) -> tuple[dict[str, str], str]:
    """Noise / RIR folders: the real ones if present, else synthetic ones under ``tmp``."""
    if (REAL / "noises").is_dir() and (REAL / "rirs").is_dir():
        return {"noise": str(REAL / "noises"), "rir": str(REAL / "rirs")}, "real"
    rng = np.random.default_rng(0)
    (tmp / "noises").mkdir()
    (tmp / "rirs").mkdir()
    for i in range(3):
        sf.write(tmp / "noises" / f"n{i}.wav", 0.1 * rng.standard_normal(48000 * 10), 48000)
        n = 48000
        rir = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.1 * 48000)) * 0.1
        rir[0] = 1.0
        sf.write(tmp / "rirs" / f"r{i}.wav", rir, 48000)
    return {"noise": str(tmp / "noises"), "rir": str(tmp / "rirs")}, "synthetic"


def speech(seconds: float, sr: int) -> np.ndarray:
    """A real clean utterance if present (looped to length), else a harmonic test signal."""
    clean = REAL / "pairs" / "clean" / "vbdemand_p232_003.wav"
    if clean.is_file():
        wave, _ = audio.load(clean, sr=sr)
        return np.resize(wave, int(seconds * sr)).astype(np.float32)
    t = np.arange(int(seconds * sr)) / sr
    return (0.2 * sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 15))).astype(np.float32)


def ops(dirs: dict[str, str]) -> dict[str, dict]:
    """One node per measured op: every registered op, and each codec alone."""
    args = {
        "noise": {"dirs": [dirs["noise"]]},
        "reverb": {"dirs": [dirs["rir"]], "max_seconds": 1.0},
        "room_reverb": {"pool_size": 8},
        "chain": {"ops": [{"name": "gain"}]},
        "audiomentations": {"transform": "TanhDistortion"},
        "pedalboard": {"plugin": "Chorus", "rate_hz": [0.5, 2.0]},
    }
    nodes = {n: {"name": n, "args": args.get(n, {})} for n in AUGMENTATIONS.names() if n != "chain"}
    for codec in ("mp3", "vorbis", "opus", "gsm", "alaw", "mulaw"):
        nodes[f"codec:{codec}"] = {"name": "codec", "args": {"codecs": [codec]}}
    # FINALLY's variants: IRs normalised to their peak, bandwidth-extension pairs (1/2/4 kHz)
    nodes["reverb:peak"] = {"name": "reverb", "args": {**args["reverb"], "normalize_ir": "peak"}}
    nodes["bandlimit:bwe"] = {"name": "bandlimit", "args": {"modes": ["resample"], "cutoffs_hz": [1000, 2000, 4000]}}
    return nodes


def chains(dirs: dict[str, str]) -> dict[str, object]:
    """Both recipe chains, with their ??? folders set as the preview command would."""
    sets = [f"data.noise_dirs=[{dirs['noise']}]", f"data.rir_dirs=[{dirs['rir']}]", f"+data.mic_ir_dirs=[{dirs['rir']}]"]
    return {f"chain:{n}": build_chain(str(REPO / "configs" / "degradations" / f"{n}.yaml"), sets)[0] for n in ("miipher2", "finally")}


def speed(aug, wave: np.ndarray, sr: int, budget: float) -> dict[str, float]:
    """x real time = audio seconds / CPU seconds, over calls with fresh per-sample seeds."""
    for i in range(3):  # warm caches and pools: paid once per process, not per sample
        aug(wave, sr, sample_rng(1, 0, i))
    calls, start = 0, time.process_time()
    while time.process_time() - start < budget or calls < 5:
        aug(wave, sr, sample_rng(0, 0, calls))
        calls += 1
    cpu = time.process_time() - start
    return {"x_realtime": round(calls * len(wave) / sr / cpu, 1), "calls": calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--budget", type=float, default=1.5, help="CPU seconds per measurement")
    parser.add_argument("--rates", type=int, nargs="+", default=[16000, 24000])
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory() as tmp:
        dirs, source = data_dirs(Path(tmp))
        augs = {name: AUGMENTATIONS.build(node, where=name) for name, node in ops(dirs).items()}
        augs.update(chains(dirs))
        results = {}
        for sr in args.rates:
            wave = speech(args.seconds, sr)
            results[str(sr)] = {name: speed(aug, wave, sr, args.budget) for name, aug in augs.items()}
    report = {
        "what": "seconds of audio degraded per CPU second (x real time), one core",
        "segment_seconds": args.seconds,
        "data": source,
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "target": {"chain:miipher2": ">= 50"},
        "results": results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
