"""GBIF's rule-based annotation API, offline: ``/v1/occurrence/experimental/annotation/…``.

Serves a small deterministic set of projects, rulesets, rules (25, over the sandbox's named taxa and
country boxes, three of them deleted, several with votes) and comments in GBIF's JSON shapes
(reference annotations.md §2–3), so the annotation pull and push can be tested without GBIF:

* ``GET /rule`` (filters ``taxonKey datasetKey rulesetId projectId basisOfRecord basisOfRecordNegated
  yearRange createdBy supportedBy contestedBy comment geometry``, ``limit`` default 100 and no maximum,
  ``offset``; bare arrays, newest first, deleted rules hidden), ``GET /rule/{id}`` (deleted rules
  too; an unknown id answers 200 with an empty body, as GBIF), ``GET /rule/{id}/comment``;
* ``GET /ruleset[?projectId=]``, ``/ruleset/{id}``, ``GET /project[?member=]``, ``/project/{id}``;
* ``POST /rule`` with HTTP Basic auth against the sandbox's username/password (401 text otherwise),
  case-insensitive ``annotation`` stored upper-case, GBIF dev's geometry limits (400 ``{"message"}``).

It copies GBIF's behaviour, including what our own store fixes: ``geometry`` is compared as a string
and a literal ``null`` means IS NULL. Wire it into the app with ``routes += annotation_routes(state)``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import re
import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gbifdl_assets.vocabulary import ANNOTATION_LABELS, MAX_GEOMETRY_VERTICES, MAX_WKT_CHARS

from .vocab import COUNTRIES

__all__ = ["ANNOTATION_PREFIX", "AnnotationSandbox", "annotation_routes", "seed_annotations"]

ANNOTATION_PREFIX = "/v1/occurrence/experimental/annotation"
_VERTEX_RE = re.compile(r"-?\d+(?:\.\d+)?\s+-?\d+(?:\.\d+)?")
_EPOCH = dt.datetime(2025, 11, 1, 8, 0, tzinfo=dt.UTC)

# named taxa of the sandbox taxonomy (fixed keys whatever the seed)
LION, TIGER, SPARROW, SUNFLOWER, MULBERRY = 5219404, 5219416, 5231190, 9206251, 5361880
RED_ADMIRAL, PEACOCK, GANNET, FLY_AGARIC = 1898286, 4535827, 2480983, 8168319
ANIMALIA, MAMMALIA, AVES, LEPIDOPTERA, FELIDAE = 1, 359, 212, 797, 9703


def _ts(hours: float) -> str:
    return (_EPOCH + dt.timedelta(hours=hours)).isoformat(timespec="milliseconds")


def _box(code: str) -> str:
    """A country's box (centre ± spread degrees) from the sandbox's country table."""
    row = next(c for c in COUNTRIES if c[0] == code)
    lat, lon, spread = row[3], row[4], row[5]
    x0, x1 = max(-180.0, lon - spread), min(180.0, lon + spread)
    y0, y1 = max(-90.0, lat - spread), min(90.0, lat + spread)
    return _rect(x0, y0, x1, y1)


def _rect(x0: float, y0: float, x1: float, y1: float) -> str:
    def f(v: float) -> str:
        return f"{round(v, 4):g}"

    return f"POLYGON (({f(x0)} {f(y0)}, {f(x1)} {f(y0)}, {f(x1)} {f(y1)}, {f(x0)} {f(y1)}, {f(x0)} {f(y0)}))"


def _inverted(x0: float, y0: float, x1: float, y1: float) -> str:
    """GBIF UI's "everywhere except here": the Web-Mercator world box with the area as a hole."""
    world = "-180 -85.0511, 180 -85.0511, 180 85.0511, -180 85.0511, -180 -85.0511"
    hole = f"{x0:g} {y0:g}, {x0:g} {y1:g}, {x1:g} {y1:g}, {x1:g} {y0:g}, {x0:g} {y0:g}"
    return f"POLYGON (({world}), ({hole}))"


