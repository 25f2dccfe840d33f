"""MOS predictors as frozen torch modules, differentiable w.r.t. the audio: WV-MOS and UTMOSv2.

Both score 16 kHz speech; :meth:`MosPredictor.forward` takes audio at any rate (resampled with
julius on the audio's device) and returns one predicted MOS per item. Parameters never get
gradients and the networks stay in eval mode, but gradients flow to the input, so the same
module serves the ``wvmos`` / ``utmosv2`` metrics and the ``utmos_loss`` human-feedback loss.

- **WV-MOS** (Andreev et al. 2022, package ``wvmos``): wav2vec 2.0 base, then per frame
  Linear(768, 128) -> ReLU -> Dropout(0.1) -> Linear(128, 1), averaged over frames. Released as a
  PyTorch Lightning checkpoint (``wav2vec2.ckpt`` on Zenodo record 6201162, which the package
  caches as ``~/.cache/wv_mos/wv_mos.ckpt``) whose ``state_dict`` holds ``model.encoder.*``
  (the whole wav2vec 2.0 model) and ``model.dense.{0,3}.*``.
- **UTMOSv2** (Baba et al. 2024, sarulab-speech/UTMOSv2, config ``fusion_stage3``): an SSL branch
  (wav2vec 2.0 base, learned weighted sum of its 13 hidden states, one 8-head self-attention,
  [mean of attention output, max of weighted states]) and a spectrogram branch (four mel
  spectrograms, window 4096/2048/1024/512, each through its own timm EfficientNetV2-S, learned
  weighted sum, cat-avg-max pooling over time, 8-head attention), fused by one Linear that also
  sees a one-hot data-domain id. Released as a plain state dict per fold
  (``fold{0..4}_s42_best_model.pth`` on the Hub repo sarulab-speech/UTMOSv2) with keys
  ``ssl.encoder.model.*``, ``ssl.weights``, ``ssl.attn.0.*``, ``spec_long.backbones.{0..3}.*``,
  ``spec_long.weights``, ``spec_long.attn.*``, ``fc.*``; the module layout here mirrors it.
"""
from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import julius
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from restorekit.errors import CheckpointError, ConfigError, one_line

MOS_SAMPLE_RATE = 16000

WVMOS_URL = "https://zenodo.org/record/6201162/files/wav2vec2.ckpt"
WVMOS_CACHE = Path("~/.cache/wv_mos/wv_mos.ckpt")  # where the wvmos package keeps it
UTMOSV2_URL = "https://huggingface.co/sarulab-speech/UTMOSv2/resolve/main/fold0_s42_best_model.pth"
UTMOSV2_CACHE = Path("~/.cache/utmosv2/models/fusion_stage3/fold0_s42_best_model.pth")  # the utmosv2 package's
# The data-domain one-hot order of UTMOSv2 (utmosv2/dataset/_utils.py); its predict() uses "sarulab".
UTMOSV2_DATASETS = ("bvcc", "sarulab", "blizzard2008", "blizzard2009", "blizzard2010-EH1", "blizzard2010-EH2",
                    "blizzard2010-ES1", "blizzard2010-ES3", "blizzard2011", "somos")


