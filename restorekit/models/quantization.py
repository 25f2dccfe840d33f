"""Residual vector quantisation with EMA codebooks, as Mimi trains it (split: semantic + acoustic).

A codebook keeps EMA statistics, not a learnt tensor: ``cluster_usage`` (K,) and ``embed_sum``
(K, D); the code vectors are ``embed_sum / cluster_usage``. These are the buffer names of the
released checkpoint in transformers' ``MimiModel`` layout, so it loads as is. In training a
codebook is initialised by k-means on its first batch, moves by EMA (decay 0.99, eps 1e-5), and
codes whose usage falls below ``threshold_ratio`` x the uniform usage are replaced by vectors of
the current batch. Under ``torch.distributed`` every statistic (k-means sums and counts, EMA
counts and sums, replacement vectors) is averaged or broadcast, so all ranks hold the same
codebooks. Written here: transformers' Mimi quantiser is inference-only, and the EMA/k-means/
dead-code training logic of the original (moshi) is not a library we can depend on.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _average(t: torch.Tensor) -> torch.Tensor:
    """``t`` averaged over ranks in place (a no-op outside torch.distributed)."""
    if _distributed():
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t


def _from_rank0(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.broadcast(t, src=0)
    return t


def broadcast_int(value: int, device: torch.device) -> int:
    """Rank 0's ``value`` on every rank, so draws that decide collective calls agree."""
    return int(_from_rank0(torch.tensor([value], device=device)).item())


