"""canet: CA-Net for semi-supervised 3D medical image segmentation."""

from __future__ import annotations

__version__ = "0.1.0"

from canet.models import create_model, list_models, load_model  # noqa: E402

__all__ = ["__version__", "create_model", "list_models", "load_model"]