def seed_annotations(dataset_key: str) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """(projects, rulesets, rules, comments) as GBIF would send them; ``dataset_key`` is a sandbox dataset."""
    projects = [
        _project(
            1, "Sandbox big cats", "Where lions and tigers do and do not live", ["sandbox", "jwaller"], 0
        ),
        _project(2, "Sandbox plants", "Introduced and cultivated plants", ["botanist"], 1),
        _project(3, "Abandoned project", None, ["sandbox"], 2, deleted=3),
    ]
    rulesets = [
        _ruleset(1, 1, "lions", ["sandbox", "jwaller"], 4),
        _ruleset(2, 1, "tigers", ["sandbox"], 5),
        _ruleset(3, 2, "introduced-plants", ["botanist"], 6),
        _ruleset(4, None, "coordinate-errors", ["jwaller"], 7),
        _ruleset(5, 3, "abandoned", ["sandbox"], 8, deleted=9),
    ]
    zero = _rect(-1, -1, 1, 1)
    hq = _rect(12.48, 55.57, 12.68, 55.77)
    specs: list[dict[str, Any]] = [
        dict(taxonKey=LION, geometry=_box("GB"), annotation="SUSPICIOUS", rulesetId=1, createdBy="sandbox"),
        dict(
            taxonKey=LION,
            geometry=_box("KE"),
            annotation="NATIVE",
            rulesetId=1,
            supportedBy=["jwaller", "sandbox"],
        ),
        dict(
            taxonKey=LION,
            geometry=_box("US"),
            annotation="MANAGED",
            rulesetId=1,
            basisOfRecord=["LIVING_SPECIMEN"],
        ),
        dict(
            taxonKey=LION,
            geometry=_box("FR"),
            annotation="FORMER",
            rulesetId=1,
            yearRange="*,1900",
            basisOfRecord=["FOSSIL_SPECIMEN", "PRESERVED_SPECIMEN"],
        ),
        dict(taxonKey=TIGER, geometry=_box("IN"), annotation="NATIVE", rulesetId=2, supportedBy=["jwaller"]),
        dict(
            taxonKey=TIGER,
            geometry=_box("AU"),
            annotation="SUSPICIOUS",
            rulesetId=2,
            contestedBy=["botanist"],
        ),
        dict(taxonKey=TIGER, geometry=_box("DE"), annotation="MANAGED", rulesetId=2, deleted=True),
        dict(
            taxonKey=SPARROW,
            geometry=_box("US"),
            annotation="INTRODUCED",
            createdBy="jwaller",
            supportedBy=["sandbox", "botanist", "birder"],
        ),
        dict(
            taxonKey=SPARROW,
            geometry=_box("AU"),
            annotation="INTRODUCED",
            yearRange="1863,*",
            createdBy="birder",
        ),
        dict(taxonKey=SPARROW, geometry=_box("GB"), annotation="NATIVE", createdBy="birder"),
        dict(
            taxonKey=SUNFLOWER,
            geometry=_box("FR"),
            annotation="INTRODUCED",
            rulesetId=3,
            createdBy="botanist",
        ),
        dict(taxonKey=SUNFLOWER, geometry=_box("US"), annotation="NATIVE", rulesetId=3, createdBy="botanist"),
        dict(
            taxonKey=SUNFLOWER,
            geometry=_box("ES"),
            annotation="MANAGED",
            rulesetId=3,
            createdBy="botanist",
            basisOfRecord=["HUMAN_OBSERVATION", "MACHINE_OBSERVATION"],
            basisOfRecordNegated=True,
        ),
        dict(
            taxonKey=MULBERRY,
            geometry=_box("IT"),
            annotation="INTRODUCED",
            rulesetId=3,
            createdBy="botanist",
            supportedBy=["botanist"],
            contestedBy=["sandbox"],
        ),
        dict(taxonKey=RED_ADMIRAL, geometry=_box("AR"), annotation="VAGRANT", createdBy="jwaller"),
        dict(taxonKey=AVES, geometry=zero, annotation="SUSPICIOUS", rulesetId=4, createdBy="jwaller"),
        dict(
            taxonKey=ANIMALIA,
            geometry=zero,
            annotation="SUSPICIOUS",
            rulesetId=4,
            createdBy="jwaller",
            deleted=True,
        ),
        dict(taxonKey=MAMMALIA, geometry=hq, annotation="SUSPICIOUS", rulesetId=4, createdBy="jwaller"),
        dict(
            taxonKey=FLY_AGARIC,
            geometry=_inverted(-130, 25, 150, 72),
            annotation="SUSPICIOUS",
            createdBy="jwaller",
            supportedBy=["sandbox"],
        ),
        dict(
            taxonKey=FLY_AGARIC,
            geometry=_box("AU"),
            annotation="INTRODUCED",
            createdBy="botanist",
            deleted=True,
        ),
        dict(taxonKey=LEPIDOPTERA, geometry=_box("AQ"), annotation="SUSPICIOUS", createdBy="jwaller"),
        dict(
            taxonKey=FELIDAE,
            geometry="MULTIPOLYGON (((4.9 51.6, 6.1 51.6, 6.1 52.8, 4.9 52.8, 4.9 51.6)), "
            "((4.1 50.1, 5.1 50.1, 5.1 51.1, 4.1 51.1, 4.1 50.1)))",
            annotation="MANAGED",
            rulesetId=1,
            yearRange="1950,*",
        ),
        dict(
            taxonKey=None,
            datasetKey=dataset_key,
            geometry=_box("US"),
            annotation="SUSPICIOUS",
            createdBy="jwaller",
        ),
        dict(
            taxonKey=PEACOCK,
            geometry=_box("JP"),
            annotation="VAGRANT",
            yearRange="2010,2020",
            createdBy="birder",
        ),
        dict(
            taxonKey=GANNET,
            geometry=_box("CH"),
            annotation="SUSPICIOUS",
            createdBy="birder",
            supportedBy=["jwaller"],
            contestedBy=["sandbox"],
        ),
    ]
    project_of = {r["id"]: r["projectId"] for r in rulesets}
    rules = []
    for i, spec in enumerate(specs, start=1):
        hours = 10 + i * 6
        deleted = spec.pop("deleted", False)
        ruleset_id = spec.get("rulesetId")
        rule = {
            "id": i,
            "taxonKey": spec.get("taxonKey"),
            "datasetKey": spec.get("datasetKey"),
            "geometry": spec["geometry"],
            "annotation": spec["annotation"],
            "basisOfRecord": spec.get("basisOfRecord"),
            "basisOfRecordNegated": spec.get("basisOfRecordNegated", False),
            "yearRange": spec.get("yearRange"),
            "rulesetId": ruleset_id,
            "projectId": project_of.get(ruleset_id) if ruleset_id else None,
            "supportedBy": spec.get("supportedBy", []),
            "contestedBy": spec.get("contestedBy", []),
            "created": _ts(hours),
            "createdBy": spec.get("createdBy", "sandbox"),
            "deleted": _ts(hours + 2) if deleted else None,
            "deletedBy": spec.get("createdBy", "sandbox") if deleted else None,
        }
        rules.append(rule)
    comments = [
        _comment(1, 1, "Lions in Britain are zoo animals", "jwaller", 200),
        _comment(2, 1, "Also safari parks", "sandbox", 201),
        _comment(3, 6, "There are tigers in Australian zoos", "botanist", 202),
        _comment(4, 6, "withdrawn", "botanist", 203, deleted=True),
        _comment(5, 19, "Fly agaric is holarctic", "sandbox", 204),
    ]
    return projects, rulesets, rules, comments


