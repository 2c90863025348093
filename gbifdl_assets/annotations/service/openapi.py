"""The OpenAPI 3.0 document of the service, built from the same endpoint table as the routes.

Served at ``/openapi.json`` (and under the API prefix). Response schemas are exact (all GBIF fields,
nullable where GBIF sends null), so a property-based run (schemathesis) can check every answer.
"""

from __future__ import annotations

from typing import Any

from gbifdl_assets.annotations.image_flags import MAX_COMMENT_CHARS, MAX_IDENTIFIER_CHARS
from gbifdl_assets.annotations.model import MAX_WKT_LENGTH
from gbifdl_assets.annotations.service.api import (
    API_PREFIX,
    ENDPOINTS,
    FLAG_COLOURS,
    LABEL_COLOURS,
    Endpoint,
)
from gbifdl_assets.annotations.service.http import INT64_MAX
from gbifdl_assets.annotations.service.preview_doc import preview_paths, preview_schemas
from gbifdl_assets.annotations.vocabulary import FLAGS, LABELS

__all__ = ["openapi_document"]

_TS = {"type": "string", "format": "date-time", "nullable": True}
_INT_N = {"type": "integer", "nullable": True}
_STR_N = {"type": "string", "nullable": True}
_NAMES = {"type": "array", "items": {"type": "string"}}

_STATUS_TEXT = {
    400: "Bad input (the message says what to change)",
    401: "No login, or wrong username or password",
    403: "Logged in, but not allowed (the message says who may), or a write from a page on another site",
    404: "No object with that id",
    409: "An identical rule (or image flag) exists already (its id is in the answer): support it instead",
    413: "Request body too large",
    415: "A write whose body is not application/json",
    429: "Too many failed logins from this address or for this account (see Retry-After)",
    502: "GBIF's API did not answer",
    503: "Too many logins are being checked at the moment; try again (see Retry-After)",
}


