"""Training exports: ImageFolder and WebDataset layouts, credits, citation, data card, and loaders.

``export_training_set`` (in :mod:`gbifdl_assets.export.layout`) turns a manifest plus an image-store
ledger into a self-contained folder that PyTorch, TensorFlow/Keras and WebDataset readers use as it
is. The loaders (:mod:`.torch_data`, :mod:`.tf_data`) import their framework only when used, so the
core needs neither (install the ``[torch]`` or ``[tensorflow]`` extra). Nothing here imports dagster.

Names: ``image_storage`` is the :class:`~gbifdl_assets.storage.Storage` of the image store the
images are read from (see :mod:`gbifdl_assets.media.store`), ``out`` the storage the export is
written to; nothing here uses the annotation store.
"""
