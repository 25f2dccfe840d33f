"""Mimi codec speed and memory (issue 15): restorekit's ``mimi`` beside transformers' ``MimiModel``; prints JSON.

Both at the released size (``MimiConfig()`` defaults: SEANet 64 filters, 8-layer Transformers,
32 codebooks of 2048) with random weights (the cost of a pass does not depend on the weight
values; nothing is downloaded). For each implementation and duration a fresh worker process
builds the model, then times ``encode`` and ``decode`` of synthetic 24 kHz audio under
``torch.inference_mode`` with ``--n-q`` codebooks (8 by default, Moshi's 1.1 kbps), best of
``--repeats``. It reports the real-time factor (seconds of processing per second of audio; below 1
is faster than real time) of encode, decode and both, and the process's peak RSS (``ru_maxrss``;
one process per case so peaks do not mix) with the RSS after building the model, whose
difference is what the pass itself needed. ``mimi_stream`` runs restorekit's streaming path in
80 ms pieces (one frame in, one frame out), the latency a live codec has.

    python benchmarks/mimi.py                           # 10 s and 60 s, all three cases
    python benchmarks/mimi.py --durations 10 --cases mimi hf_mimi --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = ("mimi", "hf_mimi", "mimi_stream")
SR = 24000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def speech_like(seconds: float):
    import torch

    t = torch.arange(int(seconds * SR)) / SR
    return (0.3 * torch.sin(2 * torch.pi * 220 * t) * (1 + 0.5 * torch.sin(2 * torch.pi * 3 * t)))[None]


def build(case: str):
    if case == "hf_mimi":
        from transformers import MimiConfig, MimiModel

        model = MimiModel(MimiConfig()).eval()
        return (lambda w, n: model.encode(w[:, None], num_quantizers=n).audio_codes,
                lambda c: model.decode(c).audio_values[:, 0], model)
    from restorekit.models.mimi import Mimi

    model = Mimi(n_q=32).eval()
    if case == "mimi":
        return (lambda w, n: model.encode(w, n), model.decode, model)
    return (lambda w, n: stream_encode(model, w, n), lambda c: stream_decode(model, c), model)


def stream_encode(model, wave, n_q):
    import torch

    stream, out = None, []
    wave = torch.nn.functional.pad(wave, (0, -wave.shape[-1] % model.hop))  # whole frames, as a live input buffers
    for piece in wave.split(model.hop, dim=-1):
        codes, stream = model.encode_stream(piece, stream, n_q=n_q)
        out.append(codes)
    return torch.cat(out, dim=-1)


def stream_decode(model, codes):
    import torch

    stream, out = None, []
    for frame in codes.split(1, dim=-1):
        wave, stream = model.decode_stream(frame, stream)
        out.append(wave)
    return torch.cat(out, dim=-1)


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def worker(case: str, seconds: float, n_q: int, repeats: int) -> dict:
    import torch

    start = time.perf_counter()
    encode, decode, model = build(case)
    built_s, rss_built = time.perf_counter() - start, peak_rss_mb()
    wave = speech_like(seconds)
    with torch.inference_mode():
        enc_s, codes = timed(lambda: encode(wave, n_q), repeats)
        dec_s, audio = timed(lambda: decode(codes), repeats)
    return {"case": case, "seconds": seconds, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "codes_shape": list(codes.shape), "audio_samples": audio.shape[-1], "build_s": round(built_s, 2),
            "rtf_encode": round(enc_s / seconds, 4), "rtf_decode": round(dec_s / seconds, 4),
            "rtf_total": round((enc_s + dec_s) / seconds, 4), "rss_after_build_mb": round(rss_built),
            "peak_rss_mb": round(peak_rss_mb()), "pass_rss_mb": round(peak_rss_mb() - rss_built)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--n-q", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(worker(args.worker[0], float(args.worker[1]), args.n_q, args.repeats)))
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    results = []
    for seconds in args.durations:
        for case in args.cases:
            cmd = [sys.executable, __file__, "--worker", case, str(seconds), "--n-q", str(args.n_q),
                   "--threads", str(args.threads), "--repeats", str(args.repeats)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else
                           {"case": case, "seconds": seconds, "error": proc.stderr.strip()[-500:]})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"host": platform.node(), "cpu_count": os.cpu_count(), "threads": args.threads,
                      "n_q": args.n_q, "load_avg_1min": round(os.getloadavg()[0], 1), "results": results}, indent=2))


if __name__ == "__main__":
    main()