class MosPredictor(nn.Module):
    """A frozen MOS predictor: ``forward(wave (B, T) at sr Hz) -> MOS (B,)``, differentiable w.r.t. wave."""

    sample_rate = MOS_SAMPLE_RATE

    def freeze(self) -> MosPredictor:
        """No parameter takes gradients; eval mode (no dropout) for good."""
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> MosPredictor:
        """Stays in eval mode whatever the caller asks: dropout would make the score random."""
        return super().train(False)

    def forward(self, wave: torch.Tensor, sr: int) -> torch.Tensor:
        if wave.ndim != 2:
            raise ConfigError(f"{type(self).__name__}: expected audio of shape (batch, time), got {tuple(wave.shape)}")
        wave = wave.float()
        if int(sr) != self.sample_rate:
            wave = julius.resample_frac(wave, int(sr), self.sample_rate)
        return self.predict(wave)

    def predict(self, wave: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


def zero_mean_unit_var(wave: torch.Tensor) -> torch.Tensor:
    """Per-item normalisation of (B, T) audio as transformers' Wav2Vec2FeatureExtractor does it (in torch)."""
    mean = wave.mean(dim=-1, keepdim=True)
    var = wave.var(dim=-1, keepdim=True, unbiased=False)
    return (wave - mean) / torch.sqrt(var + 1e-7)


# --- WV-MOS -----------------------------------------------------------------------------------

class WvMos(MosPredictor):
    """WV-MOS: wave (B, T) at 16 kHz -> MOS (B,): wav2vec 2.0, per-frame MLP, mean over frames."""

    def __init__(self, config: Any, normalize: bool = True) -> None:
        from transformers import Wav2Vec2Model

        super().__init__()
        self.normalize = normalize
        self.encoder = Wav2Vec2Model(config)
        self.dense = nn.Sequential(nn.Linear(config.hidden_size, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 1))

    def predict(self, wave: torch.Tensor) -> torch.Tensor:
        x = zero_mean_unit_var(wave) if self.normalize else wave
        frames = self.encoder(x).last_hidden_state  # (B, frames, hidden)
        return self.dense(frames).mean(dim=(1, 2))


def load_wvmos(checkpoint: str | None, encoder: str, trust_checkpoint: bool = False) -> WvMos:
    """WV-MOS from its released Lightning checkpoint; ``encoder`` gives the wav2vec 2.0 config only."""
    how = (f"download {WVMOS_URL} (or run the wvmos package once online, which saves it as {WVMOS_CACHE}) "
           "and set the checkpoint argument to the file")
    path = checkpoint_path("wvmos", checkpoint, WVMOS_CACHE, how)
    config, normalize = wav2vec2_config("wvmos", encoder)
    raw = read_checkpoint("wvmos", path, trust_checkpoint)
    state = raw.get("state_dict", raw)
    state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")} or state
    if "dense.0.weight" not in state:
        raise CheckpointError(f"wvmos: {path} is not a WV-MOS checkpoint (no model.dense.0.weight); {how}")
    model = WvMos(config, normalize)
    load_state("wvmos", model, state, path)
    return model.freeze()


# --- UTMOSv2 ----------------------------------------------------------------------------------

class _HfEncoder(nn.Module):
    """Holds the transformers model under ``model``, as UTMOSv2's _SSLEncoder does (key layout)."""

    def __init__(self, config: Any) -> None:
        from transformers import AutoModel

        super().__init__()
        self.model = AutoModel.from_config(config)


class Utmosv2Ssl(nn.Module):
    """UTMOSv2 SSL branch (SSLExtModel without its fc): wave (B, T) 16 kHz -> (B, 2*hidden + domains).

    The trailing ``domains`` zeros are kept because the released fusion layer was trained on them.
    """

    def __init__(self, config: Any, normalize: bool = True, num_attn: int = 1,
                 num_domains: int = len(UTMOSV2_DATASETS)) -> None:
        super().__init__()
        self.normalize, self.num_domains = normalize, num_domains
        self.encoder = _HfEncoder(config)
        hidden, states = config.hidden_size, config.num_hidden_layers + 1
        self.weights = nn.Parameter(torch.full((states,), 1.0 / states))
        self.attn = nn.ModuleList(
            nn.MultiheadAttention(hidden, num_heads=8, dropout=0.2, batch_first=True) for _ in range(num_attn)
        )
        self.out_features = 2 * hidden + num_domains

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = zero_mean_unit_var(wave) if self.normalize else wave
        states = self.encoder.model(x, output_hidden_states=True).hidden_states
        x = sum(s * w for s, w in zip(states, self.weights))  # raw weights, as released (no softmax)
        y = x
        for attn in self.attn:
            y, _ = attn(y, y, y, need_weights=False)
        pooled = torch.cat([y.mean(dim=1), x.max(dim=1).values], dim=1)
        return torch.cat([pooled, pooled.new_zeros(len(pooled), self.num_domains)], dim=1)


class Utmosv2Spectrograms(nn.Module):
    """UTMOSv2's spectrogram images, in torch: crop (B, T) 16 kHz -> (B, n_specs, 3, H, W).

    Per window length: librosa's mel spectrogram (power, centred, zero-padded, Hann window centred
    in n_fft, Slaney mel bank), dB relative to its maximum with an 80 dB floor (librosa's
    power_to_db(ref=np.max)), then (dB + norm) / norm, three identical channels, bilinear resize
    with antialiasing to ``shape`` (torchvision's Resize). Written here because UTMOSv2 computes
    it in numpy with librosa, which gives no gradient.
    """

    def __init__(self, sr: int = MOS_SAMPLE_RATE, n_fft: int = 4096, hop_length: int = 32, n_mels: int = 512,
                 win_lengths: Sequence[int] = (4096, 2048, 1024, 512), shape: Sequence[int] = (512, 512),
                 norm: float = 80.0) -> None:
        import librosa

        super().__init__()
        self.n_fft, self.hop_length, self.norm = n_fft, hop_length, float(norm)
        self.win_lengths, self.shape = tuple(int(w) for w in win_lengths), tuple(int(s) for s in shape)
        mel = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
        self.register_buffer("mel", torch.from_numpy(mel).float(), persistent=False)

    def forward(self, crop: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.image(self.db(crop, w)) for w in self.win_lengths], dim=1)

    def db(self, crop: torch.Tensor, win_length: int) -> torch.Tensor:
        """Normalised dB mel spectrogram (B, n_mels, frames) for one window length."""
        window = torch.hann_window(win_length, device=crop.device)
        spec = torch.stft(crop, self.n_fft, self.hop_length, win_length, window, center=True,
                          pad_mode="constant", return_complex=True)
        power = self.mel @ (spec.real.square() + spec.imag.square())
        db = 10.0 * torch.log10(power.clamp_min(1e-10))
        db = db - db.amax(dim=(1, 2), keepdim=True)  # ref=np.max: 0 dB at the loudest bin
        return (db.clamp_min(-80.0) + self.norm) / self.norm  # -80: librosa's top_db

    def image(self, db: torch.Tensor) -> torch.Tensor:
        resized = F.interpolate(db[:, None], size=self.shape, mode="bilinear", align_corners=False, antialias=True)
        return resized.expand(-1, 3, -1, -1)


