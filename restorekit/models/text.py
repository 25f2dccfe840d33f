"""Text encoders: phoneme ids -> a feature sequence a model can attend to (Miipher-1's text branch).

Contract (``TextEncoder``): ``forward(phonemes, text_lengths) -> (features, lengths)``

- ``phonemes``: LongTensor (B, L), ids in ``restorekit.text.PHONEME_SYMBOLS`` (0 = pad), as
  ``collate`` gives them; ``text_lengths``: LongTensor (B,), valid ids per row.
- ``features``: float (B, L', dim); ``lengths``: LongTensor (B,), valid feature rows per item.
  L' = L for ``plbert`` and ``phoneme_embedding``; ``xphonebert`` re-tokenizes (its own
  phoneme units, plus <s> and </s>), so its L' and lengths differ from the input's.
- Padding never changes the valid outputs: a batch padded further gives the same features on
  the valid rows (attention masks hide padded keys). Rows past ``lengths`` hold no meaning;
  a consumer masks them (``length_mask``).
- ``dim``: the feature size.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from restorekit.errors import CheckpointError, ConfigError, DataError, one_line
from restorekit.models import MODELS
from restorekit.text import PHONEME_SYMBOLS, SPACE_ID, VOCAB_SIZE


def length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """(B, size) bool, True on the first ``lengths[b]`` positions of each row (the valid ones)."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


class TextEncoder(nn.Module):
    """Base of the text encoders: ``forward(phonemes (B, L) long, text_lengths (B,) long)
    -> (features (B, L', dim) float, lengths (B,) long)``; padding never changes valid outputs."""

    dim: int
    max_length: int | None = None  # longest sequence the encoder takes (position table), None: any

    def _check(self, phonemes: torch.Tensor, text_lengths: torch.Tensor, name: str) -> None:
        if phonemes.dim() != 2 or text_lengths.shape != phonemes.shape[:1]:
            raise DataError(f"{name}: phonemes must be (B, L) with text_lengths (B,), got {tuple(phonemes.shape)} "
                            f"and {tuple(text_lengths.shape)}; batch items through restorekit.datasets.collate")
        longest = int(text_lengths.max()) if len(text_lengths) else 0
        if self.max_length is not None and longest > self.max_length:
            raise DataError(f"{name}: a phoneme sequence of {longest} symbols is longer than this encoder's "
                            f"{self.max_length} positions; leave out long utterances (the dataset's "
                            "max_duration) or split them")


