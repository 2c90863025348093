"""The annotation service: a GBIF-compatible REST API for rules and a map page to draw them.

``gbifdl annotations serve`` runs it (see :mod:`.cli`); :func:`create_app` builds the ASGI app on an
:class:`~gbifdl_assets.annotations.store.AnnotationStore` for tests and embedding.
"""

from gbifdl_assets.annotations.service.api import API_PREFIX
from gbifdl_assets.annotations.service.app import create_app, serve

__all__ = ["API_PREFIX", "create_app", "serve"]
