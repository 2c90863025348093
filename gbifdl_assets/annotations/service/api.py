"""GBIF's annotation REST API on our store: paths, verbs, JSON names and list semantics as GBIF's.

Everything lives under ``/occurrence/experimental/annotation`` (GBIF's own prefix, reference
annotations.md §3; our ``gbif_api`` client and gbifrules append exactly that to an API root). Lists
are bare JSON arrays, newest first, ``limit`` (default 100) and ``offset``; a literal ``null`` filter
means IS NULL. Reads are open; writes need HTTP Basic credentials of a local account.

What we fix rather than copy (§8): ``limit`` is honoured up to 10,000 (larger asks get a 400 instead of
a silently short page, so "page until a short page" clients stay correct); ``geometry`` filters by
real intersection; unknown ids give 404; votes and comments need a rule that exists and is not
deleted; ruleset and project membership is checked on every write. The rules of who may do what are
the store's (:mod:`..permissions`), so the API, the CLI and the page agree.

Beside GBIF's endpoints, ``/image-flag`` is our extension (issue 18): flags on single images
(NOT_ORGANISM, WRONG_TAXON, DUPLICATE, POOR_QUALITY) with the rules' conventions (bare arrays, newest
first, soft delete, support/contest, 409 naming an identical live flag), the same login, CSRF rules
and login throttling as every write.

The endpoint table (:data:`ENDPOINTS`) drives both the Starlette routes and the OpenAPI document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gbifdl_assets.annotations.image_flags import FLAG_INPUT_FIELDS
from gbifdl_assets.annotations.model import RuleError
from gbifdl_assets.annotations.permissions import Actor, PermissionDenied
from gbifdl_assets.annotations.service.auth import Authenticator, AuthError, parse_basic
from gbifdl_assets.annotations.service.http import (
    INT64_MAX,
    ApiError,
    check_values,
    error_response,
    json_response,
    read_json_object,
)
from gbifdl_assets.annotations.service.proxies import TrustedProxies
from gbifdl_assets.annotations.store import (
    FLAG_FILTERS,
    MAX_LIMIT,
    RULE_FILTERS,
    AnnotationStore,
    Conflict,
    DuplicateFlag,
    DuplicateRule,
    NotFound,
    StoreError,
)
from gbifdl_assets.annotations.vocabulary import DESCRIPTIONS, FLAG_DESCRIPTIONS, FLAGS, LABELS

__all__ = [
    "API_PREFIX",
    "ENDPOINTS",
    "FLAG_COLOURS",
    "LABEL_COLOURS",
    "AnnotationApi",
    "Endpoint",
    "Param",
    "flag_vocabulary",
    "vocabulary",
]

API_PREFIX = "/occurrence/experimental/annotation"
#: GBIF dev's default vocabulary colours (reference §5); the page colours rules with them
LABEL_COLOURS = {
    "NATIVE": "#22c55e",
    "INTRODUCED": "#3b82f6",
    "MANAGED": "#a855f7",
    "FORMER": "#f97316",
    "VAGRANT": "#06b6d4",
    "SUSPICIOUS": "#ef4444",
    "OTHER": "#6b7280",
}
#: the gallery's colours of the image flag terms
FLAG_COLOURS = {
    "NOT_ORGANISM": "#f97316",
    "WRONG_TAXON": "#ef4444",
    "DUPLICATE": "#3b82f6",
    "POOR_QUALITY": "#6b7280",
}
_INT_OR_NULL = ("taxonKey", "rulesetId", "projectId")
_INT, _STR, _BOOL, _LIST, _NULL = "integer", "string", "boolean", "array of strings", "null"
#: the JSON types each body field takes (the OpenAPI document's); server-managed fields are not listed
BODY_TYPES: dict[str, dict[str, tuple[str, ...]]] = {
    "RuleInput": {
        "taxonKey": (_INT, _NULL), "datasetKey": (_STR, _NULL), "geometry": (_STR,), "annotation": (_STR,),
        "basisOfRecord": (_LIST, _NULL), "basisOfRecordNegated": (_BOOL, _NULL), "yearRange": (_STR, _NULL),
        "rulesetId": (_INT, _NULL), "projectId": (_INT, _NULL),
    },
    "RulesetInput": {"name": (_STR,), "description": (_STR, _NULL), "members": (_LIST, _NULL),
                     "projectId": (_INT, _NULL)},
    "ProjectInput": {"name": (_STR,), "description": (_STR, _NULL), "members": (_LIST, _NULL)},
    "CommentInput": {"comment": (_STR,)},
    "ImageFlagInput": {"gbifID": (_INT,), "mediaIdentifier": (_STR,), "contentSha256": (_STR, _NULL),
                       "phash": (_STR, _NULL), "taxonKey": (_INT, _NULL), "flag": (_STR,),
                       "comment": (_STR, _NULL)},
}  # fmt: skip


def _json_type_ok(value: Any, kind: str) -> bool:
    if kind == _NULL:
        return value is None
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _STR:
        return isinstance(value, str)
    if kind == _BOOL:
        return isinstance(value, bool)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_body_types(body: dict[str, Any], schema: str) -> None:
    """Refuse a body whose fields have the wrong JSON type (the model would coerce "12" to 12)."""
    problems = []
    for name, kinds in BODY_TYPES[schema].items():
        if name in body and not any(_json_type_ok(body[name], k) for k in kinds):
            problems.append(f"{name} must be {' or '.join(kinds)}, not {json.dumps(body[name])[:60]}")
    if problems:
        raise ApiError(400, "; ".join(problems))


@dataclass(frozen=True)
class Param:
    """A query parameter (for parsing and for the OpenAPI document)."""

    name: str
    schema: dict[str, Any]
    description: str
    repeated: bool = False


@dataclass
class Call:
    """What a handler gets: the acting user (or an anonymous reader), path ids, query and body."""

    actor: Actor
    path: dict[str, int]
    query: Any  # starlette QueryParams
    body: dict[str, Any] | None


@dataclass
class Endpoint:
    method: str
    path: str  # Starlette path under API_PREFIX, with convertors (``/rule/{id:int}``)
    name: str  # the handler method of AnnotationApi; also the OpenAPI operationId
    summary: str
    tag: str
    response: str  # a schema name; "Rule[]" is an array of Rule
    auth: bool = False
    body: str | None = None
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def openapi_path(self) -> str:
        return re.sub(r"\{(\w+):\w+\}", r"{\1}", self.path)


# ---------------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------------
def _p(name: str, type_: str, description: str, **schema: Any) -> Param:
    return Param(name, {"type": type_, **schema}, description)


LIMIT = _p("limit", "integer", "page size (GBIF's default 100)", minimum=0, maximum=MAX_LIMIT, default=100)
OFFSET = _p("offset", "integer", "rows to skip", minimum=0, maximum=INT64_MAX, default=0)
PAGING = (LIMIT, OFFSET)
_INT_OR_NULL_SCHEMA = {"type": "string", "pattern": r"^(null|-?[0-9]{1,18})$"}
RULE_QUERY = (
    Param("taxonKey", _INT_OR_NULL_SCHEMA, "exact taxon key (no descendants), or null"),
    _p("datasetKey", "string", "dataset UUID, or null"),
    _p("contextKey", "string", "GBIF's Swagger name for datasetKey (used when datasetKey is not given)"),
    Param("rulesetId", _INT_OR_NULL_SCHEMA, "ruleset id, or null"),
    Param("projectId", _INT_OR_NULL_SCHEMA, "project id, or null"),
    Param(
        "basisOfRecord",
        {"type": "array", "items": {"type": "string"}},
        "any of these (repeated or comma-separated); null: rules without one",
        repeated=True,
    ),
    _p("basisOfRecordNegated", "boolean", "exact"),
    _p("yearRange", "string", "exact text ('1900,2000', '*,1950'), or null"),
    _p("annotation", "string", "label, any case"),
    _p("createdBy", "string", "creator's username"),
    _p("supportedBy", "string", "rules this user supports"),
    _p("contestedBy", "string", "rules this user contests"),
    _p("comment", "string", "rules with a comment containing this text (case-insensitive)"),
    _p("geometry", "string", "WKT: rules whose polygon intersects it (GBIF compares strings)"),
    *PAGING,
)
FLAG_QUERY = (
    _p("gbifID", "integer", "flags on this occurrence", minimum=1, maximum=INT64_MAX),
    _p("mediaIdentifier", "string", "flags on this media URL (exact)"),
    _p("contentSha256", "string", "flags on a photo with this content sha256"),
    _p("phash", "string", "flags on a photo with this perceptual hash (hex, exact)"),
    _p("taxonKey", "integer", "flags made under this taxon", minimum=1, maximum=INT64_MAX),
    _p("flag", "string", "the term, any case (NOT_ORGANISM, WRONG_TAXON, DUPLICATE, POOR_QUALITY)"),
    _p("createdBy", "string", "creator's username"),
    _p("supportedBy", "string", "flags this user supports"),
    _p("contestedBy", "string", "flags this user contests"),
    *PAGING,
)
METRICS_QUERY = (
    _p("username", "string", "rules created by this user"),
    Param("taxonKey", _INT_OR_NULL_SCHEMA, "taxon key"),
    _p("datasetKey", "string", "dataset UUID"),
    Param("rulesetId", _INT_OR_NULL_SCHEMA, "ruleset id"),
    Param("projectId", _INT_OR_NULL_SCHEMA, "project id"),
)

ENDPOINTS: tuple[Endpoint, ...] = (
    # rules (static paths before /rule/{id})
    Endpoint("GET", "/rule", "list_rules", "List rules, newest first", "rule", "Rule[]", query=RULE_QUERY,
             errors=(400,)),
    Endpoint("POST", "/rule", "create_rule", "Create a rule", "rule", "Rule", auth=True, body="RuleInput",
             errors=(400, 401, 403, 404, 409)),
    Endpoint("GET", "/rule/my", "my_rules", "Rules the caller created", "rule", "Rule[]", auth=True,
             query=RULE_QUERY, errors=(400, 401)),
    Endpoint("GET", "/rule/supported", "supported_rules", "Rules the caller supports", "rule", "Rule[]",
             auth=True, query=RULE_QUERY, errors=(400, 401)),
    Endpoint("GET", "/rule/contested", "contested_rules", "Rules the caller contests", "rule", "Rule[]",
             auth=True, query=RULE_QUERY, errors=(400, 401)),
    Endpoint("GET", "/rule/metrics", "rule_metrics", "Counts of rules and votes", "rule", "RuleMetrics",
             query=METRICS_QUERY, errors=(400,)),
    Endpoint("GET", "/rule/{id:int}", "get_rule", "A rule by id (deleted ones too)", "rule", "Rule",
             errors=(404,)),
    Endpoint("PUT", "/rule/{id:int}", "update_rule", "Replace a rule (its creator or an admin)", "rule",
             "Rule", auth=True, body="RuleInput", errors=(400, 401, 403, 404, 409)),
    Endpoint("DELETE", "/rule/{id:int}", "delete_rule", "Soft-delete a rule (its creator or an admin)",
             "rule", "Rule", auth=True, errors=(401, 403, 404)),
    Endpoint("POST", "/rule/{id:int}/support", "support_rule", "Support a rule (replaces a contest)",
             "vote", "Rule", auth=True, errors=(400, 401, 404)),
    Endpoint("POST", "/rule/{id:int}/contest", "contest_rule", "Contest a rule (replaces a support)",
             "vote", "Rule", auth=True, errors=(400, 401, 404)),
    Endpoint("POST", "/rule/{id:int}/removeSupport", "remove_support", "Withdraw a support", "vote",
             "Rule", auth=True, errors=(400, 401, 404)),
    Endpoint("POST", "/rule/{id:int}/removeContest", "remove_contest", "Withdraw a contest", "vote",
             "Rule", auth=True, errors=(400, 401, 404)),
    Endpoint("GET", "/rule/{id:int}/comment", "list_comments", "Comments on a rule, newest first",
             "comment", "Comment[]", query=PAGING, errors=(400, 404)),
    Endpoint("POST", "/rule/{id:int}/comment", "add_comment", "Comment on a rule", "comment", "Comment",
             auth=True, body="CommentInput", errors=(400, 401, 404)),
    Endpoint("DELETE", "/rule/{id:int}/comment/{commentId:int}", "delete_comment",
             "Soft-delete a comment (its creator or an admin)", "comment", "Comment", auth=True,
             errors=(401, 403, 404)),
    # rulesets
    Endpoint("GET", "/ruleset", "list_rulesets", "List rulesets, newest first", "ruleset", "Ruleset[]",
             query=(Param("projectId", _INT_OR_NULL_SCHEMA, "project id, or null"),
                    _p("member", "string", "rulesets with this member"), *PAGING), errors=(400,)),
    Endpoint("POST", "/ruleset", "create_ruleset", "Create a ruleset (inside a project: members only)",
             "ruleset", "Ruleset", auth=True, body="RulesetInput", errors=(400, 401, 403, 404)),
    Endpoint("GET", "/ruleset/{id:int}", "get_ruleset", "A ruleset by id (deleted ones too)", "ruleset",
             "Ruleset", errors=(404,)),
    Endpoint("PUT", "/ruleset/{id:int}", "update_ruleset", "Replace a ruleset (its members)", "ruleset",
             "Ruleset", auth=True, body="RulesetInput", errors=(400, 401, 403, 404)),
    Endpoint("DELETE", "/ruleset/{id:int}", "delete_ruleset",
             "Soft-delete a ruleset and its rules (its creator or an admin)", "ruleset", "Ruleset",
             auth=True, errors=(401, 403, 404)),
    # projects
    Endpoint("GET", "/project", "list_projects", "List projects, newest first", "project", "Project[]",
             query=(_p("member", "string", "projects with this member"),
                    _p("name", "string", "name contains (case-insensitive)"), *PAGING), errors=(400,)),
    Endpoint("POST", "/project", "create_project", "Create a project (the caller becomes a member)",
             "project", "Project", auth=True, body="ProjectInput", errors=(400, 401)),
    Endpoint("GET", "/project/{id:int}", "get_project", "A project by id (deleted ones too)", "project",
             "Project", errors=(404,)),
    Endpoint("PUT", "/project/{id:int}", "update_project", "Replace a project (its members)", "project",
             "Project", auth=True, body="ProjectInput", errors=(400, 401, 403, 404)),
    Endpoint("DELETE", "/project/{id:int}", "delete_project",
             "Soft-delete a project, its rulesets and rules (its creator or an admin)", "project",
             "Project", auth=True, errors=(401, 403, 404)),
    Endpoint("GET", "/project/{id:int}/vocabulary", "project_vocabulary",
             "The project's annotation vocabulary (GBIF's default terms)", "project", "VocabularyTerm[]",
             errors=(404,)),
    # image flags: our extension (GBIF has no image-level annotation), with the rules' conventions
    Endpoint("GET", "/image-flag", "list_flags", "List image flags, newest first", "image-flag",
             "ImageFlag[]", query=FLAG_QUERY, errors=(400,)),
    Endpoint("POST", "/image-flag", "create_flag", "Flag one image of an occurrence", "image-flag",
             "ImageFlag", auth=True, body="ImageFlagInput", errors=(400, 401, 409)),
    Endpoint("GET", "/image-flag/vocabulary", "flag_vocabulary", "The image flag terms", "image-flag",
             "FlagTerm[]"),
    Endpoint("GET", "/image-flag/{id:int}", "get_flag", "An image flag by id (deleted ones too)",
             "image-flag", "ImageFlag", errors=(404,)),
    Endpoint("DELETE", "/image-flag/{id:int}", "delete_flag",
             "Soft-delete an image flag (its creator or an admin)", "image-flag", "ImageFlag", auth=True,
             errors=(401, 403, 404)),
    Endpoint("POST", "/image-flag/{id:int}/support", "support_flag", "Support an image flag",
             "image-flag", "ImageFlag", auth=True, errors=(400, 401, 404)),
    Endpoint("POST", "/image-flag/{id:int}/contest", "contest_flag", "Contest an image flag",
             "image-flag", "ImageFlag", auth=True, errors=(400, 401, 404)),
    Endpoint("POST", "/image-flag/{id:int}/removeSupport", "remove_flag_support",
             "Withdraw a support of an image flag", "image-flag", "ImageFlag", auth=True,
             errors=(400, 401, 404)),
    Endpoint("POST", "/image-flag/{id:int}/removeContest", "remove_flag_contest",
             "Withdraw a contest of an image flag", "image-flag", "ImageFlag", auth=True,
             errors=(400, 401, 404)),
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# the API
# ---------------------------------------------------------------------------------------------------
class AnnotationApi:
    """Handlers for :data:`ENDPOINTS` on one store; :meth:`routes` gives the Starlette routes."""

    def __init__(
        self,
        store: AnnotationStore,
        authenticator: Authenticator | None = None,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self.store = store
        self.auth = authenticator or Authenticator(store)
        self.proxies = proxies or TrustedProxies()

    # ------------------------------------------------------------------ plumbing
    def routes(self, prefix: str = API_PREFIX) -> list[Route]:
        # one route per path, dispatching on the method, so a 405 lists every allowed method
        by_path: dict[str, dict[str, Callable[[Request], Any]]] = {}
        for ep in ENDPOINTS:
            by_path.setdefault(ep.path, {})[ep.method] = self._wrap(ep)
        out = []
        for path, handlers in by_path.items():

            async def dispatch(request: Request, handlers: dict = handlers) -> Response:
                # Starlette adds HEAD wherever there is GET: answer it as GET (the body is dropped)
                return await handlers.get(request.method, handlers.get("GET"))(request)  # type: ignore[misc]

            name = "_".join(h.__name__ for h in handlers.values())
            out.append(Route(prefix + path, dispatch, methods=list(handlers), name=prefix + ":" + name))
        return out

    def login_route(self, path: str = "/user/login") -> Route:
        """GBIF's ``/v1/user/login``: check credentials, return the user (the page's log-in)."""

        async def login(request: Request) -> Response:
            try:
                actor = await self.authenticate(request, required=True)
            except ApiError as exc:
                return error_response(exc)
            roles = ["USER", "REGISTRY_ADMIN"] if actor.admin else ["USER"]
            return json_response({"userName": actor.username, "roles": roles})

        return Route(path, login, methods=["GET", "POST"], name="login")

    async def authenticate(self, request: Request, *, required: bool) -> Actor:
        """The caller as an :class:`Actor`; ApiError 401/429 for bad (or missing, if required) login."""
        header = request.headers.get("authorization")
        try:
            creds = parse_basic(header)
            if creds is None:
                if required:
                    raise AuthError("this needs a login: send HTTP Basic credentials of a local account")
                return Actor(None)
            check_values(creds.username, "username")
            check_values(creds.password, "password")
            return await self.auth.check(creds, self.proxies.client(request.scope))
        except AuthError as exc:
            # no WWW-Authenticate challenge: a browser would show its own dialog and then cache the
            # credentials for every request to this origin, from any site (the page has its own login;
            # scripts send Basic credentials up front)
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
            raise ApiError(exc.status, str(exc), headers) from None

    def _wrap(self, ep: Endpoint) -> Callable[[Request], Any]:
        handler = getattr(self, ep.name)
        allowed = {p.name for p in ep.query}

        async def endpoint(request: Request) -> Response:
            try:
                for key, value in request.query_params.multi_items():
                    check_values(key, "a query parameter name")
                    check_values(value, f"query parameter {key}")
                # a misspelt filter (taxonkey=) must not silently return every rule
                unknown = sorted(set(request.query_params) - allowed)
                if unknown:
                    raise ApiError(
                        400,
                        f"unknown query parameter(s) {', '.join(unknown)} for {ep.method} {API_PREFIX}"
                        f"{ep.openapi_path}; use {', '.join(sorted(allowed)) or 'none'}",
                    )
                path = {}
                for key, value in request.path_params.items():
                    if not 0 <= int(value) <= INT64_MAX:
                        raise ApiError(404, f"no object with {key} {value}")
                    path[key] = int(value)
                actor = await self.authenticate(request, required=ep.auth)
                body = None
                if ep.body:
                    body = await read_json_object(request, ep.body.removesuffix("Input").lower())
                    check_body_types(body, ep.body)
                result = await run_in_threadpool(
                    self._call, handler, Call(actor, path, request.query_params, body)
                )
            except ApiError as exc:
                return error_response(exc)
            return json_response(result)

        endpoint.__name__ = ep.name
        return endpoint

    def _call(self, handler: Callable[[Call], Any], call: Call) -> Any:
        """Run a handler, turning the store's errors into answers (one message, the right status)."""
        try:
            return handler(call)
        except ApiError:
            raise
        except PermissionDenied as exc:
            raise ApiError(403, str(exc)) from None
        except NotFound as exc:
            raise ApiError(404, str(exc)) from None
        except (DuplicateRule, DuplicateFlag) as exc:
            raise ApiError(409, str(exc), extra={"id": exc.existing_id}) from None
        except (RuleError, Conflict, StoreError, ValueError) as exc:
            raise ApiError(400, str(exc)) from None

    def _exists(self, kind: str, obj_id: int) -> None:
        """404 for an unknown path id; later NotFounds (ids named in a body) become 400."""
        getter = {"rule": self.store.get_rule, "ruleset": self.store.get_ruleset,
                  "project": self.store.get_project}[kind]  # fmt: skip
        try:
            getter(obj_id)
        except NotFound as exc:
            raise ApiError(404, str(exc)) from None

    def _body_refs(self, fn: Callable[[], Any]) -> Any:
        """Run a write whose body may name other objects: an unknown one is bad input (400)."""
        try:
            return fn()
        except NotFound as exc:
            raise ApiError(400, str(exc)) from None

    # ------------------------------------------------------------------ query parsing
    @staticmethod
    def _int(call: Call, name: str, default: int, maximum: int | None = None) -> int:
        raw = call.query.get(name)
        if raw is None or raw == "":
            return default
        if not re.fullmatch(r"\s*[0-9]{1,19}\s*", raw) or int(raw) > INT64_MAX:
            raise ApiError(400, f"{name}={raw!r} is not a whole number ≥ 0")
        value = int(raw)
        if maximum is not None and value > maximum:
            raise ApiError(400, f"{name}={value} is larger than {maximum:,}: page with offset instead")
        return value

    def _paging(self, call: Call) -> dict[str, int]:
        return {"limit": self._int(call, "limit", 100, MAX_LIMIT), "offset": self._int(call, "offset", 0)}

    @staticmethod
    def _int_or_null(raw: str, name: str) -> str:
        text = raw.strip()
        if text.lower() == "null":
            return "null"
        if not re.fullmatch(r"-?[0-9]{1,19}", text) or not -INT64_MAX <= int(text) <= INT64_MAX:
            raise ApiError(400, f"{name}={raw!r} is not a whole number (or the literal null)")
        return text

    def _rule_filters(self, call: Call) -> dict[str, Any]:
        q = call.query
        filters: dict[str, Any] = {}
        for name in RULE_FILTERS:
            if name == "basisOfRecord":
                values = q.getlist(name)
                if values:
                    filters[name] = values
                continue
            value = q.get(name)
            if value is None and name == "datasetKey":
                value = q.get("contextKey")  # GBIF's Swagger name for the same filter (bug §8.2)
            if value is None:
                continue
            if name in _INT_OR_NULL:
                value = self._int_or_null(value, name)
            elif name == "basisOfRecordNegated":
                if value.strip().lower() not in ("true", "false"):
                    raise ApiError(400, f"basisOfRecordNegated={value!r}: use true or false")
                value = value.strip().lower() == "true"
            filters[name] = value
        return filters

    def _list_rules(self, call: Call, **forced: Any) -> list[dict]:
        filters = {**self._rule_filters(call), **forced}
        geometry = call.query.get("geometry")
        if geometry is not None and not geometry.strip():
            raise ApiError(400, "geometry is empty: give a WKT polygon to intersect")
        rules = self.store.list_rules(geometry=geometry, **filters, **self._paging(call))
        return [r.to_gbif() for r in rules]

    # ------------------------------------------------------------------ rules
    def list_rules(self, call: Call) -> Any:
        return self._list_rules(call)

    def my_rules(self, call: Call) -> Any:
        return self._list_rules(call, createdBy=call.actor.username)

    def supported_rules(self, call: Call) -> Any:
        return self._list_rules(call, supportedBy=call.actor.username)

    def contested_rules(self, call: Call) -> Any:
        return self._list_rules(call, contestedBy=call.actor.username)

    def rule_metrics(self, call: Call) -> Any:
        q = call.query
        args: dict[str, Any] = {"username": q.get("username"), "datasetKey": q.get("datasetKey")}
        for name in ("taxonKey", "rulesetId", "projectId"):
            if (value := q.get(name)) is not None:
                args[name] = self._int_or_null(value, name)
        return self.store.rule_metrics(**args)

    def get_rule(self, call: Call) -> Any:
        return self.store.get_rule(call.path["id"]).to_gbif()

    def create_rule(self, call: Call) -> Any:
        return self._body_refs(lambda: self.store.create_rule(call.body or {}, user=call.actor)).to_gbif()

    def update_rule(self, call: Call) -> Any:
        rule_id = call.path["id"]
        self._exists("rule", rule_id)
        return self._body_refs(
            lambda: self.store.update_rule(rule_id, call.body or {}, user=call.actor)
        ).to_gbif()

    def delete_rule(self, call: Call) -> Any:
        return self.store.delete_rule(call.path["id"], user=call.actor).to_gbif()

    def _vote(self, call: Call, vote: str) -> Any:
        return self.store.vote(call.path["id"], vote, user=call.actor).to_gbif()

    def support_rule(self, call: Call) -> Any:
        return self._vote(call, "support")

    def contest_rule(self, call: Call) -> Any:
        return self._vote(call, "contest")

    def remove_support(self, call: Call) -> Any:
        return self._vote(call, "removeSupport")

    def remove_contest(self, call: Call) -> Any:
        return self._vote(call, "removeContest")

    # ------------------------------------------------------------------ comments
    def list_comments(self, call: Call) -> Any:
        return [c.to_gbif() for c in self.store.list_comments(call.path["id"], **self._paging(call))]

    def add_comment(self, call: Call) -> Any:
        body = dict(call.body or {})
        # server-managed fields are ignored, as on rules
        text = {"comment": body.get("comment")}
        return self.store.add_comment(call.path["id"], text, user=call.actor).to_gbif()

    def delete_comment(self, call: Call) -> Any:
        return self.store.delete_comment(call.path["id"], call.path["commentId"], user=call.actor).to_gbif()

    # ------------------------------------------------------------------ rulesets
    def list_rulesets(self, call: Call) -> Any:
        project = call.query.get("projectId")
        if project is not None:
            project = self._int_or_null(project, "projectId")
        rows = self.store.list_rulesets(
            projectId=project, member=call.query.get("member"), **self._paging(call)
        )
        return [r.to_gbif() for r in rows]

    def create_ruleset(self, call: Call) -> Any:
        return self._body_refs(lambda: self.store.create_ruleset(call.body or {}, user=call.actor)).to_gbif()

    def get_ruleset(self, call: Call) -> Any:
        return self.store.get_ruleset(call.path["id"]).to_gbif()

    def update_ruleset(self, call: Call) -> Any:
        ruleset_id = call.path["id"]
        self._exists("ruleset", ruleset_id)
        return self._body_refs(
            lambda: self.store.update_ruleset(ruleset_id, call.body or {}, user=call.actor)
        ).to_gbif()

    def delete_ruleset(self, call: Call) -> Any:
        return self.store.delete_ruleset(call.path["id"], user=call.actor).to_gbif()

    # ------------------------------------------------------------------ projects
    def list_projects(self, call: Call) -> Any:
        rows = self.store.list_projects(
            member=call.query.get("member"), name=call.query.get("name"), **self._paging(call)
        )
        return [p.to_gbif() for p in rows]

    def create_project(self, call: Call) -> Any:
        return self.store.create_project(call.body or {}, user=call.actor).to_gbif()

    def get_project(self, call: Call) -> Any:
        return self.store.get_project(call.path["id"]).to_gbif()

    def update_project(self, call: Call) -> Any:
        project_id = call.path["id"]
        self._exists("project", project_id)
        return self.store.update_project(project_id, call.body or {}, user=call.actor).to_gbif()

    def delete_project(self, call: Call) -> Any:
        return self.store.delete_project(call.path["id"], user=call.actor).to_gbif()

    def project_vocabulary(self, call: Call) -> Any:
        self._exists("project", call.path["id"])
        return vocabulary()

    # ------------------------------------------------------------------ image flags
    def list_flags(self, call: Call) -> Any:
        q = call.query
        filters = {name: q.get(name) for name in FLAG_FILTERS if q.get(name) is not None}
        for name in ("gbifID", "taxonKey"):
            if name in filters:
                filters[name] = str(self._int(call, name, 0))
        return [f.to_json() for f in self.store.list_flags(**filters, **self._paging(call))]

    def create_flag(self, call: Call) -> Any:
        body = {k: v for k, v in (call.body or {}).items() if k in FLAG_INPUT_FIELDS}
        return self.store.create_flag(body, user=call.actor).to_json()

    def flag_vocabulary(self, call: Call) -> Any:
        return flag_vocabulary()

    def get_flag(self, call: Call) -> Any:
        return self.store.get_flag(call.path["id"]).to_json()

    def delete_flag(self, call: Call) -> Any:
        return self.store.delete_flag(call.path["id"], user=call.actor).to_json()

    def _vote_flag(self, call: Call, vote: str) -> Any:
        return self.store.vote_flag(call.path["id"], vote, user=call.actor).to_json()

    def support_flag(self, call: Call) -> Any:
        return self._vote_flag(call, "support")

    def contest_flag(self, call: Call) -> Any:
        return self._vote_flag(call, "contest")

    def remove_flag_support(self, call: Call) -> Any:
        return self._vote_flag(call, "removeSupport")

    def remove_flag_contest(self, call: Call) -> Any:
        return self._vote_flag(call, "removeContest")


def flag_vocabulary() -> list[dict[str, Any]]:
    """The image flag terms with their descriptions and the colours the gallery shows them in."""
    return [{"term": t, "description": FLAG_DESCRIPTIONS[t], "color": FLAG_COLOURS[t]} for t in FLAGS]


def vocabulary() -> list[dict[str, Any]]:
    """GBIF dev's default vocabulary (term, description, colour, locked)."""
    return [
        {"term": label, "description": DESCRIPTIONS[label], "color": LABEL_COLOURS[label],
         "locked": label == "SUSPICIOUS"}
        for label in LABELS
    ]  # fmt: skip
