"""The snapshot's columns split into their occurrence and media halves, and the archive columns
each is read from (by short term name).
"""

from __future__ import annotations

import pyarrow as pa

from gbifdl_assets.gbif.dwca.meta import GBIF
from gbifdl_assets.gbif.media_schema import SNAPSHOT_SCHEMA

#: the occurrence part of the snapshot schema (everything before the media fields)
_MEDIA_START = SNAPSHOT_SCHEMA.get_field_index("media_index")
OCCURRENCE_SCHEMA = pa.schema([SNAPSHOT_SCHEMA.field(i) for i in range(_MEDIA_START)])
#: the media part of the snapshot schema
MEDIA_SCHEMA = pa.schema([SNAPSHOT_SCHEMA.field(i) for i in range(_MEDIA_START, len(SNAPSHOT_SCHEMA))])

#: snapshot column -> archive column names to try, in order (short term names)
OCCURRENCE_SOURCES: dict[str, tuple[str, ...]] = {
    **{f.name: (f.name,) for f in OCCURRENCE_SCHEMA},
    "issues": ("issue", "issues"),
}
#: 2013 portal archives carry the backbone keys under gbif:kingdomID ... gbif:speciesID
GBIF_ALIASES = {
    f"{rank}Key": GBIF + f"{rank}ID"
    for rank in ("kingdom", "phylum", "class", "order", "family", "genus", "species")
}
#: media columns read from multimedia.txt (short term names)
MEDIA_SOURCE_COLUMNS = (
    "type",
    "format",
    "identifier",
    "references",
    "title",
    "creator",
    "publisher",
    "license",
    "rightsHolder",
)

#: the in-between table of multimedia rows (strings), before the join
MEDIA_RAW_SCHEMA = pa.schema(
    [
        pa.field("gbifID", pa.int64()),
        pa.field("rownum", pa.int64()),
        pa.field("reason", pa.uint8()),
        *(pa.field(c, pa.string()) for c in MEDIA_SOURCE_COLUMNS if c != "type"),
    ]
)
