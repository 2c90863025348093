"""Image downloader core: fetch, validate and store the images a training-set manifest lists.

Modules (none imports dagster):

* :mod:`.ssrf`: which addresses a media URL may reach (loopback, private, link-local… are refused);
* :mod:`.fetch`: one image over HTTP with redirects, timeouts, size cap, retries and per-host backoff;
* :mod:`.validate`: Pillow decode, decompression-bomb guard, minimum side, optional resize/re-encode;
* :mod:`.store`: the content-addressed image store over :class:`gbifdl_assets.storage.Storage`;
* :mod:`.ledger`: the per-image status log kept with the store (append-only Parquet segments);
* :mod:`.download`: the concurrent pipeline tying them together (:func:`.download.download_images`);
* :mod:`.cli`: ``gbifdl images fetch`` and ``gbifdl images retry-failed``.
"""
