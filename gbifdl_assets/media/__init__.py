"""Image downloader core: fetch, validate and store the images a training-set manifest lists.

Modules (none imports dagster):

* :mod:`.ssrf`: which addresses a media URL may reach (loopback, private, link-local… are refused);
* :mod:`.fetch`: one image over HTTP with redirects, timeouts, size cap and retries (settings in
  :mod:`.fetch_config`, the HTTP/1.1 exchange in :mod:`.http1`);
* :mod:`.hosts`: per-host politeness that adapts (a rate and a window per host, AIMD on 429/503/
  timeouts, Retry-After, skipping hosts that keep failing); :mod:`.host_rates` keeps what runs
  learned; :mod:`.schedule` hands workers the jobs of hosts that have room;
* :mod:`.robots` and :mod:`.optout`: robots.txt and the opt-out headers, honoured before the body;
* :mod:`.validate`: Pillow decode, decompression-bomb guard, minimum side, optional resize/re-encode;
* :mod:`.store`: the content-addressed image store over :class:`gbifdl_assets.storage.Storage`;
* :mod:`.ledger`: the per-image status log kept with the store (append-only Parquet segments);
* :mod:`.rows`: manifest rows read in batches, and the content key (``sha256(url)``) of each;
* :mod:`.download`: the concurrent pipeline tying them together (:func:`.download.download_images`),
  with :mod:`.work` (the per-image steps) and :mod:`.pool` (the same steps in worker processes);
* :mod:`.cli`: ``gbifdl images fetch``, ``gbifdl images retry-failed`` and ``gbifdl images verify``.

Names: "store" means three things in this project (the storage backend, this package's image store,
the annotation store). Here ``store`` is always an :class:`~.store.ImageStore` and ``storage`` the
:class:`~gbifdl_assets.storage.Storage` it writes through (``store.storage``); functions that take
either accept an ``ImageStore`` or a ``Storage`` and say so in their annotation.
"""
