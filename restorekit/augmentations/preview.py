"""Listen to and look at a degradation config, op by op.

    python -m restorekit.augmentations.preview CONFIG INPUT.wav OUT_DIR [key=value ...] [--seed N]

Writes ``00_clean``, one ``NN_<op>`` per op of the chain (that op alone, always applied; ops
with ``p: 0`` are off and skipped),
and ``chain`` (the whole chain, as training would draw it for ``--seed``), each as a WAV and
a spectrogram PNG, plus ``params.json`` with what each one drew. ``key=value`` overrides
are applied to CONFIG first, e.g. ``data.noise_dirs=[/data/noise]``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

from restorekit import audio
from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.chain import Chain, run_op, sample_rng
from restorekit.config import apply_overrides, load_yaml
from restorekit.errors import ConfigError, RestorekitError, one_line


def chain_node(cfg: DictConfig, config_path: str) -> tuple[Any, str]:
    """The chain node of a degradation config and its config path."""
    for key in ("data.degradations", "degradations"):
        node = OmegaConf.select(cfg, key, throw_on_missing=False)
        if node is not None:
            return node, key
    if "name" in cfg:
        return cfg, "(top level)"
    raise ConfigError(
        f"{config_path}: no degradation chain found; expected data.degradations, degradations, "
        "or a {name: chain, args: {ops: [...]}} node at the top level"
    )


def build_chain(config_path: str, overrides: Sequence[str]) -> tuple[Chain, str]:
    cfg = apply_overrides(load_yaml(config_path), overrides)
    node, where = chain_node(cfg, config_path)
    try:
        plain = OmegaConf.to_container(node, resolve=True, throw_on_missing=True) if isinstance(node, DictConfig) else node
    except (MissingMandatoryValue, InterpolationToMissingValueError) as exc:
        found = re.search(r"Missing mandatory value: ([\w.\[\]]+)", str(exc))
        key = found.group(1) if found else exc.full_key
        raise ConfigError(
            f"{config_path}: {key} is required (???) but not set; pass it as an override, e.g. {key}=[/path/to/folder]"
        ) from exc
    chain = AUGMENTATIONS.build(plain, where=where)
    if not isinstance(chain, Chain):
        chain = AUGMENTATIONS.build({"name": "chain", "args": {"ops": [plain], "path": where}}, where=where)
    return chain, where


def save_spectrogram(path: Path, wave: np.ndarray, sr: int, title: str) -> None:
    """A log-magnitude spectrogram PNG (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import signal

    f, t, s = signal.spectrogram(wave, fs=sr, nperseg=512, noverlap=384)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.pcolormesh(t, f / 1000, 10 * np.log10(s + 1e-12), shading="auto", vmin=-120, vmax=-20, cmap="magma")
    ax.set(xlabel="time (s)", ylabel="frequency (kHz)", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_pair(out_dir: Path, stem: str, wave: np.ndarray, sr: int, title: str) -> None:
    peak = audio.peak(wave)
    safe = wave / peak if peak > 1.0 else wave  # 16-bit WAV would clip: scale down instead
    audio.save(out_dir / f"{stem}.wav", safe, sr, overwrite=True)
    save_spectrogram(out_dir / f"{stem}.png", wave, sr, title)


def preview(config: str, input_path: str, out_dir: str, overrides: Sequence[str] = (), seed: int = 0) -> dict:
    """Write the clean input, each op alone and the whole chain; returns what was drawn."""
    chain, where = build_chain(config, overrides)
    wave, sr = audio.load(input_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_pair(out, "00_clean", wave, sr, "clean")
    drawn: dict[str, Any] = {}
    for i, op in enumerate(chain.ops, start=1):
        if op.p == 0:  # switched off in this config (e.g. neural_codec, whose weights may be absent)
            continue
        degraded, params = run_op(op.aug, op.name, op.where, wave, sr, sample_rng(seed, 0, i))
        stem = f"{i:02d}_{op.name}"
        write_pair(out, stem, degraded, sr, f"{op.name} {_short(params)}")
        drawn[stem] = params
    degraded, params = chain(wave, sr, sample_rng(seed, 0, 0))
    write_pair(out, "chain", degraded, sr, "chain: " + " > ".join(d["name"] for d in params["applied"]))
    drawn["chain"] = params
    (out / "params.json").write_text(json.dumps(drawn, indent=2, default=str))
    return drawn


def _short(params: dict) -> str:
    items = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items() if k != "file"]
    return ", ".join(items)[:80]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m restorekit.augmentations.preview", description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("input")
    parser.add_argument("out_dir")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        drawn = preview(args.config, args.input, args.out_dir, args.overrides, args.seed)
    except RestorekitError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(f"wrote {len(drawn) + 1} WAV/PNG pairs and params.json to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
