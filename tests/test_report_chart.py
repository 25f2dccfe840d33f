"""The report's chart and warnings with few files: bounded metrics stay on their scale, n is shown."""
from __future__ import annotations

import matplotlib.pyplot as plt

from restorekit.evaluation_report import chart_figure, write_report
from restorekit.metrics.suite import summary_markdown


def _stat(mean, half, n):
    return {"mean": mean, "std": 0.5, "ci95": [mean - half, mean + half], "ci95_half": half, "n": n, "failed": 0}


SUMMARY = {
    "systems": {
        "restored": {"files": 2, "metrics": {"pesq_wb": _stat(2.0, 12.7, 2), "si_sdr": _stat(-3.0, 2.0, 2)}},
        "degraded": {"files": 8, "metrics": {"pesq_wb": _stat(1.5, 0.2, 8), "si_sdr": _stat(5.0, 1.0, 8)}},
    },
    "failures": {"count": 0},
    "lower_is_better": [],
}


def test_pesq_panel_stays_on_its_scale_and_labels_n():
    """Catches bars drawn from 0 with the axis following a huge n=2 interval down to -10."""
    fig = chart_figure(SUMMARY, ["pesq_wb", "si_sdr"])
    pesq, sisdr = fig.axes[0], fig.axes[1]
    assert pesq.get_ylim() == (1.0, 4.64)
    assert [t.get_text() for t in pesq.get_xticklabels()] == ["restored\nn=2 (few)", "degraded\nn=8"]
    assert [round(p.get_y(), 3) for p in pesq.patches] == [1.0, 1.0]  # bars start at PESQ's floor
    assert sisdr.get_ylim()[0] < -3.0  # unbounded metrics still fit their bars
    plt.close(fig)


def test_report_and_summary_warn_about_few_files(tmp_path):
    page = write_report(tmp_path, SUMMARY, [], ["pesq_wb", "si_sdr"], examples=0).read_text()
    assert 'id="small-n"' in page and "restored: pesq_wb (n=2), restored: si_sdr (n=2)" in page
    md = summary_markdown(SUMMARY)
    assert "Warning: fewer than 5 files scored for restored: pesq_wb (n=2), restored: si_sdr (n=2)" in md
    assert "degraded" not in md.split("Warning")[1]


def test_evaluate_writes_under_a_gitignored_folder_by_default():
    """Catches a default output folder that `git status` would show (it was exp/eval/)."""
    import subprocess
    from pathlib import Path

    from restorekit.config import load_config

    root = Path(__file__).resolve().parents[1]
    cfg = load_config([f"exp.config_path={root}/configs/eval/score_folder.yaml", "systems.outputs=/x",
                       "data.references=/y"], require_complete=False)
    out = str(cfg.exp.output_dir)
    assert out == "outputs/eval/score_folder"
    probe = subprocess.run(["git", "check-ignore", "-q", f"{out}/report/summary.json"], cwd=root, check=False)
    assert probe.returncode == 0, f"{out} is not ignored by git"