def _obj(
    props: dict[str, Any], required: list[str] | None = None, additional: bool = False
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": additional}
    if required:
        schema["required"] = required
    return schema


def _schemas() -> dict[str, Any]:
    rule_user_fields = {
        "taxonKey": {
            **_INT_N,
            "minimum": 1,
            "description": "GBIF backbone key; rules need a taxon or dataset",
        },
        "datasetKey": {**_STR_N, "description": "dataset UUID"},
        "geometry": {
            "type": "string",
            "maxLength": MAX_WKT_LENGTH,
            "description": "WKT POLYGON or MULTIPOLYGON in lon/lat (at most 2,500 vertices, 125,000 characters)",
        },
        "annotation": {"type": "string", "description": f"one of {', '.join(LABELS)} (any case)"},
        "basisOfRecord": {**_NAMES, "nullable": True},
        "basisOfRecordNegated": {"type": "boolean", "nullable": True},
        "yearRange": {**_STR_N, "description": "'a,b', '*,b', 'a,*' or one year"},
        "rulesetId": _INT_N,
        "projectId": _INT_N,
    }
    managed = {
        "id": _INT_N,
        "supportedBy": {**_NAMES, "nullable": True},
        "contestedBy": {**_NAMES, "nullable": True},
        "created": _TS,
        "createdBy": _STR_N,
        "deleted": _TS,
        "deletedBy": _STR_N,
    }
    rule = _obj(
        {
            "id": {"type": "integer"},
            **{k: v for k, v in rule_user_fields.items() if k != "basisOfRecordNegated"},
            "annotation": {"type": "string", "enum": list(LABELS)},
            "basisOfRecordNegated": {"type": "boolean"},
            "supportedBy": _NAMES,
            "contestedBy": _NAMES,
            "created": {"type": "string", "format": "date-time"},
            "createdBy": _STR_N,
            "deleted": _TS,
            "deletedBy": _STR_N,
        },
        required=[
            "id", "taxonKey", "datasetKey", "geometry", "annotation", "basisOfRecord", "basisOfRecordNegated",
            "yearRange", "rulesetId", "projectId", "supportedBy", "contestedBy", "created", "createdBy",
            "deleted", "deletedBy",
        ],
    )  # fmt: skip
    rule_input = _obj(
        {
            **rule_user_fields,
            **{k: {"description": "ignored (set by the server)"} for k in managed},
        },
        required=["geometry", "annotation"],
    )
    rule_input["example"] = {
        "taxonKey": 5219404,
        "geometry": "POLYGON ((-8 50, 2 50, 2 59, -8 59, -8 50))",
        "annotation": "SUSPICIOUS",
    }
    group_fields = {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": _STR_N,
        "members": {**_NAMES, "nullable": True, "description": "usernames; the creator is always added"},
    }
    group_managed = {
        "id": _INT_N, "created": _TS, "createdBy": _STR_N, "modified": _TS, "modifiedBy": _STR_N,
        "deleted": _TS, "deletedBy": _STR_N,
    }  # fmt: skip

    def group(with_project: bool) -> dict[str, Any]:
        props: dict[str, Any] = {"id": {"type": "integer"}}
        if with_project:
            props["projectId"] = _INT_N
        props.update(
            {
                "name": {"type": "string"},
                "description": _STR_N,
                "members": _NAMES,
                "created": {"type": "string", "format": "date-time"},
                "createdBy": _STR_N,
                "modified": _TS,
                "modifiedBy": _STR_N,
                "deleted": _TS,
                "deletedBy": _STR_N,
            }
        )
        return _obj(props, required=list(props))

    def group_input(with_project: bool) -> dict[str, Any]:
        props = dict(group_fields)
        if with_project:
            props["projectId"] = {**_INT_N, "description": "the project (you must be one of its members)"}
        props.update({k: {"description": "ignored (set by the server)"} for k in group_managed})
        return _obj(props, required=["name"], additional=True)

    comment = _obj(
        {
            "id": {"type": "integer"},
            "ruleId": {"type": "integer"},
            "comment": {"type": "string"},
            "created": {"type": "string", "format": "date-time"},
            "createdBy": _STR_N,
            "deleted": _TS,
            "deletedBy": _STR_N,
        },
        required=["id", "ruleId", "comment", "created", "createdBy", "deleted", "deletedBy"],
    )
    return {
        **_flag_schemas(),
        "Rule": rule,
        "RuleInput": rule_input,
        "Ruleset": group(True),
        "RulesetInput": group_input(True),
        "Project": group(False),
        "ProjectInput": group_input(False),
        "Comment": comment,
        "CommentInput": _obj(
            {"comment": {"type": "string", "minLength": 1, "maxLength": 10_000}}, ["comment"], additional=True
        ),
        "RuleMetrics": _obj(
            {
                "username": _STR_N,
                **{
                    k: {"type": "integer", "minimum": 0}
                    for k in (
                        "ruleCount",
                        "datasetCount",
                        "projectCount",
                        "taxonCount",
                        "supportCount",
                        "contestCount",
                    )
                },
            },
            required=[
                "username",
                "ruleCount",
                "datasetCount",
                "projectCount",
                "taxonCount",
                "supportCount",
                "contestCount",
            ],
        ),  # fmt: skip
        "VocabularyTerm": _obj(
            {
                "term": {"type": "string", "enum": list(LABELS)},
                "description": {"type": "string"},
                "color": {"type": "string", "enum": sorted(set(LABEL_COLOURS.values()))},
                "locked": {"type": "boolean"},
            },
            required=["term", "description", "color", "locked"],
        ),
        "LoggedUser": _obj({"userName": {"type": "string"}, "roles": _NAMES}, required=["userName", "roles"]),
        "Taxon": _obj(
            {
                "key": {"type": "integer", "nullable": True},
                "scientificName": _STR_N,
                "canonicalName": _STR_N,
                "rank": _STR_N,
                "status": _STR_N,
                "kingdom": _STR_N,
            },
            required=["key", "scientificName", "canonicalName", "rank", "status", "kingdom"],
        ),
        "CountryArea": _obj(
            {"code": _STR_N, "name": {"type": "string"}, "geometry": {"type": "string"}, "note": _STR_N},
            required=["code", "name", "geometry", "note"],
        ),
        "Error": _obj({"message": {"type": "string"}}, required=["message"]),
        "TaxonNames": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "taxon key (as text) -> scientific name, for the keys the service knows",
        },
        "DuplicateError": _obj(
            {"message": {"type": "string"}, "id": {"type": "integer", "description": "the identical rule"}},
            required=["message", "id"],
        ),
    }


