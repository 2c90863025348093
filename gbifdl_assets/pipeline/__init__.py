"""The pipeline's stages as plain Python: one module, one function per Dagster asset.

Each stage takes what it works on (a spec, a GBIF client, a storage) and returns a small result
object (counts, keys, preview rows, check outcomes); ``gbifdl_assets.defs`` turns that into a
materialization. Nothing here imports Dagster, so every stage runs and is tested without it.

    species_list            spec taxa -> accepted GBIF taxa          species_list.build_species_list
    gbif_download           a DWCA request when the spec needs one   gbif_download.request_training_set_download
    occurrence_snapshot     search API or download -> snapshot       occurrence_snapshot.take_occurrence_snapshot
    annotation_rulesets     every rule source -> one versioned table annotation_rulesets.compile_rulesets
    annotated_occurrences   snapshot x rules -> labelled rows        annotated_occurrences.annotate_occurrences
    balanced_manifest       labelled rows -> balanced, split images  balanced_manifest.build_balanced_manifest
    image_store             one shard of the manifest's images       image_store.store_shard
    training_export         manifest + images -> training formats    training_export.build_training_export

Around them: ``spec_folder`` (the folder of specs: the partitions), ``refresh`` (which specs' refresh
cron fired), ``image_shards`` (how images are spread over shards) and ``errors`` (:class:`StageError`).
Where each stage keeps its output, and which output is the newest, is :mod:`gbifdl_assets.storage.layout`.
"""
