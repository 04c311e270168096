"""Networks of CA-Net: the V-Net and Trans-V generators and the DAM discriminator.

Importing this package registers every model: ``vnet``, ``canet`` (Trans-V) and
``dam``. :mod:`canet.models.loading` rebuilds the generator of a canet
checkpoint (:func:`load_model`); :mod:`canet.models.original` imports
checkpoints of the authors' code.
"""

# Importing the model modules registers "dam", "canet" and "vnet".
from canet.models.common import SegOutput, out_channels
from canet.models.dam import DAM, SqueezeExcite
from canet.models.loading import build_generator, load_model
from canet.models.registry import create_model, list_models, register_model
from canet.models.transvnet import TransVNet
from canet.models.vnet import VNet

__all__ = [
    "DAM",
    "SegOutput",
    "SqueezeExcite",
    "TransVNet",
    "VNet",
    "build_generator",
    "create_model",
    "list_models",
    "load_model",
    "out_channels",
    "register_model",
]