def _project(
    pid: int,
    name: str,
    description: str | None,
    members: list[str],
    hours: float,
    deleted: float | None = None,
) -> dict:
    return {
        "id": pid,
        "name": name,
        "description": description,
        "members": members,
        "created": _ts(hours),
        "createdBy": members[0],
        "modified": _ts(hours),
        "modifiedBy": members[0],
        "deleted": _ts(deleted) if deleted is not None else None,
        "deletedBy": members[0] if deleted is not None else None,
    }


def _ruleset(
    rid: int, project: int | None, name: str, members: list[str], hours: float, deleted: float | None = None
) -> dict:
    return {
        "id": rid,
        "projectId": project,
        "name": name,
        "description": f"{name} (sandbox)",
        "members": members,
        "created": _ts(hours),
        "createdBy": members[0],
        "modified": _ts(hours),
        "modifiedBy": None,  # GBIF never persists ruleset.modifiedBy (bug §8.5)
        "deleted": _ts(deleted) if deleted is not None else None,
        "deletedBy": members[0] if deleted is not None else None,
    }


def _comment(cid: int, rule_id: int, text: str, user: str, hours: float, deleted: bool = False) -> dict:
    return {
        "id": cid,
        "ruleId": rule_id,
        "comment": text,
        "created": _ts(hours),
        "createdBy": user,
        "deleted": _ts(hours + 1) if deleted else None,
        "deletedBy": user if deleted else None,
    }


