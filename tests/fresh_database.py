"""A fresh database on the test PostgreSQL with every migration applied, dropped afterwards: what the `database`
(per test) and `module_database` (per module) fixtures hand a gateway."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator


@contextlib.contextmanager
def fresh_database(admin_url: str, prefix: str) -> Iterator[str]:
    from voxfleet.store import migrations_runner
    from voxfleet.world import postgres as pg

    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    url = pg.create_database(admin_url, name)
    try:
        migrations_runner.upgrade(url)
        yield url
    finally:
        pg.drop_database(admin_url, name)