def _flag_schemas() -> dict[str, Any]:
    """Image flags (our extension: GBIF has no image-level annotation)."""
    user_fields = {
        "gbifID": {"type": "integer", "minimum": 1, "description": "the occurrence the image belongs to"},
        "mediaIdentifier": {
            "type": "string",
            "maxLength": MAX_IDENTIFIER_CHARS,
            "description": "the image's URL, as the occurrence's media item carries it",
        },
        "contentSha256": {**_STR_N, "description": "sha256 of the image's bytes, when known (64 hex)"},
        "phash": {**_STR_N, "description": "perceptual hash of the photo, when known (16-64 hex)"},
        "taxonKey": {**_INT_N, "description": "the taxon (training class) it was flagged under"},
        "flag": {"type": "string", "description": f"one of {', '.join(FLAGS)} (any case)"},
        "comment": {**_STR_N, "maxLength": MAX_COMMENT_CHARS},
    }
    managed = ("id", "supportedBy", "contestedBy", "created", "createdBy", "deleted", "deletedBy")
    flag_input = _obj(
        {**user_fields, **{k: {"description": "ignored (set by the server)"} for k in managed}},
        required=["gbifID", "mediaIdentifier", "flag"],
        additional=True,
    )
    flag_input["example"] = {
        "gbifID": 4011664186,
        "mediaIdentifier": "https://inaturalist-open-data.s3.amazonaws.com/photos/1/original.jpg",
        "flag": "NOT_ORGANISM",
    }
    flag = _obj(
        {
            "id": {"type": "integer"},
            **user_fields,
            "flag": {"type": "string", "enum": list(FLAGS)},
            "comment": _STR_N,
            "supportedBy": _NAMES,
            "contestedBy": _NAMES,
            "created": {"type": "string", "format": "date-time"},
            "createdBy": _STR_N,
            "deleted": _TS,
            "deletedBy": _STR_N,
        },
        required=["id", *user_fields, *managed[1:]],
    )
    term = _obj(
        {
            "term": {"type": "string", "enum": list(FLAGS)},
            "description": {"type": "string"},
            "color": {"type": "string", "enum": sorted(set(FLAG_COLOURS.values()))},
        },
        required=["term", "description", "color"],
    )
    image = _obj(
        {
            "gbifID": {"type": "integer"},
            "url": {"type": "string"},
            "label": {"type": "integer"},
            "labelName": _STR_N,
            "split": {"type": "string"},
            "license": {"type": "string"},
            "creator": _STR_N,
            "contentKey": {"type": "string"},
            "contentSha256": _STR_N,
            "thumbnail": {**_STR_N, "description": "the stored copy's address; null when not stored yet"},
            "flags": {
                "type": "array",
                "items": _obj({"id": {"type": "integer"}, "flag": {"type": "string"}}, ["id", "flag"]),
            },
        },
        required=["gbifID", "url", "label", "labelName", "split", "license", "creator", "contentKey",
                  "contentSha256", "thumbnail", "flags"],
    )  # fmt: skip
    klass = _obj(
        {"label": {"type": "integer"}, "name": _STR_N, "images": {"type": "integer"}},
        ["label", "name", "images"],
    )
    page = _obj(
        {
            "trainingSet": {"type": "string"},
            "manifestId": {"type": "string"},
            "classes": {"type": "array", "items": klass},
            "label": _INT_N,
            "total": {"type": "integer"},
            "offset": {"type": "integer"},
            "images": {"type": "array", "items": image},
        },
        ["trainingSet", "manifestId", "classes", "label", "total", "offset", "images"],
    )
    return {
        "ImageFlag": flag,
        "ImageFlagInput": flag_input,
        "FlagTerm": term,
        "GalleryPage": page,
        "TrainingSetNames": {"type": "array", "items": {"type": "string"}},
    }


def _ref(name: str) -> dict[str, Any]:
    if name.endswith("[]"):
        return {"type": "array", "items": {"$ref": f"#/components/schemas/{name[:-2]}"}}
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: str) -> dict[str, Any]:
    """A response whose body is JSON of the named schema (``Name[]`` for an array of them)."""
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _responses(schema: str, errors: set[int]) -> dict[str, Any]:
    """200 with ``schema`` plus the errors (each a GBIF-style ``{"message": ...}``)."""
    return {"200": _json("OK", schema), **_errors(errors)}


def _errors(codes: set[int]) -> dict[str, Any]:
    return {
        str(code): _json(_STATUS_TEXT[code], "DuplicateError" if code == 409 else "Error")
        for code in sorted(codes)
    }


def _operation(ep: Endpoint) -> dict[str, Any]:
    params: list[dict[str, Any]] = []
    for name in ("id", "commentId"):
        if "{" + name in ep.path:
            params.append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0, "maximum": INT64_MAX},
                }
            )
    for p in ep.query:
        param: dict[str, Any] = {"name": p.name, "in": "query", "required": False, "schema": p.schema,
                                 "description": p.description}  # fmt: skip
        if p.repeated:
            param.update({"style": "form", "explode": True})
        params.append(param)
    # every request may carry (wrong) credentials and a too-large body; bad query text is always a 400
    codes = {400, 401, 413, 429, 503, *ep.errors}
    if ep.method != "GET":  # writes: JSON only, and never from a page on another site (.csrf)
        codes |= {403, 415}
    op: dict[str, Any] = {
        "operationId": ep.name,
        "summary": ep.summary,
        "tags": [ep.tag],
        "parameters": params,
        "responses": _responses(ep.response, codes),
        "security": [{"basicAuth": []}] if ep.auth else [{}, {"basicAuth": []}],
    }
    if ep.body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(ep.body)}}}
    return op


