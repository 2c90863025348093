"""Accounts: users with hashed passwords and the admin flag, login checks, and the acting user."""

from __future__ import annotations

import logging
import re

import sqlalchemy as sa

from gbifdl_assets.annotations.model import RuleError
from gbifdl_assets.annotations.permissions import Actor
from gbifdl_assets.annotations.store.database import Database
from gbifdl_assets.annotations.store.errors import Conflict, NotFound
from gbifdl_assets.annotations.store.passwords import check_password, dummy_hash, hash_password
from gbifdl_assets.annotations.store.records import UserInfo
from gbifdl_assets.annotations.store.schema import users_t, utc_now

__all__ = ["Accounts"]

# the package's logger, the one the store logged to before it was split into modules
log = logging.getLogger(__package__)

_USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")


class Accounts:
    """The users table: who may write, and who is an admin."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, username: str, password: str, *, admin: bool = False) -> UserInfo:
        if not isinstance(username, str) or not _USERNAME_RE.match(username):
            raise RuleError(
                f"username {username!r}: use 1-64 letters, digits and . _ @ + - (starting with a letter or digit)"
            )
        hashed = hash_password(password)
        created = utc_now()
        with self.db.begin() as conn:
            if conn.execute(sa.select(users_t.c.username).where(users_t.c.username == username)).first():
                raise Conflict(f"user {username} exists already; choose another name or set a new password")
            conn.execute(
                sa.insert(users_t).values(
                    username=username, password_hash=hashed, is_admin=bool(admin), created=created
                )
            )
        log.info("annotation store: added user %s%s", username, " (admin)" if admin else "")
        return UserInfo(username, bool(admin), created)

    def set_password(self, username: str, password: str) -> None:
        hashed = hash_password(password)
        with self.db.begin() as conn:
            n = conn.execute(
                sa.update(users_t).where(users_t.c.username == username).values(password_hash=hashed)
            ).rowcount
        if not n:
            raise NotFound(f"no user {username!r}; add it first")

    def verify(self, username: str, password: str) -> bool:
        """True when the password is right (constant-time; unknown users take as long)."""
        if not username or not isinstance(password, str):
            return False
        with self.db.connect() as conn:
            stored = conn.execute(
                sa.select(users_t.c.password_hash).where(users_t.c.username == username)
            ).scalar_one_or_none()
        if stored is None:
            check_password(password, dummy_hash())
            return False
        return check_password(password, stored)

    def get(self, username: str) -> UserInfo | None:
        with self.db.connect() as conn:
            row = conn.execute(
                sa.select(users_t.c.username, users_t.c.is_admin, users_t.c.created).where(
                    users_t.c.username == username
                )
            ).first()
        return UserInfo(row.username, bool(row.is_admin), row.created) if row else None

    def list(self) -> list[UserInfo]:
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.select(users_t.c.username, users_t.c.is_admin, users_t.c.created).order_by(
                    users_t.c.username
                )
            ).all()
        return [UserInfo(r.username, bool(r.is_admin), r.created) for r in rows]

    def actor(self, user: str | Actor | None) -> Actor:
        """The acting user, with admin rights looked up in the users table."""
        if isinstance(user, Actor):
            return user
        if not user:
            return Actor(None)
        with self.db.connect() as conn:
            admin = conn.execute(
                sa.select(users_t.c.is_admin).where(users_t.c.username == user)
            ).scalar_one_or_none()
        return Actor(str(user), bool(admin))
