"""napari-fishcount: open FISH fields and fishcount results in napari, analyse, and review every call.

The plugin is a view over the ``fishcount`` library; it contains no analysis code. See
``docs/napari.md`` in the fishcount repository.
"""
__version__ = "0.1.0"

__all__ = ["__version__"]
