"""The descriptive files of a sandbox DWCA: columns, ``meta.xml``, ``metadata.xml``, dataset EML,
``citations.txt`` and ``rights.txt``, laid out as in real GBIF downloads.

Compared with the real archives in ``../shared/fixtures/gbif/archives`` (2014, 2015) and GBIF's
current column lists (``describe/dwca``, rgbif ``occ_download_describe.yml``): ``meta.xml`` has no
XML declaration, a core ``occurrence.txt`` (rowType Occurrence, ``<id index="0"/>``), then the
extensions ``verbatim.txt`` (rowType Occurrence again) and ``multimedia.txt`` (rowType Multimedia),
each with ``<coreid index="0"/>`` and ``metadata="metadata.xml"``. Every term the sandbox writes is
one of GBIF's, in GBIF's current order, except ``publishingOrgKey`` in ``occurrence.txt``, which
real downloads do not have; it is left out when ``real_columns`` is true
(``SandboxConfig.real_dwca_columns``).

The texts take their registry facts (titles, DOIs, citations, licences) from :mod:`.registry`, so
an archive and ``/v1/dataset/{key}`` always agree.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from .registry import dataset_citation, dataset_doi, dataset_json, dataset_license_url, publisher_of
from .verbatim import DC, DWC, GBIF, VERBATIM_COLUMNS
from .world import Dataset, World

#: (column, term namespace) of the interpreted occurrence.txt, in GBIF's current order (a subset)
OCCURRENCE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("gbifID", GBIF),
    ("license", DC),
    ("modified", DC),
    ("references", DC),
    ("rightsHolder", DC),
    ("institutionCode", DWC),
    ("collectionCode", DWC),
    ("datasetName", DWC),
    ("basisOfRecord", DWC),
    ("occurrenceID", DWC),
    ("catalogNumber", DWC),
    ("recordedBy", DWC),
    ("individualCount", DWC),
    ("establishmentMeans", DWC),
    ("occurrenceStatus", DWC),
    ("eventDate", DWC),
    ("year", DWC),
    ("month", DWC),
    ("day", DWC),
    ("continent", DWC),
    ("countryCode", DWC),
    ("decimalLatitude", DWC),
    ("decimalLongitude", DWC),
    ("coordinateUncertaintyInMeters", DWC),
    ("identifiedBy", DWC),
    ("scientificName", DWC),
    ("kingdom", DWC),
    ("phylum", DWC),
    ("class", DWC),
    ("order", DWC),
    ("family", DWC),
    ("genus", DWC),
    ("genericName", DWC),
    ("specificEpithet", DWC),
    ("infraspecificEpithet", DWC),
    ("taxonRank", DWC),
    ("vernacularName", DWC),
    ("taxonomicStatus", DWC),
    ("datasetKey", GBIF),
    ("publishingOrgKey", GBIF),  # not in real downloads: see SANDBOX_ONLY_COLUMNS
    ("publishingCountry", GBIF),
    ("lastInterpreted", GBIF),
    ("issue", GBIF),
    ("mediaType", GBIF),
    ("hasCoordinate", GBIF),
    ("hasGeospatialIssues", GBIF),
    ("taxonKey", GBIF),
    ("acceptedTaxonKey", GBIF),
    ("kingdomKey", GBIF),
    ("phylumKey", GBIF),
    ("classKey", GBIF),
    ("orderKey", GBIF),
    ("familyKey", GBIF),
    ("genusKey", GBIF),
    ("speciesKey", GBIF),
    ("species", GBIF),
    ("acceptedScientificName", GBIF),
    ("verbatimScientificName", GBIF),
    ("protocol", GBIF),
    ("lastParsed", GBIF),
    ("lastCrawled", GBIF),
)
#: columns of occurrence.txt that real GBIF downloads do not have (left out with real_columns)
SANDBOX_ONLY_COLUMNS = frozenset({"publishingOrgKey"})
#: multimedia.txt, GBIF's order since 2020 (gbifID is a GBIF term, the rest Dublin Core)
MULTIMEDIA_COLUMNS = (
    "gbifID",
    "type",
    "format",
    "identifier",
    "references",
    "title",
    "description",
    "source",
    "audience",
    "created",
    "creator",
    "contributor",
    "publisher",
    "license",
    "rightsHolder",
)
_FILE_ATTRS = 'encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" fieldsEnclosedBy="" ignoreHeaderLines="1"'
OCCURRENCE_ROW_TYPE = DWC + "Occurrence"
MULTIMEDIA_ROW_TYPE = GBIF + "Multimedia"


def occurrence_columns(real_columns: bool = False) -> tuple[tuple[str, str], ...]:
    """The interpreted columns: GBIF's (``real_columns``) or with the sandbox's publishingOrgKey."""
    if not real_columns:
        return OCCURRENCE_COLUMNS
    return tuple(c for c in OCCURRENCE_COLUMNS if c[0] not in SANDBOX_ONLY_COLUMNS)


def _fields(columns: tuple[tuple[str, str], ...]) -> str:
    return "\n".join(f'    <field index="{i}" term="{ns}{name}"/>' for i, (name, ns) in enumerate(columns))


def _file(tag: str, row_type: str, location: str, id_tag: str, columns: tuple[tuple[str, str], ...]) -> str:
    return (
        f'  <{tag} {_FILE_ATTRS} rowType="{row_type}">\n'
        f"    <files>\n      <location>{location}</location>\n    </files>\n"
        f'    <{id_tag} index="0" />\n'
        f"{_fields(columns)}\n  </{tag}>\n"
    )


def meta_xml(real_columns: bool = False) -> str:
    multimedia = tuple((name, GBIF if name == "gbifID" else DC) for name in MULTIMEDIA_COLUMNS)
    return (
        '<archive xmlns="http://rs.tdwg.org/dwc/text/" metadata="metadata.xml">\n'
        + _file("core", OCCURRENCE_ROW_TYPE, "occurrence.txt", "id", occurrence_columns(real_columns))
        + _file("extension", OCCURRENCE_ROW_TYPE, "verbatim.txt", "coreid", VERBATIM_COLUMNS)
        + _file("extension", MULTIMEDIA_ROW_TYPE, "multimedia.txt", "coreid", multimedia)
        + "</archive>\n"
    )


def human_date(iso: str) -> str:
    """``2 January 2023``, as GBIF writes the date of a download citation."""
    d = date.fromisoformat(iso[:10])
    return f"{d.day} {d.strftime('%B')} {d.year}"


def download_citation(doi: str, created: str) -> str:
    return f"GBIF.org ({human_date(created)}) GBIF Occurrence Download https://doi.org/{doi}"


def _person(surname: str) -> str:
    return f"<individualName>\n      <surName>{escape(surname)}</surName>\n    </individualName>"


def metadata_xml(
    world: World,
    datasets: list[tuple[Dataset, int]],
    *,
    key: str,
    doi: str,
    created: str,
    predicate: Any,
    creator: str,
    download_url: str,
) -> str:
    """EML of the download: ``packageId`` is the DOI, the query and the constituents in the abstract."""
    total = sum(n for _, n in datasets)
    publishers = sorted({publisher_of(world, d).title for d, _ in datasets})
    parties = "".join(
        f"<associatedParty>\n<organizationName>{escape(p)}</organizationName>    <role>CONTENT_PROVIDER</role>\n"
        "</associatedParty>\n"
        for p in publishers
    )
    parties += (
        f"<associatedParty>\n    {_person(creator)}\n    <role>AUTHOR</role>\n</associatedParty>\n"
        f"<associatedParty>\n    {_person('GBIF Download Service')}\n    <role>ORIGINATOR</role>\n</associatedParty>\n"
    )
    lines = [
        f"A dataset containing all occurrences available in GBIF matching the query: {json.dumps(predicate)}",
        f"The dataset includes {total} records from {len(datasets)} constituent datasets:",
        *(f"{n} records from {d.title}." for d, n in sorted(datasets, key=lambda x: (-x[1], x[0].title))),
        "Data from some individual datasets included in this download may be licensed under less "
        "restrictive terms; review the details below.",
    ]
    abstract = escape("\n".join(lines))
    return f"""<eml:eml xmlns:eml="eml://ecoinformatics.org/eml-2.1.1"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="eml://ecoinformatics.org/eml-2.1.1 http://rs.gbif.org/schema/eml-gbif-profile/1.0.2/eml.xsd"
         packageId={quoteattr(doi)} system="http://gbif.org" scope="system"
         xml:lang="en">

