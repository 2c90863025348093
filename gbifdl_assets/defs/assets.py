"""The asset graph, written once: every asset in stage order, and the stages one refresh run covers.

The code location, the refresh schedule, the demo and the tests all take their asset lists from here.
"""

from gbifdl_assets.defs.annotations import annotated_occurrences, annotation_rulesets
from gbifdl_assets.defs.image_flags import image_flags
from gbifdl_assets.defs.images import image_store, training_export
from gbifdl_assets.defs.manifest import balanced_manifest
from gbifdl_assets.defs.snapshots import gbif_download, occurrence_snapshot
from gbifdl_assets.defs.species import species_list

#: The training-set stages from the species list to the balanced manifest: same partitions, so one run
#: per training set materializes them all (a refresh, the demo). Images and the export follow through
#: their eager automation conditions; annotation_rulesets is shared by every training set.
TRAINING_SET_STAGES = [
    species_list,
    gbif_download,
    occurrence_snapshot,
    annotated_occurrences,
    balanced_manifest,
]

#: Every asset, in stage order.
ALL_ASSETS = [
    species_list,
    gbif_download,
    occurrence_snapshot,
    annotation_rulesets,
    annotated_occurrences,
    image_flags,
    balanced_manifest,
    image_store,
    training_export,
]
