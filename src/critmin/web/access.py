"""Who may read and change what: pure rules on (user, record), one place for every endpoint.

Roles are per organisation (docs/web.md):

==========  ======================================================================================
government  a participant's ministries: everything a partner may do, and may edit the shared
            (non-confidential) records of any organisation (curating the common register)
agency      finance agencies: create and edit their own records, run jobs (portfolio, plan, ...)
partner     like-minded partners: as agency
company     companies: submit and edit their own projects, needs and offers (confidential if they
            wish), run jobs
observer    read-only: reads what its organisation may read, changes nothing, runs nothing
==========  ======================================================================================

Reading: a record that is not confidential is readable by every signed-in user; a confidential one only
by its own organisation and the organisations it is shared with (applied as a SQL filter where records are
read: ``Workspace._visible``). A run is confidential when any record it
read was, and is then readable only by the organisation that ran it.
"""

from __future__ import annotations

from dataclasses import dataclass

WRITER_ROLES = frozenset({"government", "agency", "partner", "company"})


@dataclass(frozen=True)
class Actor:
    """The signed-in user as the rules see it."""

    user_id: int
    email: str
    org_id: int
    org_name: str
    role: str

    @property
    def can_write(self) -> bool:
        return self.role in WRITER_ROLES


def can_create(actor: Actor) -> bool:
    return actor.can_write


def can_edit(actor: Actor, owner_org: int, confidential: bool) -> bool:
    """Own organisation's records (not observers); a government user also edits shared records of others."""
    if not actor.can_write:
        return False
    return actor.org_id == owner_org or (actor.role == "government" and not confidential)


def can_share(actor: Actor, owner_org: int) -> bool:
    """Only the owning organisation decides who else sees its confidential record."""
    return actor.can_write and actor.org_id == owner_org


def can_run(actor: Actor) -> bool:
    return actor.can_write


def can_read_run(actor: Actor, run_org: int, confidential: bool) -> bool:
    return not confidential or actor.org_id == run_org


def can_cancel_run(actor: Actor, run_org: int) -> bool:
    return actor.can_write and actor.org_id == run_org
