"""The training-set spec: one YAML file describes one training set (= one Dagster partition).

The model is strict on purpose: a spec drives long, expensive runs (GBIF downloads, hundreds
of thousands of images), so a typo must fail at load time with a message that names the field
and the fix, not half-way through a backfill. Every problem becomes one line
``<field path>: <what is wrong>; <what to do>`` in :class:`SpecError`; pydantic's own error
format never reaches the user.

Values are normalised on load (GBIF parameter names to their canonical camelCase, enum values
to GBIF's spelling, licences to normalised ids, filter values sorted), so two specs that mean
the same thing have the same :meth:`TrainingSetSpec.fingerprint`.

The package, by topic:

* :mod:`.model` - :class:`TrainingSetSpec`, the whole spec;
* :mod:`.sections` - its sections (taxa, source, balancing, splits, annotations, images, refresh);
* :mod:`.messages` - :class:`SpecError` and the rendering of pydantic errors as problem lines;
* :mod:`.loading` - YAML text, files and folders to specs.

The grammar of GBIF's occurrence search parameters (``occurrence_filters``) lives beside the GBIF
client in :mod:`gbifdl_assets.gbif.search_parameters`, and GBIF's vocabularies (``ANNOTATION_LABELS``)
in :mod:`gbifdl_assets.vocabulary`; their names are re-exported here because callers have always
found them in ``gbifdl_assets.specs``.

This package is part of the core: no dagster import.
"""

from gbifdl_assets.gbif.search_parameters import (
    OCCURRENCE_SEARCH_PARAMETERS,
    canonical_search_parameter,
    normalize_search_filters,
    parameter_kind,
    record_field,
)
from gbifdl_assets.specs.loading import example_specs_dir, load_spec, load_spec_folder, parse_spec
from gbifdl_assets.specs.messages import SpecError
from gbifdl_assets.specs.model import DEFAULT_LICENSE_ALLOWLIST, TrainingSetSpec
from gbifdl_assets.specs.sections import (
    AnnotationPolicy,
    BalancingSpec,
    DuplicateOptions,
    ImageOptions,
    RefreshSpec,
    SourceSpec,
    SplitSpec,
    TaxonRef,
)
from gbifdl_assets.vocabulary import ANNOTATION_LABELS

__all__ = [
    "ANNOTATION_LABELS",
    "DEFAULT_LICENSE_ALLOWLIST",
    "OCCURRENCE_SEARCH_PARAMETERS",
    "AnnotationPolicy",
    "BalancingSpec",
    "DuplicateOptions",
    "ImageOptions",
    "RefreshSpec",
    "SourceSpec",
    "SpecError",
    "SplitSpec",
    "TaxonRef",
    "TrainingSetSpec",
    "canonical_search_parameter",
    "example_specs_dir",
    "load_spec",
    "load_spec_folder",
    "normalize_search_filters",
    "parameter_kind",
    "parse_spec",
    "record_field",
]
