"""Running as root only as long as it takes to bind port 53.

A DNS server parses packets from anyone; a bug in that path must not hand out root. So
``gslb serve`` refuses to run as root unless told which user to become (``--user``: the
sockets are bound as root, then supplementary groups, group and user are dropped, in that
order, before the first query is read) or told explicitly that root is intended
(``--allow-root``, e.g. in a throwaway container). Under systemd none of this applies: the unit
starts the server as an unprivileged dynamic user holding only CAP_NET_BIND_SERVICE.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass


class PrivilegeError(Exception):
    """Cannot become the requested user, or refusing to run as root."""


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


ROOT_REFUSAL = (
    "refusing to run as root: pass --user NAME to drop to that user after binding the "
    "sockets (e.g. --user nobody), or --allow-root if running as root is really intended"
)


def root_refusal(euid: int, user: str | None, allow_root: bool) -> str | None:
    """Why ``gslb serve`` must not start with these privileges and flags, or None if it may.

    ``euid`` is passed in (not read here) so the decision is testable without being root."""
    if euid == 0 and user is None and not allow_root:
        return ROOT_REFUSAL
    if euid != 0 and user is not None and user != current_user_name(euid):
        return f"--user {user} needs root (running as uid {euid}): nothing to drop from"
    return None


def current_user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def lookup(user: str) -> Identity:
    """The uid, primary gid and supplementary groups of ``user`` (a name or a numeric uid)."""
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, OverflowError):
        raise PrivilegeError(f"--user {user}: no such user") from None
    if entry.pw_uid == 0:
        raise PrivilegeError(f"--user {user} is root: use --allow-root to run as root")
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
    return Identity(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def drop_privileges(user: str) -> Identity:
    """Become ``user`` for good (real, effective and saved ids), after binding as root.

    Order matters: supplementary groups and the group can only be changed while still root.
    A no-op when already running as that user (no root to drop)."""
    identity = lookup(user)
    if os.geteuid() != 0:
        if os.geteuid() == identity.uid:
            return identity
        raise PrivilegeError(f"--user {user} needs root (running as uid {os.geteuid()})")
    os.setgroups(list(identity.groups))
    os.setgid(identity.gid)
    os.setuid(identity.uid)
    check_dropped(identity)
    return identity


def check_dropped(identity: Identity) -> None:
    """Fail loudly rather than serve with root still reachable."""
    if os.getresuid() != (identity.uid,) * 3 or os.getresgid() != (identity.gid,) * 3:
        raise PrivilegeError(f"could not become {identity.name}: ids still differ")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise PrivilegeError(f"could not become {identity.name}: root is still reachable")


def describe(identity: Identity) -> str:
    group = grp.getgrgid(identity.gid).gr_name if _has_group(identity.gid) else identity.gid
    return f"{identity.name} (uid {identity.uid}, gid {identity.gid} {group})"


def _has_group(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
    except KeyError:
        return False
    return True
