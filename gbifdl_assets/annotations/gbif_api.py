"""GBIF's annotation API: pull its rules, rulesets and projects into the store, push ours to it.

Endpoints (reference annotations.md §3): ``{base}/occurrence/experimental/annotation/{rule,ruleset,
project}``; lists are bare JSON arrays, newest first, ``limit`` (default 100) and ``offset``, with no
total count, so we page until a page comes back shorter than ``limit`` (gbifrules reads only the first
100 rules: GBIF bug §8.8). ``GET /rule/{id}`` answers a missing id with an empty body (our own
service answers 404; :meth:`GbifAnnotationApi.get` takes both as "not found").

A pull mirrors GBIF into the store with source ``gbif`` and GBIF's ids as external ids: pulling again
updates what changed, adds what is new and (for a full pull) soft-deletes what GBIF no longer lists.
GBIF never validates geometry; like gbifrules we repair invalid polygons with ``make_valid`` (noted in
the rule's description) and GBIF's vertex limit does not apply to pulled rules (GBIF exempts its
admins). Rules that still cannot be used (unparseable WKT, a custom vocabulary term) are skipped and
listed in the summary, never silently.

A push POSTs local rules with HTTP Basic auth (GBIF's own login) and records the id GBIF gave each,
so pushing again sends only new rules. Credentials are sent only on the push and never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gbifdl_assets.annotations.model import Project, Rule, RuleError, Ruleset, parse_rule
from gbifdl_assets.gbif.errors import GbifHTTPError, GbifNotFound, GbifResponseError
from gbifdl_assets.gbif.http import GbifHttp, parse_json

if TYPE_CHECKING:
    from gbifdl_assets.annotations.store import AnnotationStore

log = logging.getLogger(__name__)

__all__ = [
    "ANNOTATION_PATH",
    "GBIF_SOURCE",
    "GbifAnnotationApi",
    "annotation_base_url",
    "pull_from_gbif",
    "push_to_gbif",
]

ANNOTATION_PATH = "/occurrence/experimental/annotation"
GBIF_SOURCE = "gbif"
PAGE_SIZE = 100
#: who soft-deletes mirrored rules that disappeared at GBIF
SYNC_USER = "gbif-sync"


def annotation_base_url(url: str) -> str:
    """Accept the API root (``https://api.gbif.org/v1``) or the annotation base itself."""
    url = url.rstrip("/")
    if url.endswith("/annotation"):
        return url
    return url + ANNOTATION_PATH


class GbifAnnotationApi:
    """A small client for GBIF's annotation API (paging, retries and errors from the GBIF client)."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        page_size: int = PAGE_SIZE,
        timeout: float | tuple[float, float] = (10, 60),
        max_retries: int = 5,
        user_agent: str | None = None,
        http: GbifHttp | None = None,
    ):
        self.base_url = annotation_base_url(url)
        self.username = username or None
        self._password = password or None
        self.page_size = max(1, int(page_size))
        self.http = http or GbifHttp(timeout=timeout, max_retries=max_retries, user_agent=user_agent)
        # POST is not idempotent: a retried POST after a lost answer could create the rule twice
        self._post_http = GbifHttp(
            timeout=timeout, max_retries=0, user_agent=self.http.user_agent, session=self.http.session
        )

    def __repr__(self) -> str:
        user = f", username={self.username!r}" if self.username else ""
        return f"GbifAnnotationApi({self.base_url!r}{user})"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> GbifAnnotationApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    # ------------------------------------------------------------------------------ reads
    def iter_list(self, kind: str, params: Mapping[str, Any] | None = None) -> Iterator[dict]:
        """Every object of a list endpoint (``rule``, ``ruleset``, ``project``), paging to the end."""
        offset = 0
        base = {k: v for k, v in (params or {}).items() if v is not None}
        previous_first: Any = None
        while True:
            page = self.http.get_json(self.url(kind), {**base, "limit": self.page_size, "offset": offset})
            if not isinstance(page, list):
                raise GbifResponseError(
                    self.url(kind), "expected a JSON array (GBIF's list shape)", str(page)[:200]
                )
            if page and offset and isinstance(page[0], dict) and page[0].get("id") == previous_first:
                # a server that ignores offset would make this loop forever
                raise GbifResponseError(self.url(kind), f"offset {offset} returned the first page again")
            yield from page
            if len(page) < self.page_size:
                return
            previous_first = page[0].get("id") if isinstance(page[0], dict) else None
            offset += len(page)

    def iter_rules(self, **filters: Any) -> Iterator[dict]:
        return self.iter_list("rule", filters)

    def iter_rulesets(self, **filters: Any) -> Iterator[dict]:
        return self.iter_list("ruleset", filters)

    def iter_projects(self, **filters: Any) -> Iterator[dict]:
        return self.iter_list("project", filters)

    def get(self, kind: str, obj_id: int) -> dict | None:
        """One object by id (deleted ones too), or None when the id is unknown.

        GBIF answers an unknown id with 200 and an empty body; our own service
        (``gbifdl annotations serve``) answers 404. Both mean "not found". A base URL that serves no
        annotation API at all also answers 404, so a 404 counts as "unknown id" only when the list
        endpoint of the same kind answers; otherwise the error names the URL to fix.
        """
        url = self.url(f"{kind}/{int(obj_id)}")
        try:
            response = self.http.request("GET", url)
        except GbifNotFound as exc:
            self._require_api(kind, exc)
            return None
        if not response.content.strip():
            return None
        data = parse_json(response, url)
        return data if isinstance(data, dict) else None

    def _require_api(self, kind: str, not_found: GbifNotFound) -> None:
        """Raise a clear error when ``base_url`` does not serve ``kind`` at all (a wrong URL)."""
        try:
            self.http.request("GET", self.url(kind), params={"limit": 1}).close()
        except GbifNotFound:
            raise GbifResponseError(
                self.url(kind),
                f"no annotation API here (404 for the {kind} list too); check the annotation API URL, "
                "e.g. https://api.gbif.org/v1 or the root of `gbifdl annotations serve`",
            ) from not_found

    # ------------------------------------------------------------------------------ writes
    def create_rule(self, rule: Rule | Mapping[str, Any]) -> dict:
        """POST a rule (Basic auth); returns GBIF's rule with its new id."""
        if not (self.username and self._password):
            raise RuleError(
                f"pushing rules to {self.base_url} needs GBIF credentials: set GBIF_USERNAME and GBIF_PASSWORD"
            )
        body = _post_body(rule)
        response = self._post_http.request(
            "POST", self.url("rule"), json=body, auth=(self.username, self._password)
        )
        data = parse_json(response, self.url("rule"))
        if not isinstance(data, dict) or data.get("id") is None:
            raise GbifResponseError(
                self.url("rule"), "expected the created rule with its id", str(data)[:200]
            )
        return data


def _post_body(rule: Rule | Mapping[str, Any]) -> dict[str, Any]:
    """The user fields GBIF takes on POST (server-managed ones it would ignore anyway)."""
    data = rule.model_dump(mode="json") if isinstance(rule, Rule) else dict(rule)
    fields = (
        "taxonKey",
        "datasetKey",
        "geometry",
        "annotation",
        "basisOfRecord",
        "basisOfRecordNegated",
        "yearRange",
    )
    body = {k: data.get(k) for k in fields}
    body["basisOfRecordNegated"] = bool(body.get("basisOfRecordNegated"))
    # local ruleset/project ids mean nothing at GBIF; the GBIF UI also creates rules without them
    body["rulesetId"] = None
    body["projectId"] = None
    return body


# ---------------------------------------------------------------------------------------------------
# pull
# ---------------------------------------------------------------------------------------------------
@dataclass
class PullSummary:
    url: str
    projects: dict[str, int] = field(default_factory=dict)
    rulesets: dict[str, int] = field(default_factory=dict)
    rules: dict[str, int] = field(default_factory=dict)
    deleted: int = 0
    repaired: int = 0
    pushed_from_here: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "projects": self.projects,
            "rulesets": self.rulesets,
            "rules": self.rules,
            "deleted": self.deleted,
            "repaired": self.repaired,
            "pushed_from_here": self.pushed_from_here,
            "skipped": len(self.skipped),
            "skipped_rules": [f"{rid}: {why}" for rid, why in self.skipped[:20]],
        }


