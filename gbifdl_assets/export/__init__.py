"""Training exports: ImageFolder and WebDataset layouts, credits, citation, data card, and loaders.

``export_training_set`` (in :mod:`gbifdl_assets.export.layout`) turns a manifest plus image-store
ledgers into a self-contained folder that PyTorch, TensorFlow/Keras, WebDataset, Hugging Face
``datasets`` (``imagefolder/<split>/metadata.jsonl``) and Croissant readers (``croissant.json``, see
:mod:`.croissant`) use as it is. Every image under an attribution licence gets a name to credit
(:mod:`.attribution`); every text from the data is cleaned and escaped (:mod:`.escape`); the data
card and croissant.json count the same facts (:mod:`.facts`). The loaders (:mod:`.torch_data`, :mod:`.tf_data`) import their framework only when used, so the
core needs neither (install the ``[torch]`` or ``[tensorflow]`` extra). Nothing here imports dagster.

Names: ``image_storage`` is the :class:`~gbifdl_assets.storage.Storage` of the image store the
images are read from (see :mod:`gbifdl_assets.media.store`), ``out`` the storage the export is
written to; nothing here uses the annotation store.
"""
