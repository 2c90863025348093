"""The manifest benchmark's anchors: polars (lazy) and DuckDB, with the product's semantics.

What a data engineer would write to get *our* manifest with either engine, on the bench's spec
(bench_manifest.SPEC): the occurrence and exclude filters, the licence policy (the media licence
normalised by :func:`gbifdl_assets.gbif.licenses.normalize_license`, applied to the distinct
values only), the annotation policy (``exclude_any``), duplicate URLs (the first by gbifID,
media_index, input order), exact balancing (one image per occurrence, ``min_per_class``,
``max_per_class`` water-filled over the publisher strata of each class with the seeded
tie-break) and the stable splits by occurrence, then the output columns (sha256 content keys,
label names, strata, split groups) in (label, content_key) order, written as Parquet.

Where the manifest's answer depends on our stable hash (gbifdl-hash64: the order keys, the
stratum tie-break, the split draw), each engine calls the public numpy functions of
:mod:`gbifdl_assets.sampling.hashing` as a vectorised UDF (a polars ``map_batches``, a DuckDB
Arrow UDF): no engine has that hash, and without it the rows could not be compared. Everything
else (scan, filters, joins, sorts, window functions, the water-filling) is the engine's own.
``bench_manifest`` checks that both give the same rows, splits and counts as ours on a small input.

Written for the bench's spec only (the filter set is spelled out, not derived from any spec).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa

from gbifdl_assets.gbif.licenses import normalize_license
from gbifdl_assets.sampling.hashing import (
    combine,
    hash_ints,
    hash_strings,
    mix64,
    seed_state,
    to_unit_interval,
)

__all__ = ["run_duckdb", "run_polars"]

BASIS = ["HUMAN_OBSERVATION", "MACHINE_OBSERVATION"]
BAD_ISSUES = ["ZERO_COORDINATE", "COUNTRY_COORDINATE_MISMATCH"]
DROP_LABELS = ["SUSPICIOUS", "MANAGED", "FORMER"]
OUT_COLUMNS = [
    "content_key", "url", "label", "label_name", "speciesKey", "gbifID", "media_index", "datasetKey",
    "publisher", "license", "license_raw", "creator", "rightsHolder", "references", "split",
    "split_group", "stratum", "snapshot_id",
]  # fmt: skip


def _order_key(urls: pa.Array, seed: int) -> np.ndarray:
    return mix64(hash_strings(urls, 0) ^ np.uint64(seed_state(seed)))


def _split_code(gbif: np.ndarray, seed: int, train: float, val: float) -> np.ndarray:
    u = to_unit_interval(mix64(hash_ints(gbif, 0) ^ np.uint64(seed_state(seed))))
    return np.where(u < train, 0, np.where(u < train + val, 1, 2)).astype(np.int8)


def _stratum_tiebreak(labels: np.ndarray, publishers: pa.Array, seed: int) -> np.ndarray:
    """combine(hash of the label, hash of the stratum value); a null stratum has its own hash."""
    s_hash = hash_strings(publishers, seed)
    null = np.asarray(publishers.is_null().to_numpy(zero_copy_only=False), bool)
    if null.any():
        s_hash[null] = mix64(np.array([0x5A5A5A5A5A5A5A5A ^ seed_state(seed)], np.uint64))[0]
    return combine(hash_ints(labels, seed), s_hash)


def _sha256_hex(urls: list[str]) -> list[str]:
    return [hashlib.sha256(u.encode()).hexdigest() for u in urls]


def _licence_map(values: list[str | None]) -> dict[str | None, str]:
    return {v: normalize_license(v) for v in values}


# ---------------------------------------------------------------------------------------------------
# polars
# ---------------------------------------------------------------------------------------------------
def _polars_water_fill(pairs, budget: int):  # noqa: ANN001, ANN202 (polars frames; imported lazily)
    """Per label: fill every stratum to a common level, the remainder to the lowest tie-breaks."""
    import polars as pl

    p = pairs.sort(["label", "size", "tiebreak"]).with_columns(
        k=pl.int_range(pl.len()).over("label"),
        cnt=pl.len().over("label"),
        before=(pl.col("size").cum_sum() - pl.col("size")).over("label"),
    )
    p = p.with_columns(full=(pl.col("before") + pl.col("size") * (pl.col("cnt") - pl.col("k"))) <= budget)
    p = p.with_columns(
        n_full=pl.col("full").sum().over("label"),
        full_sum=pl.when(pl.col("full")).then(pl.col("size")).otherwise(0).sum().over("label"),
    )
    p = p.with_columns(rest=pl.col("cnt") - pl.col("n_full"), left=budget - pl.col("full_sum"))
    p = p.with_columns(level=pl.when(pl.col("rest") > 0).then(pl.col("left") // pl.col("rest")).otherwise(0))
    p = p.with_columns(extra=pl.col("left") - pl.col("level") * pl.col("rest"))
    open_rank = pl.col("tiebreak").rank("ordinal").over(["label", "full"]) - 1
    quota = (
        pl.when(pl.col("full"))
        .then(pl.col("size"))
        .otherwise(pl.col("level") + (open_rank < pl.col("extra")).cast(pl.Int64))
    )
    return p.with_columns(quota=quota).select("label", "publishingOrgKey", "quota")


def run_polars(src: Path, out: Path, spec: dict) -> dict:
    import polars as pl

    bal, splits = spec["balancing"], spec["splits"]
    seed = 0
    allowed = set(_ALLOWED)
    lf = pl.scan_parquet(src)
    raw_licences = lf.select(pl.col("media_license").unique()).collect()["media_license"].to_list()
    ids = _licence_map(raw_licences)
    ok_raw = [v for v, i in ids.items() if i in allowed and v is not None]
    filtered = (
        lf.with_row_index("pos")
        .filter(
            pl.col("speciesKey").is_not_null()
            & (pl.col("identifier").str.len_bytes() > 0)
            & pl.col("basisOfRecord").is_in(BASIS)
            & pl.col("coordinateUncertaintyInMeters").is_between(0, 10000)
            & (pl.col("occurrenceStatus") == "PRESENT")
            & (pl.col("year") >= 2000)
            & ~pl.col("issues").list.eval(pl.element().is_in(BAD_ISSUES)).list.any().fill_null(False)
            & pl.col("media_license").is_in(ok_raw)
            & ~pl.col("annotation_labels")
            .list.eval(pl.element().is_in(DROP_LABELS))
            .list.any()
            .fill_null(False)
        )
        .select(
            "pos",
            "gbifID",
            "media_index",
            "identifier",
            "speciesKey",
            "species",
            "publishingOrgKey",
            "datasetKey",
            "media_license",
            "media_license_raw",
            "creator",
            "rightsHolder",
            "references",
        )  # fmt: skip
        # duplicate URLs: the first by (gbifID, media_index, input order)
        .sort(["gbifID", "media_index", "pos"])
        .unique(subset="identifier", keep="first", maintain_order=True)
        .with_columns(
            key=pl.col("identifier").map_batches(
                lambda s: pl.Series(_order_key(s.to_arrow(), seed)), return_dtype=pl.UInt64
            )
        )
        .sort(["key", "pos"])
        .filter(pl.int_range(pl.len()).over("gbifID") < bal["max_per_occurrence"])
        .with_columns(avail=pl.len().over("speciesKey"))
        .filter(pl.col("avail") >= bal["min_per_class"])
    )
    df = filtered.collect()
    pairs = df.group_by(["speciesKey", "publishingOrgKey"]).agg(size=pl.len()).rename({"speciesKey": "label"})
    pairs = pairs.with_columns(
        tiebreak=pl.Series(
            _stratum_tiebreak(
                pairs["label"].to_numpy(), pairs["publishingOrgKey"].to_arrow(), bal.get("seed", 0)
            )
        )
    )
    quotas = _polars_water_fill(pairs, bal["max_per_class"]).rename({"label": "speciesKey"})
    picked = (
        df.lazy()
        .join(
            quotas.lazy(),
            on=["speciesKey", "publishingOrgKey"],
            how="left",
            nulls_equal=True,
            maintain_order="left",
        )
        .filter(pl.int_range(pl.len()).over(["speciesKey", "publishingOrgKey"]) < pl.col("quota"))
        .collect()
    )
    names = (
        picked.group_by(["speciesKey", "species"])
        .agg(n=pl.len())
        .drop_nulls()
        .sort(["speciesKey", "n", "species"], descending=[False, True, False])
        .unique(subset="speciesKey", keep="first")
        .select("speciesKey", label_name="species")
    )
    split_code = _split_code(
        picked["gbifID"].to_numpy(), splits.get("seed", 0), splits["train"], splits["val"]
    )
    result = (
        picked.join(names, on="speciesKey", how="left", maintain_order="left")
        .with_columns(
            content_key=pl.Series(_sha256_hex(picked["identifier"].to_list())),
            split=pl.Series(np.array(["train", "val", "test"])[split_code]),
            license=pl.col("media_license").replace_strict(ids, return_dtype=pl.String),
        )
        .select(
            "content_key",
            url="identifier",
            label="speciesKey",
            label_name="label_name",
            speciesKey="speciesKey",
            gbifID="gbifID",
            media_index="media_index",
            datasetKey="datasetKey",
            publisher="publishingOrgKey",
            license="license",
            license_raw="media_license_raw",
            creator="creator",
            rightsHolder="rightsHolder",
            references="references",
            split="split",
            split_group=pl.format("gbifID:{}", pl.col("gbifID")),
            stratum=pl.col("publishingOrgKey").fill_null(""),
            snapshot_id=pl.lit("bench"),
        )
        .sort(["label", "content_key"])
    )
    result.write_parquet(out, compression="zstd")
    return {"images": result.height, "classes": result["label"].n_unique()}


# ---------------------------------------------------------------------------------------------------
# DuckDB
# ---------------------------------------------------------------------------------------------------
def run_duckdb(src: Path, out: Path, spec: dict, threads: int | None = None) -> dict:
    import duckdb

    bal, splits = spec["balancing"], spec["splits"]
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {threads}")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    seed, split_seed = bal.get("seed", 0), splits.get("seed", 0)
    con.create_function(
        "order_key",
        lambda urls: pa.array(_order_key(urls, seed)),
        ["VARCHAR"],
        "UBIGINT",
        type="arrow",
    )
    con.create_function(
        "split_code",
        lambda g: pa.array(
            _split_code(g.to_numpy(zero_copy_only=False), split_seed, splits["train"], splits["val"])
        ),
        ["BIGINT"],
        "TINYINT",
        type="arrow",
    )
    con.create_function(
        "tiebreak",
        lambda labels, pubs: pa.array(_stratum_tiebreak(labels.to_numpy(zero_copy_only=False), pubs, seed)),
        ["BIGINT", "VARCHAR"],
        "UBIGINT",
        type="arrow",
    )
    raw = [r[0] for r in con.execute(f"SELECT DISTINCT media_license FROM read_parquet('{src}')").fetchall()]
    ids = _licence_map(raw)
    con.execute("CREATE TEMP TABLE lic (raw VARCHAR, id VARCHAR)")
    con.executemany("INSERT INTO lic VALUES (?, ?)", [(k, v) for k, v in ids.items() if k is not None])
    allowed = ", ".join(f"'{a}'" for a in sorted(_ALLOWED))
    basis = ", ".join(f"'{b}'" for b in BASIS)
    issues = ", ".join(f"'{b}'" for b in BAD_ISSUES)
    drops = ", ".join(f"'{b}'" for b in DROP_LABELS)
    con.execute(
        f"""
        CREATE TEMP TABLE cand AS
        WITH f AS (
          SELECT s.*, lic.id AS lic_id
          FROM (SELECT *, file_row_number AS pos FROM read_parquet('{src}', file_row_number = true)) s
          JOIN lic ON s.media_license = lic.raw
          WHERE speciesKey IS NOT NULL AND strlen(identifier) > 0
            AND basisOfRecord IN ({basis}) AND occurrenceStatus = 'PRESENT'
            AND coordinateUncertaintyInMeters BETWEEN 0 AND 10000 AND year >= 2000
            AND NOT coalesce(list_has_any(issues, [{issues}]), false)
            AND NOT coalesce(list_has_any(annotation_labels, [{drops}]), false)
            AND lic.id IN ({allowed})
        ), d AS (
          SELECT * FROM f
          QUALIFY row_number() OVER (PARTITION BY identifier ORDER BY gbifID, media_index, pos) = 1
        ), k AS (
          SELECT *, order_key(identifier) AS key FROM d
        ), o AS (
          SELECT * FROM k
          QUALIFY row_number() OVER (PARTITION BY gbifID ORDER BY key, pos) <= {bal["max_per_occurrence"]}
        )
        SELECT * FROM o
        QUALIFY count(*) OVER (PARTITION BY speciesKey) >= {bal["min_per_class"]}
        """
    )
    budget = bal["max_per_class"]
    con.execute(
        f"""
        CREATE TEMP TABLE quotas AS
        WITH p AS (
          SELECT speciesKey AS label, publishingOrgKey AS pub, count(*) AS size
          FROM cand GROUP BY ALL
        ), t AS (
          SELECT *, tiebreak(label, pub) AS tb FROM p
        ), w AS (
          SELECT *,
            row_number() OVER g - 1 AS k, count(*) OVER (PARTITION BY label) AS cnt,
            sum(size) OVER g - size AS before
          FROM t WINDOW g AS (PARTITION BY label ORDER BY size, tb ROWS UNBOUNDED PRECEDING)
        ), fl AS (
          SELECT *, before + size * (cnt - k) <= {budget} AS is_full FROM w
        ), lv AS (
          SELECT *,
            cnt - count(*) FILTER (WHERE is_full) OVER (PARTITION BY label) AS rest,
            {budget} - coalesce(sum(size) FILTER (WHERE is_full) OVER (PARTITION BY label), 0) AS lft
          FROM fl
        ), ex AS (
          SELECT *, CASE WHEN rest > 0 THEN lft // rest ELSE 0 END AS level FROM lv
        )
        SELECT label, pub,
          CASE WHEN is_full THEN size
               ELSE level + CASE WHEN row_number() OVER (PARTITION BY label, is_full ORDER BY tb) - 1
                                     < lft - level * rest THEN 1 ELSE 0 END
          END AS quota
        FROM ex
        """
    )
    con.execute(
        f"""
        COPY (
          WITH picked AS (
            SELECT c.* FROM cand c JOIN quotas q ON c.speciesKey = q.label AND c.publishingOrgKey IS NOT DISTINCT FROM q.pub
            QUALIFY row_number() OVER (PARTITION BY c.speciesKey, c.publishingOrgKey ORDER BY key, pos) <= q.quota
          ), names AS (
            SELECT speciesKey, arg_min(species, (-n, species)) AS label_name FROM (
              SELECT speciesKey, species, count(*) AS n FROM picked WHERE species IS NOT NULL GROUP BY ALL
            ) GROUP BY speciesKey
          )
          SELECT sha256(identifier) AS content_key, identifier AS url, p.speciesKey AS label, names.label_name,
            p.speciesKey, gbifID, media_index, datasetKey, publishingOrgKey AS publisher, lic_id AS license,
            media_license_raw AS license_raw, creator, rightsHolder, "references",
            ['train', 'val', 'test'][split_code(gbifID) + 1] AS split,
            'gbifID:' || gbifID AS split_group, coalesce(publishingOrgKey, '') AS stratum,
            'bench' AS snapshot_id
          FROM picked p LEFT JOIN names USING (speciesKey)
          ORDER BY label, content_key
        ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)
        """
    )
    images, classes = con.execute(
        f"SELECT count(*), count(DISTINCT label) FROM read_parquet('{out}')"
    ).fetchone()
    con.close()
    return {"images": images, "classes": classes}


_ALLOWED = (
    "CC0-1.0",
    "PDM",
    "CC-BY-4.0",
    "CC-BY-3.0",
    "CC-BY-2.5",
    "CC-BY-2.1",
    "CC-BY-2.0",
    "CC-BY-1.0",
    "CC-BY",
    "CC-BY-SA-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-2.5",
    "CC-BY-SA-2.1",
    "CC-BY-SA-2.0",
    "CC-BY-SA-1.0",
    "CC-BY-SA",
)  # fmt: skip  (the spec's default allowlist, as parse_spec expands it)
