"""Every user-facing error of the annotations package derives from GbifdlError and keeps its old base."""

from __future__ import annotations

import pytest

from gbifdl_assets.annotations.areas import AreaNotFoundError
from gbifdl_assets.annotations.compiled import RulesTableError
from gbifdl_assets.annotations.files import RuleFileError
from gbifdl_assets.annotations.model import RuleError
from gbifdl_assets.annotations.permissions import PermissionDenied
from gbifdl_assets.annotations.rule_text import RuleTextError
from gbifdl_assets.annotations.service.auth import AuthError
from gbifdl_assets.annotations.service.http import ApiError
from gbifdl_assets.annotations.store import Conflict, NotFound, StoreError
from gbifdl_assets.errors import GbifdlError


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (RuleError, ValueError),
        (RuleTextError, ValueError),
        (RuleFileError, ValueError),
        (AreaNotFoundError, ValueError),
        (RulesTableError, ValueError),
        (StoreError, Exception),
        (NotFound, LookupError),
        (Conflict, ValueError),
        (PermissionDenied, PermissionError),
        (AuthError, Exception),
        (ApiError, Exception),
    ],
)
def test_user_facing_errors_share_the_root_and_keep_their_builtin_base(error, builtin):
    assert issubclass(error, GbifdlError) and issubclass(error, builtin)


def test_store_errors_are_store_errors():
    assert issubclass(NotFound, StoreError) and issubclass(Conflict, StoreError)