def nearest(x: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    """Index (N,) of the nearest row of ``embed`` (K, D) for each row of ``x`` (N, D), in float32."""
    return torch.cdist(x[None].float(), embed[None].float(), p=2)[0].argmin(dim=-1)


def _counts_sums(x: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    counts = torch.bincount(idx, minlength=k).to(x.dtype)
    sums = x.new_zeros(k, x.shape[-1]).index_add_(0, idx, x)
    return _average(counts), _average(sums)


def kmeans(x: torch.Tensor, k: int, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means of ``x`` (N, D) over all ranks: centroids (k, D) and their counts (k,).

    Starts from ``k`` rows of rank 0's ``x`` (with replacement when N < k); a centroid that loses
    all its points keeps its place (the dead-code step replaces it).
    """
    pick = torch.randperm(len(x), device=x.device)[:k] if len(x) >= k else torch.randint(len(x), (k,), device=x.device)
    centroids = _from_rank0(x[pick].clone())
    for _ in range(iters):
        counts, sums = _counts_sums(x, nearest(x, centroids), k)
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centroids)
    counts, _ = _counts_sums(x, nearest(x, centroids), k)
    return centroids, counts


class EuclideanCodebook(nn.Module):
    """K code vectors of size D held as EMA statistics; see the module docstring.

    A fresh codebook holds random vectors (so an untrained model still encodes) and
    ``initialized = 0``: its first training batch replaces them by k-means.
    """

    def __init__(self, size: int, dim: int, decay: float = 0.99, eps: float = 1e-5,
                 threshold_ratio: float = 0.1, kmeans_iters: int = 10) -> None:
        super().__init__()
        self.size, self.decay, self.eps = size, decay, eps
        self.threshold_ratio, self.kmeans_iters = threshold_ratio, kmeans_iters
        self.register_buffer("initialized", torch.zeros(1))
        self.register_buffer("cluster_usage", torch.ones(size))
        self.register_buffer("embed_sum", torch.randn(size, dim))

    @property
    def embed(self) -> torch.Tensor:
        """Code vectors (K, D)."""
        return self.embed_sum / self.cluster_usage.clamp(min=self.eps)[:, None]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest code index (N,) of each row of ``x`` (N, D)."""
        return nearest(x, self.embed)

    def decode(self, idx: torch.Tensor) -> torch.Tensor:
        """Code vectors (..., D) of indices (...)."""
        return F.embedding(idx, self.embed)

    @torch.no_grad()
    def init_kmeans(self, x: torch.Tensor) -> None:
        """Codebook from k-means on ``x`` (N, D): usage = cluster counts, sums = centroid x count."""
        centroids, counts = kmeans(x.float(), self.size, self.kmeans_iters)
        self.cluster_usage.copy_(counts)
        self.embed_sum.copy_(centroids * counts[:, None])
        self.initialized.fill_(1.0)

    @torch.no_grad()
    def update(self, x: torch.Tensor, idx: torch.Tensor) -> None:
        """One EMA step towards the batch's assignment of ``x`` (N, D) to ``idx`` (N,), then dead codes."""
        counts, sums = _counts_sums(x.float(), idx, self.size)
        self.cluster_usage.lerp_(counts, 1 - self.decay)
        self.embed_sum.lerp_(sums, 1 - self.decay)
        self.replace_dead(x)

    @torch.no_grad()
    def replace_dead(self, x: torch.Tensor) -> int:
        """Codes used less than ``threshold_ratio`` x the uniform usage become random rows of ``x``.

        A replaced code gets the uniform usage, so it has time to be chosen before it counts as
        dead again. Returns how many were replaced (the same on every rank: the usage is shared).
        """
        uniform = self.cluster_usage.sum() / self.size
        dead = self.cluster_usage < self.threshold_ratio * uniform
        n_dead = int(dead.sum())
        if n_dead:
            fresh = _from_rank0(x[torch.randint(len(x), (n_dead,), device=x.device)].float().contiguous())
            self.cluster_usage[dead] = uniform
            self.embed_sum[dead] = fresh * uniform
        return n_dead


class VectorQuantization(nn.Module):
    """One level: a codebook (named as in the released checkpoint)."""

    def __init__(self, size: int, dim: int, **codebook: float) -> None:
        super().__init__()
        self.codebook = EuclideanCodebook(size, dim, **codebook)


class ResidualVectorQuantizer(nn.Module):
    """RVQ of ``n_q`` levels with bias-free 1x1 projections ``dimension <-> dim`` around it."""

    def __init__(self, dimension: int, dim: int, n_q: int, size: int, **codebook: float) -> None:
        super().__init__()
        self.n_q = n_q
        self.layers = nn.ModuleList(VectorQuantization(size, dim, **codebook) for _ in range(n_q))
        self.input_proj = nn.Conv1d(dimension, dim, 1, bias=False) if dim != dimension else None
        self.output_proj = nn.Conv1d(dim, dimension, 1, bias=False) if dim != dimension else None

    def _proj(self, proj: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
        return x if proj is None else proj(x)

    def encode(self, x: torch.Tensor, n_q: int) -> torch.Tensor:
        """Latent ``(B, dimension, F)`` -> codes ``(B, n_q, F)``."""
        residual = self._proj(self.input_proj, x).transpose(1, 2)
        codes = []
        for layer in self.layers[:n_q]:
            idx = nearest(residual.reshape(-1, residual.shape[-1]), layer.codebook.embed).view(residual.shape[:2])
            residual = residual - layer.codebook.decode(idx)
            codes.append(idx)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, n, F)`` -> latent ``(B, dimension, F)``: the sum of the levels' vectors."""
        q = sum(self.layers[i].codebook.decode(codes[:, i]) for i in range(codes.shape[1]))
        return self._proj(self.output_proj, q.transpose(1, 2))

    def forward(self, x: torch.Tensor, n_q: int, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
        """Training quantisation of ``x`` (B, dimension, F) with ``n_q`` levels.

        Returns the output latent (B, dimension, F), codes (B, n_q, F) and the per-level
        commitment losses mse(residual, q.detach()). Straight-through: the gradient passes to
        ``x`` unchanged. Sequences where ``keep`` (B,) is False pass their projected latent through
        unquantised (Mimi quantises only half of the sequences in training). In training mode the
        codebooks are k-means initialised on the first batch and then follow their EMA.
        """
        z = self._proj(self.input_proj, x).transpose(1, 2)  # (B, F, d)
        residual, total = z, torch.zeros_like(z)
        codes, commits = [], []
        for layer in self.layers[:n_q]:
            book, flat = layer.codebook, residual.reshape(-1, residual.shape[-1])
            if self.training and not book.initialized.item():
                book.init_kmeans(flat.detach())
            idx = book.encode(flat.detach())
            q = book.decode(idx).view_as(residual)
            commits.append(F.mse_loss(residual, q.detach()))
            if self.training:
                book.update(flat.detach(), idx)
            residual = residual - q.detach()
            total = total + q.detach()
            codes.append(idx.view(residual.shape[:2]))
        out = z + (total - z).detach()  # straight-through over the whole residual stack
        out = torch.where(keep[:, None, None], out, z)
        return self._proj(self.output_proj, out.transpose(1, 2)), torch.stack(codes, dim=1), commits


class SplitResidualVectorQuantizer(nn.Module):
    """Mimi's split RVQ: a semantic RVQ and an acoustic RVQ in parallel on one latent, summed.

    Codes are ordered semantic levels first, then acoustic ones (the released layout).
    """

    def __init__(self, dimension: int, dim: int, n_q: int, n_semantic: int, size: int, **codebook: float) -> None:
        super().__init__()
        self.n_q, self.n_semantic = n_q, n_semantic
        self.semantic_residual_vector_quantizer = ResidualVectorQuantizer(dimension, dim, n_semantic, size, **codebook)
        self.acoustic_residual_vector_quantizer = ResidualVectorQuantizer(
            dimension, dim, n_q - n_semantic, size, **codebook)

    def encode(self, x: torch.Tensor, n_q: int) -> torch.Tensor:
        """Latent ``(B, dimension, F)`` -> codes ``(B, n_q, F)`` (``n_q`` >= n_semantic)."""
        codes = self.semantic_residual_vector_quantizer.encode(x, self.n_semantic)
        if n_q == self.n_semantic:
            return codes
        return torch.cat([codes, self.acoustic_residual_vector_quantizer.encode(x, n_q - self.n_semantic)], dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, n, F)`` -> latent ``(B, dimension, F)``."""
        out = self.semantic_residual_vector_quantizer.decode(codes[:, :self.n_semantic])
        if codes.shape[1] > self.n_semantic:
            out = out + self.acoustic_residual_vector_quantizer.decode(codes[:, self.n_semantic:])
        return out

    def forward(self, x: torch.Tensor, n_q: int, keep: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training quantisation: ``quantized`` and ``semantic`` (B, dimension, F), ``codes``, ``commitment``.

        ``commitment`` is the mean over all levels used, semantic and acoustic alike.
        """
        semantic, codes, commits = self.semantic_residual_vector_quantizer(x, self.n_semantic, keep)
        acoustic, acodes, acommits = self.acoustic_residual_vector_quantizer(x, n_q - self.n_semantic, keep)
        return {"quantized": semantic + acoustic, "semantic": semantic,
                "codes": torch.cat([codes, acodes], dim=1), "commitment": torch.stack(commits + acommits).mean()}