# ---------------------------------------------------------------------------------------------------
# the service
# ---------------------------------------------------------------------------------------------------
class AnnotationSandbox:
    """The seeded objects of one sandbox app, plus the rules POSTed to it (kept in memory)."""

    def __init__(self, state: Any) -> None:
        self.config = state.config
        datasets = getattr(getattr(state, "world", None), "datasets", None) or []
        dataset_key = datasets[0].key if datasets else "00000000-0000-4000-8000-000000000000"
        self.projects, self.rulesets, self.rules, self.comments = seed_annotations(dataset_key)
        self._lock = threading.Lock()

    # ---- helpers
    def _user(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        ok = hmac.compare_digest(user.encode(), self.config.username.encode()) and hmac.compare_digest(
            password.encode(), self.config.password.encode()
        )
        return user if ok else None

    # ---- handlers
    def list_rules(self, request: Request) -> Response:
        try:
            page = _page(request)
            params = request.query_params
            with self._lock:
                rows = [
                    r for r in self.rules if r["deleted"] is None and _rule_matches(r, params, self.comments)
                ]
        except _BadRequest as exc:
            return _json({"message": str(exc)}, 400)
        return _json(_newest_first(rows)[page])

    def get_rule(self, request: Request) -> Response:
        return self._get_one(self.rules, request)

    def rule_comments(self, request: Request) -> Response:
        try:
            rule_id = int(request.path_params["id"])
            page = _page(request)
        except (ValueError, _BadRequest) as exc:
            return _json({"message": str(exc)}, 400)
        rows = [c for c in self.comments if c["ruleId"] == rule_id and c["deleted"] is None]
        return _json(_newest_first(rows)[page])

    def list_rulesets(self, request: Request) -> Response:
        try:
            page = _page(request)
            project = request.query_params.get("projectId")
            rows = [r for r in self.rulesets if r["deleted"] is None]
            if project is not None:
                rows = [r for r in rows if r["projectId"] == _int(project, "projectId")]
        except _BadRequest as exc:
            return _json({"message": str(exc)}, 400)
        return _json(_newest_first(rows)[page])

    def get_ruleset(self, request: Request) -> Response:
        return self._get_one(self.rulesets, request)

    def list_projects(self, request: Request) -> Response:
        try:
            page = _page(request)
        except _BadRequest as exc:
            return _json({"message": str(exc)}, 400)
        member = request.query_params.get("member")
        rows = [
            p for p in self.projects if p["deleted"] is None and (member is None or member in p["members"])
        ]
        return _json(_newest_first(rows)[page])

    def get_project(self, request: Request) -> Response:
        return self._get_one(self.projects, request)

    def _get_one(self, rows: list[dict], request: Request) -> Response:
        try:
            obj_id = int(request.path_params["id"])
        except ValueError:
            return _json({"message": f"invalid id {request.path_params['id']!r}"}, 400)
        with self._lock:
            found = next((r for r in rows if r["id"] == obj_id), None)
        if found is None:
            return Response(b"", status_code=200, media_type="application/json")  # GBIF: a null body
        return _json(found)

    async def create_rule(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return PlainTextResponse(
                "Failed to authenticate user",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="GBIF"'},
            )
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return _json({"message": "the body is not JSON"}, 400)
        if not isinstance(body, dict):
            return _json({"message": "expected a rule object"}, 400)
        problem = _check_new_rule(body)
        if problem:
            return _json({"message": problem}, 400)
        with self._lock:
            rule = {
                "id": max((r["id"] for r in self.rules), default=0) + 1,
                "taxonKey": body.get("taxonKey"),
                "datasetKey": body.get("datasetKey"),
                "geometry": body["geometry"],
                "annotation": str(body["annotation"]).upper(),
                "basisOfRecord": body.get("basisOfRecord"),
                "basisOfRecordNegated": bool(body.get("basisOfRecordNegated") or False),
                "yearRange": body.get("yearRange"),
                "rulesetId": body.get("rulesetId"),
                "projectId": body.get("projectId"),
                "supportedBy": [],
                "contestedBy": [],
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                "createdBy": user,
                "deleted": None,
                "deletedBy": None,
            }
            self.rules.append(rule)
        return _json(rule)


class _BadRequest(ValueError):
    pass


def _json(obj: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(obj, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
    )


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _BadRequest(f"Invalid {name}: {value}") from None


def _page(request: Request) -> slice:
    """GBIF's paging: limit 100 and offset 0 by default, no maximum."""
    limit = _int(request.query_params.get("limit") or "100", "limit")
    offset = _int(request.query_params.get("offset") or "0", "offset")
    if limit < 0 or offset < 0:
        raise _BadRequest("limit and offset cannot be negative")
    return slice(offset, offset + limit)


def _newest_first(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["created"], r["id"]), reverse=True)


def _rule_matches(rule: dict, params: Any, comments: list[dict]) -> bool:
    """GBIF's RuleMapper.xml semantics (reference §3.1), including the string-equality geometry filter."""

    def eq(name: str, value: Any, cast: Any = str) -> bool:
        raw = params.get(name)
        if raw is None:
            return True
        if raw == "null":
            return value is None
        return value == cast(raw)

    if not (
        eq("taxonKey", rule["taxonKey"], lambda v: _int(v, "taxonKey"))
        and eq("datasetKey", rule["datasetKey"])
        and eq("rulesetId", rule["rulesetId"], lambda v: _int(v, "rulesetId"))
        and eq("projectId", rule["projectId"], lambda v: _int(v, "projectId"))
        and eq("yearRange", rule["yearRange"])
        and eq("createdBy", rule["createdBy"])
        and eq("geometry", rule["geometry"])
    ):
        return False
    if (neg := params.get("basisOfRecordNegated")) is not None and rule["basisOfRecordNegated"] != (
        neg.lower() == "true"
    ):
        return False
    bor = [v.strip() for raw in params.getlist("basisOfRecord") for v in raw.split(",") if v.strip()]
    if bor:
        if "null" in bor:
            if rule["basisOfRecord"] is not None:
                return False
        elif not set(bor) & set(rule["basisOfRecord"] or []):
            return False
    if (who := params.get("supportedBy")) is not None and who not in rule["supportedBy"]:
        return False
    if (who := params.get("contestedBy")) is not None and who not in rule["contestedBy"]:
        return False
    text = params.get("comment")
    return text is None or any(
        c["ruleId"] == rule["id"] and c["deleted"] is None and text in c["comment"] for c in comments
    )


def _check_new_rule(body: dict) -> str | None:
    """GBIF dev's checks on POST: the vocabulary and the geometry limits."""
    label = body.get("annotation")
    if not isinstance(label, str) or label.upper() not in ANNOTATION_LABELS:
        return f"Annotation {label!r} is not in the vocabulary: {', '.join(ANNOTATION_LABELS)}"
    geometry = body.get("geometry")
    if not isinstance(geometry, str) or not geometry.strip():
        return "geometry is required"
    if len(geometry) > MAX_WKT_CHARS:
        return f"Geometry WKT is too long ({len(geometry)} characters, maximum {MAX_WKT_CHARS})"
    vertices = len(_VERTEX_RE.findall(geometry))
    if vertices > MAX_GEOMETRY_VERTICES:
        return f"Polygon has too many vertices ({vertices}, maximum {MAX_GEOMETRY_VERTICES})"
    return None


def annotation_routes(state: Any) -> list[Route]:
    """The annotation endpoints for one sandbox app (``state`` needs ``.config``; ``.world`` is optional)."""
    svc = AnnotationSandbox(state)
    p = ANNOTATION_PREFIX
    return [
        Route(f"{p}/rule", svc.list_rules, methods=["GET"]),
        Route(f"{p}/rule", svc.create_rule, methods=["POST"]),
        Route(f"{p}/rule/{{id}}", svc.get_rule, methods=["GET"]),
        Route(f"{p}/rule/{{id}}/comment", svc.rule_comments, methods=["GET"]),
        Route(f"{p}/ruleset", svc.list_rulesets, methods=["GET"]),
        Route(f"{p}/ruleset/{{id}}", svc.get_ruleset, methods=["GET"]),
        Route(f"{p}/project", svc.list_projects, methods=["GET"]),
        Route(f"{p}/project/{{id}}", svc.get_project, methods=["GET"]),
    ]
