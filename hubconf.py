"""torch.hub entry points: every model of the zoo, with its trained weights.

    torch.hub.load("<owner>/<repo>", "resnet20", weights="cifar10")      # from GitHub
    torch.hub.load("path/to/checkout", "resnet20", source="local", weights="cifar10")
    torch.hub.list("<owner>/<repo>")                                        # every model name

Each entry is ``models.create_model(<name>, weights=..., **options)``: with
``weights`` the model comes back in eval mode with the shipped file loaded
(its sha256 checked against its card in ``weights/``); ``weights="imagenet"``
loads torchvision's ImageNet weights where our ``form="torchvision"`` is
torchvision's network.
"""

from models import create_model as _create_model
from models import list_models as _list_models

dependencies = ["torch"]


def _entry(name: str):
    def entry(weights: str | None = None, **options):
        return _create_model(name, weights=weights, **options)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (f"models.create_model({name!r}, weights=..., **options): "
                     "see models/weights.py for the weights names.")
    return entry


globals().update({_name: _entry(_name) for _name in _list_models()})
