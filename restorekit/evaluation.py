"""``evaluate``: score folders of outputs, or run enhancers over a data set and score them all.

Config (see configs/eval/)::

    exp:      {name, output_dir}
    data:     {inputs: degraded folder the enhancers run on, references: clean folder or null,
               transcripts: CSV (name,text) for WER or null}
    systems:  {label: folder of finished outputs}          # scored as they are
    enhancers: {label: {name, args}}                       # run over data.inputs, then scored
    metrics:  [{name, args}, ...]
    suite:    {workers}
    report:   {html, examples}

Files pair by their path relative to their folder, without the extension (``a/b.flac`` in the
outputs matches ``a/b.wav`` in the references); this small helper is used instead of the
dataset classes because scoring needs file paths, not training items. Everything lands in
``<output_dir>/report/``: per_file.csv, failures.csv, summary.json, summary.md, report.html.
"""
from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from restorekit.audio import load, save
from restorekit.config import load_config, save_config, to_plain
from restorekit.errors import AudioError, ConfigError, DataError, RestorekitError, one_line

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")


def list_audio(folder: str | Path, where: str) -> dict[str, Path]:
    """Audio files under ``folder`` (recursively) keyed by relative path without suffix."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{where}: folder not found: {root}; check the path")
    files = {
        p.relative_to(root).with_suffix("").as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file() and not p.name.startswith(".")
    }
    if not files:
        raise DataError(f"{where}: no audio files ({', '.join(AUDIO_SUFFIXES)}) under {root}")
    return files


def pair_references(names: Sequence[str], references: dict[str, Path] | None, where: str) -> dict[str, str | None]:
    """Each name's reference path (None when unpaired); a name without one is an error."""
    if references is None:
        return {n: None for n in names}
    missing = [n for n in names if n not in references]
    if missing:
        raise DataError(
            f"{where}: {len(missing)} file(s) have no reference with the same relative path in "
            f"data.references, e.g. '{missing[0]}'; add them or remove the outputs"
        )
    return {n: str(references[n]) for n in names}


def read_transcripts(path: str | Path | None) -> dict[str, str]:
    """``name -> text`` from a CSV with columns ``name,text`` (name: relative path, suffix optional)."""
    if not path:
        return {}
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data.transcripts: file not found: {path}; give a CSV with columns name,text")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {"name", "text"} <= set(rows[0]):
        raise DataError(f"{path}: transcripts need the columns name,text; found {', '.join(rows[0])}")
    return {_strip_audio_suffix(r["name"]): r["text"] for r in rows}


def _strip_audio_suffix(name: str) -> str:
    path = Path(name)
    return path.with_suffix("").as_posix() if path.suffix.lower() in AUDIO_SUFFIXES else path.as_posix()


def run_enhancer(label: str, node: Any, inputs: dict[str, Path], out_dir: Path,
                 failed: dict[str, str] | None = None) -> dict[str, Path]:
    """Enhance every input into ``out_dir/<rel>.wav`` (16-bit); existing outputs are kept (resume).

    An enhancer that crashes on one file does not end the comparison: the reason goes into
    ``failed`` (name -> reason), the suite records it for that file, and a rerun tries it again.
    """
    from restorekit.enhancers import ENHANCERS

    enhancer = ENHANCERS.build(node, where=f"enhancers.{label}")
    write_enhancer_info(enhancer, out_dir)
    outputs = {}
    for name, path in inputs.items():
        out = out_dir / f"{name}.wav"
        outputs[name] = out
        if out.exists():
            continue
        try:
            wave, sr = load(path)
        except AudioError as exc:  # reported and skipped: the suite records it as unreadable
            log.warning("enhancer %s: skipping %s: %s", label, path, exc)
            continue
        try:
            enhanced, sr_out = enhancer(wave, sr)
        except Exception as exc:  # one file must not sink a long comparison; bugs keep their traceback
            log.warning("enhancer %s failed on %s", label, path, exc_info=not isinstance(exc, RestorekitError))
            if failed is not None:
                failed[name] = f"enhancer {label} failed: {type(exc).__name__}: {one_line(exc)}"
            continue
        save(out, enhanced, sr_out)
    return outputs


INFO_FILE = "enhancer_info.json"