@MODELS.register("phoneme_embedding")
class PhonemeEmbedding(TextEncoder):
    """Learned phoneme embedding for training from scratch: ids (B, L) -> (B, L, dim), lengths unchanged.

    nn.Embedding over the 178-symbol table plus a fixed sinusoidal position encoding, then
    ``num_layers`` Transformer encoder layers (``heads`` heads, FFN 4*dim, padding masked;
    0: none, each phoneme seen alone). Padded rows of the output are zero.
    """

    def __init__(self, dim: int = 256, num_layers: int = 0, heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % 2 or (num_layers and dim % heads):
            raise ConfigError(f"phoneme_embedding: dim={dim} must be even and divisible by heads={heads}")
        self.dim = int(dim)
        self.embed = nn.Embedding(VOCAB_SIZE, dim, padding_idx=0)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, batch_first=True, norm_first=True)
        # No nested tensors: their fast path changes rounding between padded and unpadded batches.
        self.layers = (nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
                       if num_layers else None)

    def forward(self, phonemes: torch.Tensor, text_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(phonemes, text_lengths, "phoneme_embedding")
        valid = length_mask(text_lengths, phonemes.shape[1])
        x = self.embed(phonemes) * math.sqrt(self.dim) + sinusoids(phonemes.shape[1], self.dim, phonemes.device)
        if self.layers is not None:
            x = self.layers(x, src_key_padding_mask=~valid)
        return x * valid[..., None], text_lengths


def sinusoids(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, dim) sine/cosine position encoding (Vaswani et al.), sines in the first half."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    return torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=-1)


class _FrozenMixin:
    """``freeze``: no gradients and eval mode (no dropout) whatever train() asks."""

    def _freeze(self, model: nn.Module, freeze: bool) -> None:
        self.frozen = bool(freeze)
        if self.frozen:
            model.requires_grad_(False)
            model.eval()

    def train(self, mode: bool = True):  # noqa: ANN201 - returns self, as nn.Module does
        super().train(mode)  # type: ignore[misc]
        if self.frozen:
            self.model.eval()  # type: ignore[attr-defined]
        return self


# --- PL-BERT ----------------------------------------------------------------------------------
PLBERT_SIZES = {"vocab_size": VOCAB_SIZE, "hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 12,
                "intermediate_size": 2048, "max_position_embeddings": 512}


@MODELS.register("plbert")
class PLBert(_FrozenMixin, TextEncoder):
    """PL-BERT (an ALBERT on eSpeak IPA phonemes): ids (B, L) -> (B, L, hidden_size), lengths unchanged.

    ``pretrained``: a local folder or hub id in PL-BERT's released layout (``config.yml`` whose
    ``model_params`` give the ALBERT sizes, and ``step_<N>.t7`` checkpoints; the highest N is
    loaded, its ``net`` state dict's ``module.``/``encoder.`` prefixes stripped, the
    pre-training heads dropped, strictly). Null: random init with the sizes given here (PL-BERT's
    by default). ``freeze`` (default) keeps it fixed and in eval mode.
    """

    def __init__(self, pretrained: str | None = None, freeze: bool = True, vocab_size: int = VOCAB_SIZE,
                 hidden_size: int = 768, num_attention_heads: int = 12, num_hidden_layers: int = 12,
                 intermediate_size: int = 2048, max_position_embeddings: int = 512, embedding_size: int = 128) -> None:
        super().__init__()
        from transformers import AlbertConfig, AlbertModel

        self.pretrained = pretrained
        if pretrained:
            folder = plbert_folder(pretrained)
            self.model = AlbertModel(AlbertConfig(**plbert_params(folder)), add_pooling_layer=True)
            load_plbert_weights(self.model, folder)
        else:
            self.model = AlbertModel(AlbertConfig(
                vocab_size=vocab_size, hidden_size=hidden_size, num_attention_heads=num_attention_heads,
                num_hidden_layers=num_hidden_layers, intermediate_size=intermediate_size,
                max_position_embeddings=max_position_embeddings, embedding_size=embedding_size))
        self.dim = int(self.model.config.hidden_size)
        self.max_length = int(self.model.config.max_position_embeddings)
        self._freeze(self.model, freeze)

    def forward(self, phonemes: torch.Tensor, text_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(phonemes, text_lengths, "plbert")
        mask = length_mask(text_lengths, phonemes.shape[1]).long()
        out = self.model(input_ids=phonemes, attention_mask=mask).last_hidden_state
        return out, text_lengths


_STEP = re.compile(r"step_(\d+)\.t7$")


def plbert_folder(pretrained: str) -> Path:
    """The local folder of a PL-BERT release: ``pretrained`` itself, or its hub snapshot."""
    path = Path(pretrained).expanduser()
    if path.is_dir():
        return path
    if path.exists() or pretrained.startswith((".", "/", "~")):
        raise CheckpointError(f"plbert: {pretrained} is not a folder; give the folder holding config.yml and "
                              "step_*.t7 (PL-BERT's release), or a hub id")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(pretrained, allow_patterns=["config.yml", "step_*.t7"]))
    except Exception as exc:  # noqa: BLE001 - hub errors have many types; all mean "not available"
        raise CheckpointError(
            f"plbert: cannot get '{pretrained}' ({one_line(exc)[:200]}); give a local folder holding "
            "config.yml and step_*.t7 (e.g. StyleTTS 2's Utils/PLBERT), or download it while online "
            "(huggingface-cli download ID); offline mode is HF_HUB_OFFLINE=1") from exc


def plbert_params(folder: Path) -> dict[str, Any]:
    """ALBERT sizes from the release's ``config.yml`` (``model_params``)."""
    import yaml

    cfg = folder / "config.yml"
    if not cfg.is_file():
        raise CheckpointError(f"plbert: no config.yml in {folder}; PL-BERT's release has config.yml beside step_*.t7")
    params = dict((yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}).get("model_params") or {})
    if not params:
        raise CheckpointError(f"plbert: {cfg} has no model_params section (the ALBERT sizes); is it PL-BERT's?")
    params.pop("dropout", None)  # PL-BERT's own key; AlbertConfig names its dropouts differently
    return params


