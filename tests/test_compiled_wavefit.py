"""``WaveFit.compile_inference``: masked batches of unequal lengths compiled give what eager gives.

Apart from tests/test_compiled_restore.py so pytest-xdist runs the two compiles (~50 s each on a
cold Inductor cache) on different workers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.models import MODELS
from test_models import EXAMPLES


@pytest.mark.slow
def test_compiled_masked_batches_equal_eager_in_one_graph(one_thread):
    """WaveFit.infer_batch compiled: padded batches of unequal lengths (3 items up to 20 frames, then 2
    up to 100) give what eager gives, within 1e-5, from one more graph."""
    torch.manual_seed(0)
    wavefit = MODELS.build({"name": "wavefit", "args": EXAMPLES["wavefit"]}, where="models.vocoder").eval()
    batches = [[10, 20, 15], [100, 45]]
    items = [([torch.randn(n, wavefit.feature_dim) for n in b], [torch.randn(n * wavefit.hop) for n in b])
             for b in batches]
    with torch.inference_mode():
        eager = [wavefit.infer_batch(f, n) for f, n in items]
        wavefit.compile_inference()
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        compiled = [wavefit.infer_batch(f, n) for f, n in items]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs == 1
    for ys, refs, lengths in zip(compiled, eager, batches):
        assert [len(y) for y in ys] == [n * wavefit.hop for n in lengths]
        for y, ref in zip(ys, refs):
            np.testing.assert_allclose(y.numpy(), ref.numpy(), atol=1e-5, rtol=0)