<dataset>
  <alternateIdentifier>{escape(doi)}</alternateIdentifier>
  <alternateIdentifier>https://doi.org/{escape(doi)}</alternateIdentifier>
  <alternateIdentifier>{escape(key)}</alternateIdentifier>
  <title>GBIF Occurrence Download {escape(doi)}</title>
<creator>
    {_person("GBIF Download Service")}
</creator>
<metadataProvider>
    {_person("GBIF Download Service")}
</metadataProvider>
{parties}<pubDate>
        {created[:10]}
</pubDate>
<language>ENGLISH</language>
<abstract>
  <para>{abstract}</para>
</abstract>
  <intellectualRights>
    <para>Data from some individual datasets included in this download may be licensed under less restrictive terms; review the details in rights.txt.</para>
  </intellectualRights>
</dataset>

<additionalMetadata>
  <metadata>
    <gbif>
        <citation identifier={quoteattr(doi)}>{escape(download_citation(doi, created))}</citation>
        <physical>
          <objectName></objectName>
          <characterEncoding>UTF-8</characterEncoding>
          <dataFormat>
            <externallyDefinedFormat>
              <formatName>Darwin Core Archive</formatName>
            </externallyDefinedFormat>
          </dataFormat>
          <distribution>
            <online>
              <url function="download">{escape(download_url)}</url>
            </online>
          </distribution>
        </physical>
    </gbif>
  </metadata>