def load_plbert_weights(model: nn.Module, folder: Path) -> None:
    """Load the newest ``step_<N>.t7`` into ``model`` (an AlbertModel), strictly."""
    steps = sorted((int(m.group(1)), p) for p in folder.glob("step_*.t7") if (m := _STEP.search(p.name)))
    if not steps:
        raise CheckpointError(f"plbert: no step_*.t7 checkpoint in {folder}; PL-BERT's release holds e.g. "
                              "step_1000000.t7 beside config.yml")
    path = steps[-1][1]
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling raises many types
        raise CheckpointError(f"plbert: cannot read {path} ({one_line(exc)[:200]}); the file is damaged "
                              "or not a torch checkpoint") from exc
    state = plbert_state_dict(ckpt.get("net", ckpt) if isinstance(ckpt, dict) else {})
    state.pop("embeddings.position_ids", None)  # a buffer older transformers saved; recomputed now
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"plbert: {path} does not fit the ALBERT of its config.yml "
                              f"({one_line(exc)[:300]})") from exc


def plbert_state_dict(net: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's tensors of a PL-BERT ``net``: ``module.`` (DataParallel) and ``encoder.``
    (the pre-training wrapper) stripped; the mask/word prediction heads left out."""
    out = {}
    for key, value in net.items():
        key = key.removeprefix("module.")
        if key.startswith("encoder."):
            out[key.removeprefix("encoder.")] = value
    return out


# --- XPhoneBERT -------------------------------------------------------------------------------
WORD_BOUNDARY = "▁"  # XPhoneBERT's word separator token
_STRESS = ("ˈ", "ˌ")
_BUILTIN_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


@MODELS.register("xphonebert")
class XPhoneBert(_FrozenMixin, TextEncoder):
    """XPhoneBERT (a RoBERTa on phoneme tokens): ids (B, L) -> (B, L', hidden_size) with <s>/</s> included.

    ``pretrained`` (default ``vinai/xphonebert-base``): hub id or folder loaded with
    transformers' AutoModel and AutoTokenizer. Null: random init of a RobertaModel with
    ``config`` (sizes) over a built-in vocabulary (the table's symbols, one token each).
    Mapping (written by hand, XPhoneBERT's own G2P is another model): each eSpeak word (space-
    separated) is cut greedily into the longest units in the tokenizer's vocabulary (up to 3
    characters, so a stress mark joins the phone after it, ``ˈθ``, as XPhoneBERT's data has
    it); a stressed unit missing from it is looked up without the stress mark; anything still
    unknown becomes <unk> (counted in ``self.unknown``). Words are joined with ``▁``. L' is
    the token count plus 2.
    """

    def __init__(self, pretrained: str | None = "vinai/xphonebert-base", freeze: bool = True,
                 config: dict | None = None) -> None:
        super().__init__()
        self.pretrained = pretrained
        if pretrained:
            self.model, vocab, specials = _load_xphonebert(pretrained)
        else:
            self.model, vocab, specials = _random_xphonebert(dict(config or {}))
        self.vocab = vocab
        self.bos, self.eos, self.pad, self.unk = specials
        self.dim = int(self.model.config.hidden_size)
        # RoBERTa's positions start after the pad index, so its table holds 2 fewer tokens.
        self.max_tokens = int(self.model.config.max_position_embeddings) - 2
        self.unknown: Counter = Counter()
        self._freeze(self.model, freeze)

    def tokens(self, ids: list[int]) -> list[int]:
        """XPhoneBERT token ids for one row of restorekit phoneme ids, <s> and </s> added."""
        words = "".join(PHONEME_SYMBOLS[i] for i in ids if i != 0).split(" ")
        out = [self.bos]
        for w, word in enumerate(x for x in words if x):
            if w and WORD_BOUNDARY in self.vocab:
                out.append(self.vocab[WORD_BOUNDARY])
            out.extend(self._word(word))
        return out + [self.eos]

    def _word(self, word: str) -> list[int]:
        out, i = [], 0
        while i < len(word):
            for n in (3, 2, 1):
                unit = word[i:i + n]
                if len(unit) == n and unit in self.vocab:
                    out.append(self.vocab[unit])
                    break
            else:
                n = 1
                if word[i] not in _STRESS:  # a lone stress mark with no unit is dropped, not <unk>
                    self.unknown[word[i]] += 1
                    out.append(self.unk)
            i += n
        return out

    def forward(self, phonemes: torch.Tensor, text_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(phonemes, text_lengths, "xphonebert")
        rows = [self.tokens(r[: int(n)].tolist()) for r, n in zip(phonemes.cpu(), text_lengths.cpu())]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long, device=phonemes.device)
        if int(lengths.max()) > self.max_tokens:
            raise DataError(f"xphonebert: a sequence of {int(lengths.max())} tokens is longer than this encoder's "
                            f"{self.max_tokens} positions; leave out long utterances (the dataset's max_duration)")
        ids = torch.full((len(rows), int(lengths.max())), self.pad, dtype=torch.long)
        for row, r in zip(ids, rows):
            row[: len(r)] = torch.tensor(r)
        ids = ids.to(phonemes.device)
        out = self.model(input_ids=ids, attention_mask=length_mask(lengths, ids.shape[1]).long()).last_hidden_state
        return out, lengths


def _load_xphonebert(pretrained: str) -> tuple[nn.Module, dict[str, int], tuple[int, int, int, int]]:
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(pretrained)
        model = AutoModel.from_pretrained(pretrained, add_pooling_layer=False)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"xphonebert: cannot load '{pretrained}' ({one_line(exc)[:200]}); give a local folder holding the "
            "model and its tokenizer (save_pretrained), or download it while online (huggingface-cli download "
            "vinai/xphonebert-base); offline mode is HF_HUB_OFFLINE=1") from exc
    specials = (tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id,
                tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id,
                tokenizer.pad_token_id, tokenizer.unk_token_id)
    if any(s is None for s in specials):
        raise CheckpointError(f"xphonebert: the tokenizer of '{pretrained}' lacks a bos/cls, eos/sep, pad or unk "
                              "token; XPhoneBERT's tokenizer has <s>, </s>, <pad>, <unk>")
    return model, dict(tokenizer.get_vocab()), specials


def _random_xphonebert(config: dict) -> tuple[nn.Module, dict[str, int], tuple[int, int, int, int]]:
    from transformers import RobertaConfig, RobertaModel

    units = [s for s in dict.fromkeys(PHONEME_SYMBOLS[1:]) if s != PHONEME_SYMBOLS[SPACE_ID]]
    vocab = {t: i for i, t in enumerate([*_BUILTIN_SPECIALS, WORD_BOUNDARY, *units])}
    cfg = RobertaConfig(**{"vocab_size": len(vocab), "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
                           **config})
    return RobertaModel(cfg, add_pooling_layer=False), vocab, (0, 2, 1, 3)
