"""Rule-based annotations: "taxon in area are LABEL" rules, their store, and the engine that applies them.

Modules: ``vocabulary`` (the controlled labels), ``compiled`` (the rules table every source compiles
to, and its validation), ``areas`` (named areas: countries, land), ``engine`` (vectorised,
taxonomy-aware application of rules to occurrences), ``seeds`` (CoordinateCleaner-style generated
rules and the Species Distribution mapping), plus the model, store, permissions, rule text, files,
GBIF API and CLI modules. Nothing here imports dagster.
"""
