"""The files shipped inside the package: trained weights (sgfast/weights) and sample data
(sgfast/assets). Found with importlib.resources, so they are there for a wheel installed anywhere as
for the checkout, whatever the current folder."""
from __future__ import annotations

from importlib import resources


def _package_path(*parts: str) -> str:
    return str(resources.files("sgfast").joinpath(*parts))


def shipped_weights(name: str) -> str:
    """Path of a shipped weights file, e.g. shipped_weights("agent_sg_tiny.pt")."""
    return _package_path("weights", name)


def bundled_asset(*parts: str) -> str:
    """Path of a bundled sample file or folder, e.g. bundled_asset("samples", "birds")."""
    return _package_path("assets", *parts)