class Utmosv2Spec(nn.Module):
    """UTMOSv2 spectrogram branch (MultiSpecExtModel without its fc): (B, frames*n, 3, H, W) -> (B, 4*C + domains).

    ``backbones`` are n image CNNs returning (B, C, h, w) feature maps (timm, global pool removed).
    """

    def __init__(self, backbones: Sequence[nn.Module], num_features: int, num_frames: int = 2,
                 num_domains: int = len(UTMOSV2_DATASETS)) -> None:
        super().__init__()
        self.num_frames, self.num_domains = num_frames, num_domains
        self.backbones = nn.ModuleList(backbones)
        self.weights = nn.Parameter(torch.full((len(backbones),), 1.0 / len(backbones)))
        self.attn = nn.MultiheadAttention(2 * num_features, num_heads=8, dropout=0.2, batch_first=True)
        self.out_features = 4 * num_features + num_domains

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n = len(self.backbones)
        feats = [self.backbones[i % n](images[:, i]) for i in range(self.num_frames * n)]
        frames = [sum(feats[f * n + j] * w for j, w in enumerate(self.weights)) for f in range(self.num_frames)]
        x = torch.cat(frames, dim=3)  # frames side by side in time
        # timm SelectAdaptivePool2d((None, 1), "catavgmax"): pool time away, keep the frequency rows
        x = torch.cat([F.adaptive_avg_pool2d(x, (None, 1)), F.adaptive_max_pool2d(x, (None, 1))], dim=1)
        x = x.squeeze(3)  # (B, 2C, h)
        xt = x.transpose(1, 2)
        y, _ = self.attn(xt, xt, xt, need_weights=False)
        pooled = torch.cat([y.mean(dim=1), x.max(dim=2).values], dim=1)
        return torch.cat([pooled, pooled.new_zeros(len(pooled), self.num_domains)], dim=1)


