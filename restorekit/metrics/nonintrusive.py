"""Non-intrusive metrics: quality predicted from the estimate alone.

DNSMOS and PLCMOS run the ONNX models that ``speechmos`` ships in its wheel; UTMOS loads the
UTMOS22 strong learner through ``torch.hub`` (or a local clone) and says clearly how to make
its weights available when they are not. Models load once, in the constructor, so a suite
worker process pays for them once rather than per file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from restorekit.errors import CheckpointError, ConfigError
from restorekit.metrics import METRICS
from restorekit.metrics.base import Metric, offline


def _session_options(num_threads: int):
    import onnxruntime as ort

    # Fixed thread counts make the scores identical whether files run serially or in workers.
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = num_threads
    opts.inter_op_num_threads = 1
    return opts


def _session(path: str, num_threads: int):
    import onnxruntime as ort

    return ort.InferenceSession(path, _session_options(num_threads), providers=["CPUExecutionProvider"])


@METRICS.register("dnsmos")
class Dnsmos(Metric):
    """DNSMOS P.835 SIG/BAK/OVRL and P.808 MOS (1-5), speechmos's ONNX models, at 16 kHz; no reference."""

    sample_rate = 16000
    needs_full_scale = True
    requires = ("speechmos", "onnxruntime")
    keys = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")

    def __init__(self, personalized: bool = False, num_threads: int = 1) -> None:
        from speechmos import dnsmos

        folder = Path(dnsmos.__file__).parent
        primary = folder / ("pdnsmos_models" if personalized else "dnsmos_models") / "sig_bak_ovr.onnx"
        # speechmos's DNSMOS class with our own sessions (its constructor takes no thread count).
        self.model = dnsmos.DNSMOS.__new__(dnsmos.DNSMOS)
        self.model.primary_model_path = str(primary)
        self.model.onnx_sess = _session(str(primary), num_threads)
        self.model.p808_onnx_sess = _session(str(folder / "dnsmos_models" / "model_v8.onnx"), num_threads)
        self.personalized = personalized

    def score(self, estimate: np.ndarray, reference: np.ndarray | None, sr: int) -> dict[str, float]:
        out = self.model(estimate, sr, self.personalized)
        return {
            "dnsmos_sig": out["sig_mos"],
            "dnsmos_bak": out["bak_mos"],
            "dnsmos_ovrl": out["ovrl_mos"],
            "dnsmos_p808": out["p808_mos"],
        }


@METRICS.register("plcmos")
class Plcmos(Metric):
    """PLCMOS v2 (packet-loss-concealment MOS, 1-5), speechmos's ONNX model, at 16 kHz; no reference."""

    sample_rate = 16000
    needs_full_scale = True
    requires = ("speechmos", "onnxruntime")
    keys = ("plcmos",)

    def __init__(self, seed: int = 0, num_threads: int = 1) -> None:
        from speechmos import plcmos

        self.model = plcmos.PLCMOS()
        self.model.session = _session(self.model.model_path, num_threads)
        self.seed = seed

    def score(self, estimate: np.ndarray, reference: np.ndarray | None, sr: int) -> dict[str, float]:
        # PLCMOS averages over rater embeddings drawn from numpy's global generator; seed it
        # per call (and restore it) so a file's score does not depend on which files ran first.
        state = np.random.get_state()
        try:
            np.random.seed(self.seed)
            value = self.model(estimate)["plcmos"]
        finally:
            np.random.set_state(state)
        return {"plcmos": value}


UTMOS_REPO = "tarepan/SpeechMOS:v1.2.0"


@METRICS.register("utmos")
class Utmos(Metric):
    """UTMOS22 strong learner MOS (1-5) via torch.hub (tarepan/SpeechMOS), at 16 kHz; no reference."""

    sample_rate = 16000
    keys = ("utmos",)

    def __init__(self, repo: str = UTMOS_REPO, model: str = "utmos22_strong", source: str = "github") -> None:
        self.model = load_utmos(repo, model, source)

    def score(self, estimate: np.ndarray, reference: np.ndarray | None, sr: int) -> dict[str, float]:
        import torch

        with torch.inference_mode():
            return {"utmos": float(self.model(torch.from_numpy(estimate)[None], sr).squeeze())}


def load_utmos(repo: str, model: str, source: str):
    """The UTMOS predictor from torch.hub (``source='github'``) or a local clone (``'local'``)."""
    import torch

    how = (
        f"make the weights available: clone https://github.com/{repo.split(':')[0]} with its "
        "checkpoint and set metrics args {repo: /path/to/clone, source: local}, or run once online "
        "so torch.hub caches it"
    )
    if source == "github" and offline() and not _hub_cached(repo):
        raise CheckpointError(
            f"utmos: weights for {repo} are not available offline (not in the torch.hub cache "
            f"{torch.hub.get_dir()}); {how}"
        )
    try:
        predictor = torch.hub.load(repo, model, source=source, trust_repo=True, skip_validation=True)
    except ModuleNotFoundError as exc:  # the hub code's own imports: not a weights problem
        raise ConfigError(
            f"utmos: {repo}'s code imports {exc.name}, which is not installed (restorekit does not depend on "
            "torchaudio); install a build of it that matches your torch, or score with utmosv2 or wvmos"
        ) from exc
    except Exception as exc:  # network, missing hubconf, missing checkpoint: all mean "not available"
        raise CheckpointError(f"utmos: could not load {model} from {repo} ({source}): {exc}; {how}") from exc
    return predictor.eval()


def _hub_cached(repo: str) -> bool:
    import torch

    owner_name, _, ref = repo.partition(":")
    folder = "_".join([*owner_name.split("/"), ref or "main"])
    return (Path(torch.hub.get_dir()) / folder).is_dir()
