"""JSON Schemas under least privilege (migrations/0008 and 0010), logged in as real roles:
a writer's writes are checked against the schemas it may read but not change; an admin
attaches them."""

from __future__ import annotations

import pytest
from test_access import ADMIN, WRITER, Login, login  # noqa: F401  # the fixture

from amira_data_access import ConfigDAL, PermissionDeniedError, SchemaViolationError


def test_writers_are_held_to_schemas_only_admins_change(login: Login) -> None:  # noqa: F811
    admin_dsn, writer_dsn = login(ADMIN), login(WRITER)
    with ConfigDAL(admin_dsn) as admin, ConfigDAL(writer_dsn) as writer:
        writer.set("svc.turns", 5, updated_by="svc")
        with pytest.raises(PermissionDeniedError):
            writer.set_schema("svc.turns", {"maximum": 10}, updated_by="svc")
        assert admin.set_schema("svc.turns", {"maximum": 10}, updated_by="ops").version == 1
        with pytest.raises(SchemaViolationError):
            writer.set("svc.turns", 50, updated_by="svc")
        writer.set("svc.turns", 9, updated_by="svc")
        assert writer.check_schemas() == []
        assert [s.target for s in writer.list_schemas()] == ["svc.turns"]