def pull_from_gbif(
    store: AnnotationStore,
    url: str | GbifAnnotationApi,
    *,
    project_id: int | None = None,
    sync: bool = True,
) -> PullSummary:
    """Mirror GBIF's projects, rulesets and (all, or one GBIF project's) rules into ``store``."""
    from gbifdl_assets.annotations.store import MirroredRule

    api = url if isinstance(url, GbifAnnotationApi) else GbifAnnotationApi(url)
    origin = api.base_url
    summary = PullSummary(url=origin)

    project_map: dict[int, int] = {}
    counts: dict[str, int] = {}
    seen_projects = []
    for raw in api.iter_projects():
        try:
            project = Project.from_gbif(raw)
        except ValueError as exc:
            summary.skipped.append((f"project {raw.get('id')}", str(exc).splitlines()[0]))
            continue
        local, outcome = store.mirror.upsert_project(
            project, source=GBIF_SOURCE, origin=origin, external_id=str(raw["id"])
        )
        project_map[int(raw["id"])] = local
        seen_projects.append(str(raw["id"]))
        counts[outcome] = counts.get(outcome, 0) + 1
    summary.projects = counts

    ruleset_map: dict[int, int] = {}
    counts = {}
    seen_rulesets = []
    for raw in api.iter_rulesets():
        try:
            ruleset = Ruleset.from_gbif(raw)
        except ValueError as exc:
            summary.skipped.append((f"ruleset {raw.get('id')}", str(exc).splitlines()[0]))
            continue
        local, outcome = store.mirror.upsert_ruleset(
            ruleset,
            source=GBIF_SOURCE,
            origin=origin,
            external_id=str(raw["id"]),
            project_id=project_map.get(ruleset.projectId) if ruleset.projectId is not None else None,
        )
        ruleset_map[int(raw["id"])] = local
        seen_rulesets.append(str(raw["id"]))
        counts[outcome] = counts.get(outcome, 0) + 1
    summary.rulesets = counts

    items: list[Any] = []
    seen_rules: list[str] = []
    # rules this store pushed there are local rules already: mirroring them would count them twice
    pushed_here = set(store.mirror.remote_links(origin).values())
    filters = {"projectId": project_id} if project_id is not None else {}
    for raw in api.iter_rules(**filters):
        rid = raw.get("id")
        if rid is None:
            summary.skipped.append(("rule ?", "has no id"))
            continue
        seen_rules.append(str(rid))
        if str(rid) in pushed_here:
            summary.pushed_from_here += 1
            continue
        try:
            rule = parse_rule(raw, name=f"GBIF rule {rid}", repair=True, gbif=True)
        except RuleError as exc:
            summary.skipped.append((f"rule {rid}", str(exc)))
            log.warning("GBIF annotation pull: skipped %s", exc)
            continue
        description = None
        original = str(raw.get("geometry") or "").strip()
        if rule.geometry != original:
            summary.repaired += 1
            description = "[geometry repaired with make_valid: the polygon GBIF holds is invalid]"
        items.append(
            MirroredRule(
                rule=rule,
                external_id=str(rid),
                ruleset_id=ruleset_map.get(rule.rulesetId) if rule.rulesetId is not None else None,
                project_id=project_map.get(rule.projectId) if rule.projectId is not None else None,
                description=description,
                created_by=rule.createdBy,
                created=rule.created,
                votes=(rule.supportedBy, rule.contestedBy),
            )
        )
    summary.rules = store.mirror.upsert_rules(items, source=GBIF_SOURCE, origin=origin)

    if sync:
        if project_id is None:
            summary.deleted += store.mirror.retire(
                "rule", source=GBIF_SOURCE, origin=origin, keep=seen_rules, who=SYNC_USER
            )
            summary.deleted += store.mirror.retire(
                "ruleset", source=GBIF_SOURCE, origin=origin, keep=seen_rulesets, who=SYNC_USER
            )
            summary.deleted += store.mirror.retire(
                "project", source=GBIF_SOURCE, origin=origin, keep=seen_projects, who=SYNC_USER
            )
        elif project_id in project_map:
            summary.deleted += store.mirror.retire(
                "rule",
                source=GBIF_SOURCE,
                origin=origin,
                keep=seen_rules,
                who=SYNC_USER,
                where={"project_id": project_map[project_id]},
            )
    log.info(
        "GBIF annotation pull from %s: projects %s, rulesets %s, rules %s, %d deleted, %d skipped",
        origin,
        summary.projects,
        summary.rulesets,
        summary.rules,
        summary.deleted,
        len(summary.skipped),
    )
    return summary