class Utmosv2(MosPredictor):
    """UTMOSv2 (fusion_stage3): wave (B, T) at 16 kHz -> MOS (B,).

    As released, inference draws random crops (3 s for the SSL branch; ``num_frames`` 1.4 s crops,
    each mixed with a second random crop by a Beta(0.4, 0.4) weight, for the spectrograms); audio
    shorter than a crop is tiled first. The draws come from numpy's global generator, as in
    UTMOSv2 (a trainer seeds and checkpoints it, so runs repeat and resume exactly), or from a
    private one after ``reseed(seed)`` (a metric scores every file with the same draws).
    """

    def __init__(self, ssl: Utmosv2Ssl, spec_long: Utmosv2Spec, frontend: Utmosv2Spectrograms,
                 dataset: str = "sarulab", ssl_seconds: float = 3.0, spec_seconds: float = 1.4,
                 mixup_alpha: float = 0.4) -> None:
        super().__init__()
        if dataset not in UTMOSV2_DATASETS:
            raise ConfigError(f"utmosv2: dataset '{dataset}' is not one of UTMOSv2's domains {list(UTMOSV2_DATASETS)}")
        self.ssl, self.spec_long, self.frontend = ssl, spec_long, frontend
        self.fc = nn.Linear(ssl.out_features + spec_long.out_features + len(UTMOSV2_DATASETS), 1)
        self.register_buffer("domain", F.one_hot(torch.tensor(UTMOSV2_DATASETS.index(dataset)),
                                                 len(UTMOSV2_DATASETS)).float(), persistent=False)
        self.ssl_len = int(ssl_seconds * self.sample_rate)
        self.spec_len = int(spec_seconds * self.sample_rate)
        self.mixup_alpha = mixup_alpha
        self.rng: np.random.Generator | None = None  # None: numpy's global generator

    def reseed(self, seed: int) -> None:
        """Restart the crop / mix-up draws from ``seed`` on a private generator."""
        self.rng = np.random.default_rng(seed)

    def _starts(self, high: int, size: int) -> np.ndarray:
        return self.rng.integers(0, high, size=size) if self.rng is not None else np.random.randint(0, high, size=size)

    def _beta(self, size: tuple[int, ...]) -> np.ndarray:
        a = self.mixup_alpha
        return self.rng.beta(a, a, size=size) if self.rng is not None else np.random.beta(a, a, size=size)

    def predict(self, wave: torch.Tensor) -> torch.Tensor:
        x1 = self.ssl(self._crop(_tile(wave, self.ssl_len), self.ssl_len))
        x2 = self.spec_long(self._images(_tile(wave, self.spec_len)))
        d = self.domain.expand(len(wave), -1)
        return self.fc(torch.cat([x1, x2, d], dim=1)).squeeze(1)

    def _crop(self, wave: torch.Tensor, length: int) -> torch.Tensor:
        # utmosv2 select_random_start: start in [0, T - length), one draw per item
        starts = self._starts(wave.shape[1] - length, len(wave))
        return torch.stack([w[s:s + length] for w, s in zip(wave, starts)])

    def _images(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, num_frames * n_specs, 3, H, W): per frame one crop, each spectrogram mixed with another."""
        images = []
        for _ in range(self.spec_long.num_frames):
            base = self.frontend(self._crop(wave, self.spec_len))
            other = self.frontend(self._crop(wave, self.spec_len))
            lmd = torch.as_tensor(self._beta(tuple(base.shape[:2])), dtype=base.dtype,
                                  device=base.device)[..., None, None, None]
            images.append(lmd * base + (1 - lmd) * other)
        return torch.cat(images, dim=1)


def _tile(wave: torch.Tensor, length: int) -> torch.Tensor:
    """utmosv2 extend_audio('tile'): audio not longer than ``length`` is repeated past it."""
    if wave.shape[1] > length:
        return wave
    return wave.repeat(1, length // wave.shape[1] + 1)


def build_utmosv2(config: Any, normalize: bool, backbone: str, dataset: str = "sarulab") -> Utmosv2:
    """A randomly initialised UTMOSv2 of the released layout; ``backbone`` is a timm model name."""
    import timm

    cnns = [timm.create_model(backbone, pretrained=False, num_classes=0) for _ in range(4)]
    for cnn in cnns:
        cnn.global_pool = nn.Identity()  # as UTMOSv2 does: keep the (C, h, w) map
    spec = Utmosv2Spec(cnns, int(cnns[0].num_features))
    return Utmosv2(Utmosv2Ssl(config, normalize), spec, Utmosv2Spectrograms(), dataset)


def load_utmosv2(checkpoint: str | None, encoder: str, backbone: str = "tf_efficientnetv2_s",
                 dataset: str = "sarulab") -> Utmosv2:
    """UTMOSv2 from a released fold checkpoint; ``encoder`` gives the wav2vec 2.0 config only."""
    from restorekit.optional import check_installed

    how = (f"download {UTMOSV2_URL} (or run the utmosv2 package once online, which saves it as "
           f"{UTMOSV2_CACHE}) and set the checkpoint argument to the file")
    path = checkpoint_path("utmosv2", checkpoint, UTMOSV2_CACHE, how)
    state = read_checkpoint("utmosv2", path, trust=False)
    if not {"ssl.weights", "spec_long.weights", "fc.weight"} <= set(state):
        raise CheckpointError(f"utmosv2: {path} is not a UTMOSv2 fusion checkpoint (no ssl.weights / "
                              f"spec_long.weights / fc.weight); {how}")
    check_installed(("timm",), "utmosv2 (its spectrogram branch runs timm EfficientNetV2 backbones)")
    config, normalize = wav2vec2_config("utmosv2", encoder)
    model = build_utmosv2(config, normalize, backbone, dataset)
    load_state("utmosv2", model, state, path)
    return model.freeze()


# --- loading helpers --------------------------------------------------------------------------

def checkpoint_path(who: str, checkpoint: str | None, cached: Path, how: str) -> Path:
    """The checkpoint file to read: the argument, else where the original package caches it."""
    path = Path(checkpoint).expanduser() if checkpoint else cached.expanduser()
    if not path.is_file():
        said = f"checkpoint {path}" if checkpoint else f"no checkpoint given and none at {path}"
        raise CheckpointError(f"{who}: released weights not found ({said}); {how}")
    return path


def wav2vec2_config(who: str, encoder: str) -> tuple[Any, bool]:
    """The encoder's transformers config and whether its feature extractor normalises the waveform."""
    from transformers import AutoConfig, AutoFeatureExtractor

    try:
        config = AutoConfig.from_pretrained(encoder)
        extractor = AutoFeatureExtractor.from_pretrained(encoder)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{who}: cannot load the encoder config '{encoder}' ({one_line(exc)[:200]}); give a local folder "
            "holding config.json and preprocessor_config.json (the weights come from the checkpoint), or "
            "download it first (huggingface-cli download ID) while online; offline mode is HF_HUB_OFFLINE=1"
        ) from exc
    return config, bool(getattr(extractor, "do_normalize", True))


