"""Speed of the pesq_loss (torch PESQ) on CPU, forward and forward + backward, beside the pesq package.

    python benchmarks/pesq_loss.py [--batch 8] [--seconds 2] [--repeat 5] [--threads 1]

A batch of ``batch`` x ``seconds`` of noisy speech-like audio against its clean version, at
16 kHz and at 48 kHz (resampled inside the loss). Prints JSON: the best of ``repeat`` wall times
(other jobs share the machine) for the loss forward, forward + backward, and the pesq package's
C implementation scoring the same 16 kHz items one after another (no gradient), for scale.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import pesq
import torch

from restorekit.losses import LOSSES


def speechlike(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A gliding harmonic tone gated into 3 Hz syllables, over a -50 dB floor (as in the tests)."""
    t = np.arange(n) / sr
    phase = 2 * np.pi * np.cumsum(140 + 20 * np.sin(2 * np.pi * 0.7 * t)) / sr
    voice = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 30))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t + rng.uniform(0, 2 * np.pi)), 0, None) ** 0.5
    return (0.1 * voice * envelope + rng.normal(0, 3e-4, n)).astype(np.float32)


def pairs(batch: int, seconds: float, sr: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    clean = np.stack([speechlike(int(seconds * sr), sr, rng) for _ in range(batch)])
    noisy = clean + rng.normal(0, 0.01, clean.shape).astype(np.float32)
    return torch.from_numpy(noisy), torch.from_numpy(clean)


def best_of(repeat: int, fn) -> float:
    fn()  # warm-up: first-call allocations and lazy imports are not the loss's speed
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(batch: int, seconds: float, sr: int, repeat: int) -> dict:
    noisy, clean = pairs(batch, seconds, sr)
    loss = LOSSES.build({"name": "pesq_loss", "args": {"sample_rate": sr}}, where="benchmark")

    def backward() -> None:
        estimate = noisy.clone().requires_grad_(True)
        loss(estimate, clean).backward()

    forward_s = best_of(repeat, lambda: loss(noisy, clean))
    backward_s = best_of(repeat, backward)
    audio_s = batch * seconds
    return {
        "sample_rate": sr,
        "forward_ms": round(1000 * forward_s, 1),
        "forward_backward_ms": round(1000 * backward_s, 1),
        "forward_backward_x_realtime": round(audio_s / backward_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(args.batch, args.seconds, sr, args.repeat) for sr in (16_000, 48_000)]
    noisy, clean = (x.numpy() for x in pairs(args.batch, args.seconds, 16_000))
    c_s = best_of(args.repeat, lambda: [pesq.pesq(16_000, c, n, "wb") for c, n in zip(clean, noisy)])
    print(json.dumps({
        "batch": args.batch, "seconds": args.seconds, "threads": args.threads,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "pesq_loss": rows, "pesq_package_16k_ms": round(1000 * c_s, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