# ---------------------------------------------------------------------------------------------------
# push
# ---------------------------------------------------------------------------------------------------
def push_to_gbif(
    store: AnnotationStore,
    api: GbifAnnotationApi,
    *,
    rulesets: Sequence[str | int] | None = None,
    created_by: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """POST the store's local rules (all, or of ``rulesets``; of ``created_by``) not pushed there yet."""
    wanted = None if rulesets is None else {store.find_ruleset(r, source="local").id for r in rulesets}
    done = store.mirror.remote_links(api.base_url)
    pushed, skipped, identical = [], 0, []
    for rule in store.iter_rules(source="local", createdBy=created_by):
        if wanted is not None and rule.rulesetId not in wanted:
            continue
        if rule.id in done:
            skipped += 1
            continue
        if dry_run:
            pushed.append({"local": rule.id, "remote": None})
            continue
        try:
            created = api.create_rule(rule)
        except GbifHTTPError as exc:
            if exc.status != 409:  # our service refuses a twin of a rule it has (GBIF itself stores both)
                raise
            identical.append({"local": rule.id, "message": exc.message})
            continue
        store.mirror.link_remote(rule.id, api.base_url, str(created["id"]))
        pushed.append({"local": rule.id, "remote": created["id"]})
    return {
        "url": api.base_url,
        "pushed": len(pushed),
        "already_pushed": skipped,
        "identical_there": len(identical),
        "rules": pushed[:50],
        "identical": identical[:50],
    }
