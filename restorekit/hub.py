"""Exports as Hugging Face model repos: resolve a Hub id or folder, write a model card, push.

An export folder (``config.yaml``, ``<role>.safetensors``, ``export.json``) is already a model
repo's layout; a ``README.md`` model card makes it a complete one. Downloads and uploads go
through ``huggingface_hub`` (installed with transformers); offline (``HF_HUB_OFFLINE=1``) a Hub id
resolves from the local cache only.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from restorekit.config import atomic_write_text
from restorekit.errors import CheckpointError, one_line

CARD = "README.md"
EXPORT_FILES = ["config.yaml", "export.json", "*.safetensors", CARD, "evaluation.md"]


def is_export(path: str | Path) -> bool:
    return (Path(path).expanduser() / "config.yaml").is_file()


def resolve_export(spec: str | Path, revision: str | None = None) -> Path:
    """A local export folder for ``spec``: the folder itself, or a Hub repo's cached snapshot.

    A Hub id (``user/repo``) is downloaded when online, taken from the cache offline; with
    neither, a CheckpointError says how to get the files.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        if not is_export(path):
            raise CheckpointError(f"{path}: not a restorekit export (no config.yaml); point to the export/ folder "
                                  "a trainer wrote, or to a downloaded Hub repo of one")
        return path
    if str(spec).count("/") != 1 or str(spec).startswith((".", "/", "~")):
        raise CheckpointError(f"'{spec}' is neither an export folder nor a Hugging Face Hub id (user/repo)")
    return _download(str(spec), revision)


def _download(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=EXPORT_FILES))
    except LocalEntryNotFoundError as exc:
        raise CheckpointError(
            f"'{repo_id}' is not in the local Hugging Face cache and cannot be downloaded now ({_why(exc)}); "
            f"download it while online (huggingface-cli download {repo_id}) or pass the export folder"
        ) from exc
    except (RepositoryNotFoundError, HFValidationError) as exc:
        raise CheckpointError(f"'{repo_id}': no such model repo on the Hugging Face Hub "
                              f"({one_line(exc)[:160]}); check the id, or log in for a private repo") from exc
    if not is_export(folder):
        raise CheckpointError(f"Hub repo '{repo_id}' holds no restorekit export (no config.yaml in {folder})")
    return folder


def _why(exc: Exception) -> str:
    from huggingface_hub import constants

    return "offline mode: HF_HUB_OFFLINE=1" if constants.HF_HUB_OFFLINE else one_line(exc)[:160]


def write_model_card(export_dir: str | Path, evaluation: str | None = None) -> Path:
    """Write ``README.md`` into an export: what it restores, how it was trained, how to use it.

    ``evaluation`` (markdown, e.g. the summary table ``evaluate.py`` printed) is included when
    given, else an ``evaluation.md`` already in the folder is, else the card says none exists.
    """
    folder = Path(export_dir)
    cfg = OmegaConf.to_container(OmegaConf.load(folder / "config.yaml"), resolve=False)
    if evaluation is None and (folder / "evaluation.md").is_file():
        evaluation = (folder / "evaluation.md").read_text(encoding="utf-8")
    return atomic_write_text(folder / CARD, _card(cfg, folder.name, evaluation))


def _card(cfg: Mapping[str, Any], name: str, evaluation: str | None) -> str:
    models = cfg.get("models") or {}
    trainer = (cfg.get("trainer") or {}).get("name", "unknown")
    steps = ((cfg.get("trainer") or {}).get("args") or {}).get("max_steps", "?")
    roles = "\n".join(f"- `{role}`: `{(node or {}).get('name')}`" for role, node in models.items())
    data = cfg.get("data") or {}
    corpora = {k: v for k, v in data.items() if k.endswith("_dirs") or k in ("train", "valid")}
    lines = [
        "---", "library_name: restorekit", "license: apache-2.0",
        "tags:", "- speech-restoration", "- audio-to-audio", "- restorekit", "---", "",
        f"# {cfg.get('exp', {}).get('name', name)}", "",
        f"A restorekit export trained by `{trainer}` ({steps} steps).", "",
        "## Use", "", "```python", "import restorekit", "",
        'restorer = restorekit.load("THIS_REPO_ID_OR_FOLDER")',
        'restorer.restore_file("noisy.wav", "restored.wav")', "```", "",
        "```bash", "restorekit restore exp.ckpt_dir=FOLDER input=noisy/ output_dir=restored/", "```", "",
        "## Models", "", roles or "(none)", "",
        "## Training data", "", "```yaml", OmegaConf.to_yaml(corpora).rstrip() or "{}", "```", "",
        "## Evaluation", "", evaluation.strip() if evaluation else "No evaluation has been recorded for this export.",
        "", "The full training config is `config.yaml`.", "",
    ]
    return "\n".join(lines)


def push_to_hub(export_dir: str | Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload an export (with a model card written if missing) to ``repo_id``; returns the repo URL."""
    from huggingface_hub import HfApi

    folder = Path(export_dir)
    if not is_export(folder):
        raise CheckpointError(f"{folder}: not a restorekit export (no config.yaml); push the export/ folder")
    if not (folder / CARD).is_file():
        write_model_card(folder)
    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, allow_patterns=EXPORT_FILES,
                      commit_message="Upload restorekit export")
    return str(url)
