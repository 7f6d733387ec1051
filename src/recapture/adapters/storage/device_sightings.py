"""Device sightings for probabilistic re-identification: one row per device and network prefix."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import distinct, func, select
from sqlalchemy.dialects import postgresql, sqlite

from recapture.adapters.storage.schema import device_sightings, persons
from recapture.adapters.storage.transactions import Transactions
from recapture.domain.identity.probabilistic import Candidate, DeviceSignature

_TRAITS = ("browser", "browser_major", "os", "os_major", "device", "language", "screen", "timezone")


class SqlDeviceSightings:
    def __init__(self, transactions: Transactions) -> None:
        self._tx = transactions

    def record(self, shop: str, device_key: bytes, person: int, seen: DeviceSignature, at: datetime) -> None:
        if seen.ip_prefix is None:
            return
        values = {"person_id": person, "last_seen": at, **{t: getattr(seen, t) for t in _TRAITS}}
        with self._tx.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(device_sightings).values(
                shop=shop, device_key=device_key, ip_prefix=seen.ip_prefix, **values
            )
            conn.execute(statement.on_conflict_do_update(index_elements=["shop", "device_key", "ip_prefix"],
                                                         set_=values))

    def candidates(self, shop: str, prefix: str, since: datetime, exclude: int) -> list[Candidate]:
        """Devices of identified persons seen on this network prefix since `since`."""
        root = func.coalesce(persons.c.merged_into, persons.c.id)
        with self._tx.begin() as conn:
            rows = conn.execute(
                select(device_sightings, root.label("root"))
                .join(persons, persons.c.id == device_sightings.c.person_id)
                .where(device_sightings.c.shop == shop, device_sightings.c.ip_prefix == prefix,
                       device_sightings.c.last_seen >= since, persons.c.identified_at.is_not(None),
                       root != exclude)
            ).all()
        return [
            Candidate(
                person=row.root, last_seen=row.last_seen,
                signature=DeviceSignature(ip_prefix=row.ip_prefix, **{t: getattr(row, t) for t in _TRAITS}),
            )
            for row in rows
        ]

    def devices_on_network(self, shop: str, prefix: str, since: datetime) -> int:
        with self._tx.begin() as conn:
            return int(conn.execute(
                select(func.count(distinct(device_sightings.c.device_key))).where(
                    device_sightings.c.shop == shop, device_sightings.c.ip_prefix == prefix,
                    device_sightings.c.last_seen >= since,
                )
            ).scalar_one())
