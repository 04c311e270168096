"""Networks of CA-Net: the V-Net and Trans-V generators and the DAM discriminator."""

from canet.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
