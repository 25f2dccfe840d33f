"""``compile=true``: a Miipher-2 export restored through ``inference.py`` with WaveFit's generator passes
compiled by torch.compile (Inductor, C++ kernels on the CPU) gives the files the eager run gives, and
compiles a bounded number of graphs however many lengths the corpus has; the options are checked.

Tolerance: one step of the 16-bit files written (2^-15), as the models' outputs differ by ~5e-7 (fused
kernels round differently), which can move a sample across a quantisation boundary."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from restorekit.errors import ConfigError
from restorekit.inference import main, parse_args
from restorekit.models import MODELS
from restorekit.models.compiling import check_compiler
from restorekit.models.export import save_export
from test_models import EXAMPLES

SR = 16000
ONE_STEP = 2**-15  # of the 16-bit PCM files inference.py writes
# lengths from 10 to 100 feature frames (50 Hz): plain dynamic tracing guards on length ranges there
# (a graph for 10, 20, 45, 65 and 100 frames each); the 2.4 s file is chunked (2 s chunks): 2.0 s + rest
SECONDS = {"a.wav": 0.2, "b.wav": 2.4, "c.wav": 0.4, "d.wav": 0.9, "e.wav": 1.3}


def _export(tmp_path):
    torch.manual_seed(0)
    models = {"feature_cleaner": {"name": "parallel_adapter_cleaner", "args": EXAMPLES["parallel_adapter_cleaner"]},
              "vocoder": {"name": "wavefit", "args": EXAMPLES["wavefit"]}}
    cfg = {"exp": {"name": "tiny"}, "models": models, "trainer": {"name": "miipher2_vocoder_finetune", "args": {}}}
    mods = {role: MODELS.build(node, where=f"models.{role}") for role, node in models.items()}
    return save_export(tmp_path / "export", cfg, mods)


def _corpus(root):
    root.mkdir()
    for i, (name, secs) in enumerate(SECONDS.items()):
        t = np.arange(int(secs * SR)) / SR
        wave = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.02 * np.random.default_rng(i).standard_normal(len(t))
        sf.write(root / name, wave.astype(np.float32), SR, subtype="FLOAT")
    return root


@pytest.mark.slow
def test_compiled_inference_equals_eager_in_one_graph_for_every_length(tmp_path, one_thread):
    """inference.py with compile=true, one piece at a time (the CPU default): the files eager gives, from
    a single compiled graph for pieces of 10 to 100 frames."""
    export, inputs = _export(tmp_path), _corpus(tmp_path / "in")
    run = [f"exp.ckpt_dir={export}", f"input={inputs}", "batch_size=1", "enhancer.args.chunk_seconds=2.0",
           "enhancer.args.overlap_seconds=0.2", "exp.device=cpu"]
    main([*run, f"output_dir={tmp_path / 'eager'}"])
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    main([*run, f"output_dir={tmp_path / 'compiled'}", "compile=true"])
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs == 1
    summary = json.loads((tmp_path / "compiled" / "inference_summary.json").read_text())
    assert (summary["done"], summary["failed"]) == (5, 0)
    for name, secs in SECONDS.items():
        eager, rate = sf.read(tmp_path / "eager" / name, dtype="float32")
        compiled, compiled_rate = sf.read(tmp_path / "compiled" / name, dtype="float32")
        assert rate == compiled_rate == 24000 and len(compiled) == round(secs * 24000)
        assert np.abs(eager).max() > 0.5  # real output, not silence
        np.testing.assert_allclose(compiled, eager, atol=1.01 * ONE_STEP, rtol=0)


def test_compile_needs_a_cpp_compiler_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no g++, c++ or clang++
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ConfigError, match=r"wavefit: compile=true needs a C\+\+ compiler on the CPU .*"
                                          r"install one .* or set compile=false"):
        check_compiler("cpu", "wavefit")
    check_compiler("cuda", "wavefit")  # Triton builds GPU kernels itself: nothing to find on PATH
    monkeypatch.setenv("CXX", "/usr/bin/env")  # any executable named by $CXX counts
    check_compiler("cpu", "wavefit")


def test_compile_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="compile=true compiles a restorekit export's vocoder .* "
                                          "enhancer=identity has nothing to compile"):
        parse_args(["enhancer=identity", "input=x", "output_dir=y", "compile=true"])
    with pytest.raises(ConfigError, match="compile=3 must be true or false"):
        parse_args(["enhancer=identity", "input=x", "output_dir=y", "compile=3"])
    cleaner = {**EXAMPLES["parallel_adapter_cleaner"]}
    node = {"name": "miipher2", "args": {
        "feature_cleaner": {"name": "parallel_adapter_cleaner", "args": cleaner},
        "vocoder": {"name": "hifigan_ssl_vocoder", "args": EXAMPLES["hifigan_ssl_vocoder"]}, "compile": True}}
    with pytest.raises(ConfigError, match="miipher2: compile=true runs a WaveFit vocoder's generator through "
                                          "torch.compile; this restorer's vocoder is HiFiGANSSLVocoder"):
        MODELS.build(node, where="models.restorer")


def test_load_and_the_enhancer_pass_compile_to_the_restorer(tmp_path):
    """restorekit.load(export, compile=True) reaches the restorer, which compiles at its first restore
    (not at build: the weights must be loaded and on their device first); the default stays eager."""
    import restorekit

    export = _export(tmp_path)
    compiled = restorekit.load(export, compile=True).enhancer.restorer
    assert compiled.compile_vocoder and not compiled._compiled and compiled.vocoder._compiled_pass is None
    eager = restorekit.load(export).enhancer.restorer
    assert not eager.compile_vocoder
