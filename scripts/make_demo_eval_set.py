"""Write a paired evaluation set from the demo corpus: clean/ and degraded/ WAVs, same names.

The degradations are the ones a training config applies to its validation data (by default the
quickstart restorer's chain, configs/quickstart/restorer.yaml), so `make demo` scores the restorer
on the kind of damage it was trained on, on voices and sentences it never heard (the demo
corpus's valid split). Each file gets its own seeded generator: the set is identical on every run.

    python scripts/make_demo_eval_set.py --out outputs/demo/eval_set
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from restorekit.audio import load, save
from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.chain import sample_rng
from restorekit.config import load_config
from restorekit.datasets.demo import demo_corpus_dir
from restorekit.errors import ConfigError

NODE = "data.valid.args.degradations"


def degradation_chain(config_path: str):
    """The chain a training config applies to its validation data."""
    cfg = load_config([f"exp.config_path={config_path}"], require_complete=False)
    node = cfg.data.valid.args.get("degradations")
    if node is None:
        raise ConfigError(f"{config_path}: {NODE} is null; pick a config that degrades its validation data "
                          "(e.g. configs/quickstart/restorer.yaml)")
    return AUGMENTATIONS.build(node, where=NODE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for clean/ and degraded/ (created)")
    parser.add_argument("--config", default="configs/quickstart/restorer.yaml", help="config whose "
                        f"{NODE} is applied")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--sample-rate", type=int, default=16000, help="rate of the written files (Hz)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="demo corpus cache (default: restorekit's)")
    args = parser.parse_args()

    chain = degradation_chain(args.config)
    root = demo_corpus_dir(args.split, args.cache_dir)
    with open(root / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = sorted(r["path"] for r in csv.DictReader(f))
    out = Path(args.out)
    for index, rel in enumerate(rows):
        clean, sr = load(root / rel, sr=args.sample_rate)
        degraded, _ = chain(clean, sr, sample_rng(args.seed, 0, index))
        save(out / "clean" / rel, clean, sr, overwrite=True)
        save(out / "degraded" / rel, degraded, sr, overwrite=True)
    print(f"{len(rows)} clean/degraded pairs ({args.split} split, {args.sample_rate} Hz) written to {out}")


if __name__ == "__main__":
    main()
