"""image_flags: the annotation store's flags on single images compiled into one versioned table, and
the sensor that notices new flags and votes.

``balanced_manifest`` depends on it and follows through its eager automation condition, so a flag made
on the gallery page takes its image out of every training set's next manifest. The work is in
:mod:`gbifdl_assets.pipeline.image_flags`.
"""

import dagster as dg

from gbifdl_assets.defs.metadata import STORAGE_KIND, count_table, md
from gbifdl_assets.defs.resources import AnnotationsResource, StorageResource
from gbifdl_assets.defs.retries import stage_failures
from gbifdl_assets.defs.sensor_timing import every, sensor_seconds
from gbifdl_assets.defs.source_sensor import rebuild_on_change
from gbifdl_assets.pipeline.image_flags import compile_image_flags, flags_fingerprint

#: image_flags' metadata: the fingerprint of the store's flags it was compiled from (the sensor's too)
FLAGS_FINGERPRINT = "flags_fingerprint"


@dg.asset(
    group_name="annotations",
    kinds={"python", "parquet", STORAGE_KIND},
    description=(
        "The annotation store's live flags on single images (NOT_ORGANISM, WRONG_TAXON, DUPLICATE, "
        "POOR_QUALITY) with their votes, compiled into annotations/image_flags/<version>/; the manifest "
        "leaves flagged images out under each spec's annotations.image_flags policy."
    ),
)
def image_flags(
    context: dg.AssetExecutionContext, annotations: AnnotationsResource, storage: StorageResource
) -> dg.MaterializeResult:
    with stage_failures(context):
        fingerprint = flags_fingerprint(annotations.store_url)  # before compiling, as the rules do
        result = compile_image_flags(annotations.store_url, storage.open(), log=context.log)
    return dg.MaterializeResult(
        metadata={
            "version": result.version,
            "flags": dg.MetadataValue.int(result.flags),
            "by_flag": md(count_table(result.by_flag, ("flag", "flags"), skip_zero=True)),
            "path": dg.MetadataValue.path(result.uri),
            "store_flags_version": result.store_flags_version,
            FLAGS_FINGERPRINT: fingerprint,
        },
        data_version=dg.DataVersion(result.version),
    )


@dg.sensor(
    target=[image_flags],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=sensor_seconds(60),
    description=(
        f"{every(sensor_seconds(60))}: re-compiles image_flags when a flag, its deletion or a vote changed the annotation "
        "store's flags; balanced_manifest follows through automation."
    ),
)
def image_flags_sensor(context: dg.SensorEvaluationContext, annotations: AnnotationsResource):
    return rebuild_on_change(
        context,
        flags_fingerprint(annotations.store_url),
        asset_key=image_flags.key,
        metadata_key=FLAGS_FINGERPRINT,
        what="image flags",
        trigger="flags_changed",
        run_key_prefix="flags",
    )