def read_checkpoint(who: str, path: Path, trust: bool) -> Mapping[str, Any]:
    """A torch checkpoint's dict; pickled objects beyond tensors only with ``trust`` (they can run code)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        if trust:
            raise CheckpointError(f"{who}: cannot read {path} ({one_line(exc)[:200]})") from exc
        raise CheckpointError(
            f"{who}: {path} holds pickled Python objects besides tensors, which are not loaded by default "
            "because unpickling can run code; if you trust the file (e.g. the authors' release), set "
            "trust_checkpoint: true"
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{who}: cannot read {path} as a torch checkpoint ({one_line(exc)[:200]})") from exc


def load_state(who: str, model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Load ``state`` strictly; a mismatch says which keys and what to check."""
    state = _current_weight_norm_names(dict(state), model.state_dict())
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = [f"{name} {keys[:3]}{' ...' if len(keys) > 3 else ''}"
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise CheckpointError(
            f"{who}: {path} does not fit the model ({'; '.join(parts)}); check that the encoder config matches "
            "the one the checkpoint was trained with (facebook/wav2vec2-base for the released weights)"
        )
    model.load_state_dict(state)


def _current_weight_norm_names(state: dict, expected: Mapping[str, Any]) -> dict:
    """Old transformers saved the positional conv's weight norm as weight_g / weight_v; now it is a
    parametrisation (original0 / original1). Rename so checkpoints of either age load."""
    renames = {".weight_g": ".parametrizations.weight.original0", ".weight_v": ".parametrizations.weight.original1"}
    out = {}
    for key, value in state.items():
        for old, new in renames.items():
            if key.endswith(old) and key not in expected and key[: -len(old)] + new in expected:
                key = key[: -len(old)] + new
        out[key] = value
    return out


__all__ = ["MosPredictor", "WvMos", "Utmosv2", "Utmosv2Ssl", "Utmosv2Spec", "Utmosv2Spectrograms",
           "load_wvmos", "load_utmosv2", "build_utmosv2", "MOS_SAMPLE_RATE"]