def write_enhancer_info(enhancer: Any, out_dir: Path) -> None:
    """An enhancer's ``info`` (e.g. a codec's bitrate) beside its outputs, for the report."""
    info = getattr(enhancer, "info", None)
    if info:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / INFO_FILE).write_text(json.dumps(info, default=str), encoding="utf-8")


def add_enhancer_info(summary: dict[str, Any], out_dir: Path) -> None:
    """Each enhancer's ``info`` into ``summary["systems"][label]["info"]`` (the report shows it)."""
    for label, system in summary.get("systems", {}).items():
        path = out_dir / "outputs" / label / INFO_FILE
        if path.is_file():
            system["info"] = json.loads(path.read_text(encoding="utf-8"))


def plan_jobs(cfg: DictConfig, out_dir: Path) -> list:
    """The scoring jobs of every system and enhancer in the config, in config order."""
    from restorekit.metrics.suite import Job

    data = cfg.get("data") or {}
    refs = list_audio(data["references"], "data.references") if data.get("references") else None
    transcripts = read_transcripts(data.get("transcripts"))
    failed: dict[str, dict[str, str]] = {}
    systems = _systems(cfg, out_dir, failed)
    jobs = []
    for label, outputs in systems.items():
        paired = pair_references(list(outputs), refs, f"systems.{label}")
        why = failed.get(label, {})
        jobs += [Job(label, n, str(p), paired[n], transcripts.get(n), why.get(n)) for n, p in outputs.items()]
    return jobs


def _systems(cfg: DictConfig, out_dir: Path, failed: dict[str, dict[str, str]]) -> dict[str, dict[str, Path]]:
    systems = {str(k): list_audio(v, f"systems.{k}") for k, v in (to_plain(cfg.get("systems")) or {}).items()}
    enhancers = to_plain(cfg.get("enhancers")) or {}
    if enhancers:
        inputs_dir = (cfg.get("data") or {}).get("inputs")
        if not inputs_dir:
            raise ConfigError("enhancers are listed but data.inputs is not set; point it at the degraded folder")
        inputs = list_audio(inputs_dir, "data.inputs")
        for label, node in enhancers.items():
            failed[str(label)] = {}
            systems[str(label)] = run_enhancer(str(label), node, inputs, out_dir / "outputs" / str(label),
                                               failed[str(label)])
    if not systems:
        raise ConfigError("nothing to score: list folders under systems: {label: folder} or enhancers: {label: {name: ...}}")
    return systems


def _check_references(cfg: DictConfig, nodes: list[dict[str, Any]]) -> None:
    from restorekit.metrics import METRICS

    intrusive = [n["name"] for n in nodes if METRICS.get(n["name"]).needs_reference]
    if intrusive and not (cfg.get("data") or {}).get("references"):
        raise ConfigError(
            f"metrics {', '.join(intrusive)} need references but data.references is not set; "
            "set it to the clean folder or remove those metrics"
        )


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run the whole evaluation a config describes; returns the summary (also written to disk)."""
    from restorekit.evaluation_report import write_report
    from restorekit.metrics.suite import MetricSuite, key_labels, summarize, write_results, write_summary

    out_dir = Path(cfg.exp.output_dir)
    suite = MetricSuite(cfg.get("metrics"), workers=int((cfg.get("suite") or {}).get("workers", 1)))
    _check_references(cfg, suite.nodes)
    save_config(cfg, out_dir)
    results = suite.run(plan_jobs(cfg, out_dir))
    report_dir = out_dir / "report"
    keys = suite.keys()
    write_results(results, keys, report_dir)
    summary = summarize(results, keys, key_labels(suite.nodes))
    summary["lower_is_better"] = sorted(suite.lower_is_better())
    add_enhancer_info(summary, out_dir)
    write_summary(summary, report_dir)
    report = to_plain(cfg.get("report")) or {}
    if report.get("html", True):
        write_report(report_dir, summary, results, keys, examples=int(report.get("examples", 6)))
    return summary


def main(argv: Sequence[str]) -> int:
    """``python evaluate.py exp.config_path=configs/eval/X.yaml [key=value ...]``."""
    from restorekit.metrics.suite import summary_markdown

    cfg = load_config(argv)
    summary = evaluate(cfg)
    print(summary_markdown(summary), end="")
    print(f"report: {Path(cfg.exp.output_dir) / 'report'}")
    return 0