</additionalMetadata>

</eml:eml>
"""


def dataset_eml(world: World, ds: Dataset) -> str:
    """``dataset/<key>.xml``: the dataset's EML (title, creators, licence, citation; no publisher key,
    as in real downloads, which is why snapshots need the registry)."""
    pub = publisher_of(world, ds)
    info = dataset_json(world, ds)
    url = dataset_license_url(ds)
    return f"""<eml:eml xmlns:eml="eml://ecoinformatics.org/eml-2.1.1"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="eml://ecoinformatics.org/eml-2.1.1 http://rs.gbif.org/schema/eml-gbif-profile/1.0.2/eml.xsd"
         packageId={quoteattr(ds.key)} system="http://gbif.org" scope="system"
         xml:lang="en">

<dataset>
  <alternateIdentifier>{escape(dataset_doi(world, ds))}</alternateIdentifier>
  <alternateIdentifier>{escape(ds.key)}</alternateIdentifier>
  <title xml:lang="en">{escape(ds.title)}</title>
<creator>
<organizationName>{escape(pub.title)}</organizationName>    <address>
<country>{escape(pub.country)}</country>    </address>
</creator>
<metadataProvider>
<organizationName>{escape(pub.title)}</organizationName></metadataProvider>
<pubDate>
        {info["pubDate"][:10]}
</pubDate>
<language>en</language>
<abstract>
  <para>{escape(info["description"])}</para>
</abstract>
  <intellectualRights>
    <para>This work is licensed under <ulink url={quoteattr(url)}><citetitle>{escape(url)}</citetitle></ulink>.</para>
  </intellectualRights>
  <distribution scope="document">
    <online>
      <url function="information">{escape(info["homepage"])}</url>
    </online>
  </distribution>
</dataset>

<additionalMetadata>
  <metadata>
    <gbif>
        <dateStamp>{info["modified"]}</dateStamp>
        <citation>{escape(dataset_citation(world, ds))}</citation>
    </gbif>
  </metadata>
</additionalMetadata>

</eml:eml>
"""


def citations_txt(world: World, datasets: list[Dataset], *, doi: str, created: str) -> str:
    lines = [
        "Please cite this data as follows, and pay attention to the rights documented in the rights.txt: ",
        download_citation(doi, created),
        "",
        *(dataset_citation(world, d) for d in datasets),
    ]
    return "\n".join(lines) + "\n"


def rights_txt(datasets: list[Dataset]) -> str:
    lines = ["Please respect the rights declared for each dataset in the download: ", ""]
    for d in datasets:
        lines += [f"Dataset: {d.title}", f"Rights as supplied: {dataset_license_url(d)}", ""]
    return "\n".join(lines)