def _gallery_paths(page_get: dict[str, Any]) -> dict[str, Any]:
    """The gallery page's helpers (404 when the service has no data storage or the set no manifest)."""
    ts = {"name": "ts", "in": "path", "required": True, "schema": {"type": "string"}}
    int_query = [
        {"name": name, "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}}
        for name in ("label", "limit", "offset")
    ]
    image_ok = {
        "description": "the stored image",
        "content": {
            t: {"schema": {"type": "string", "format": "binary"}} for t in ("image/jpeg", "image/png")
        },
    }
    return {
        "/ui/api/gallery": {
            "get": {
                **page_get,
                "operationId": "gallery_training_sets",
                "summary": "Training sets with a manifest in the service's data storage",
                "tags": ["page"],
                "responses": _responses("TrainingSetNames", {404}),
            }
        },
        "/ui/api/gallery/{ts}": {
            "get": {
                **page_get,
                "operationId": "gallery_page",
                "summary": "A training set's classes and one page of a class's images, with their flags",
                "tags": ["page"],
                "parameters": [ts, *int_query],
                "responses": _responses("GalleryPage", {400, 404}),
            }
        },
        "/ui/api/gallery/{ts}/image/{key}": {
            "get": {
                **page_get,
                "operationId": "gallery_image",
                "summary": "A stored image of the training set, by its manifest content_key",
                "tags": ["page"],
                "parameters": [
                    ts,
                    {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {"200": image_ok, **_errors({400, 404})},
            }
        },
    }


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for ep in ENDPOINTS:
        paths.setdefault(API_PREFIX + ep.openapi_path, {})[ep.method.lower()] = _operation(ep)
    page_get = {"security": [{}, {"basicAuth": []}]}
    paths["/user/login"] = {
        method: {
            "operationId": f"login_{method}",
            "summary": "Check a login (GBIF's /v1/user/login); the page logs in with it",
            "tags": ["user"],
            "security": [{"basicAuth": []}],
            "responses": _responses(
                "LoggedUser", {400, 401, 413, 429, 503} | ({403, 415} if method == "post" else set())
            ),
        }
        for method in ("get", "post")
    }
    paths["/ui/api/taxa"] = {
        "get": {
            **page_get,
            "operationId": "search_taxa",
            "summary": "Find a taxon by name or key through the GBIF API the service is configured with",
            "tags": ["page"],
            "parameters": [{"name": "q", "in": "query", "required": True, "schema": {"type": "string"}}],
            "responses": _responses("Taxon[]", {400, 404, 502}),
        }
    }
    paths["/ui/api/taxon-names"] = {
        "get": {
            **page_get,
            "operationId": "taxon_names",
            "summary": "Names of taxa the service has looked up (no request to GBIF)",
            "tags": ["page"],
            "parameters": [
                {
                    "name": "key",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "array", "items": {"type": "integer"}},
                    "style": "form",
                    "explode": True,
                }
            ],  # fmt: skip
            "responses": _responses("TaxonNames", {400}),
        }
    }
    paths["/ui/api/country/{code}"] = {
        "get": {
            **page_get,
            "operationId": "country_area",
            "summary": "A country's outline (Natural Earth 1:50m) within GBIF's vertex limit, as WKT",
            "tags": ["page"],
            "parameters": [{"name": "code", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": _responses("CountryArea", {400, 404}),
        }
    }
    paths.update(preview_paths(API_PREFIX, _responses))
    paths.update(_gallery_paths(page_get))
    schemas = _schemas()
    schemas.update(preview_schemas(schemas["RuleInput"]))
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "gbifdl_assets annotation service",
            "version": "1.0.0",
            "description": (
                "GBIF-compatible rule-based annotation API (GBIF's paths, verbs and JSON names under "
                f"{API_PREFIX}), with GBIF's known bugs fixed: real geometry intersection, 404 for unknown "
                "ids, existence and membership checks, paging up to 10,000 per page. Reads are public; "
                "writes need HTTP Basic credentials of a local account, sent up front (a 401 has no "
                "Basic challenge), a JSON body (else 415) and no Origin of another site (else 403). "
                'An identical rule gets 409 with its id. Errors are {"message": ...}. Extension: '
                f"POST {API_PREFIX}/rule/preview says what a rule would flag in the training sets' snapshots."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic"}},
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
