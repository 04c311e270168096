"""The networks compile with ``torch.compile(fullgraph=True)`` and match eager mode.

Only eval-mode forwards are compiled here, to keep the test well under a minute on
2 CPU cores (training-mode compilation, forward + backward, takes over a minute on
such a machine). ``canet`` runs the whole V-Net code (its encoder, decoder and heads
are :class:`~canet.models.vnet.VNet`'s) plus the transformer.
"""

from __future__ import annotations

import pytest
import torch

from canet.models import create_model


@pytest.mark.slow
def test_torch_compile_matches_eager():
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 32, 32, 32, generator=g)
    # Configured at 64x64x48 and run at 32x32x32: the interpolation of the position
    # embedding is part of the compiled graph too.
    gen = create_model("canet", patch_size=(64, 64, 48)).eval()
    dam = create_model("dam").eval()
    with torch.no_grad():
        gen.transformer.pos_embed.normal_(generator=g)
        eager = gen(x)
        compiled = torch.compile(gen, fullgraph=True)(x)
        torch.testing.assert_close(compiled.seg, eager.seg, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(compiled.sdf, eager.sdf, rtol=1e-4, atol=1e-4)
        d_eager = dam(eager.sdf, x)
        d_compiled = torch.compile(dam, fullgraph=True)(eager.sdf, x)
        torch.testing.assert_close(d_compiled, d_eager, rtol=1e-4, atol=1e-4)
