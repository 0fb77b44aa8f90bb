"""Room names say whose room it is without doubt: tenants and agents whose names prefix each other, or that
try to smuggle a dot in, never parse as someone else's."""

from __future__ import annotations

import itertools

import pytest

from voxfleet.api import room_names

NAMES = ["acme", "acme-eu", "a", "a-b", "acme-eu-west"]


@pytest.mark.parametrize("tenant, agent", list(itertools.product(NAMES, NAMES)))
def test_prefixing_tenant_and_agent_names_parse_back_to_themselves(tenant, agent):
    for rest in ("sid.with.dots", "x"):
        parsed = room_names.parse_room(room_names.room_for_session(tenant, agent, rest))
        assert (parsed.tenant, parsed.agent, parsed.rest) == (tenant, agent, rest)


def test_all_rooms_of_prefixing_names_are_distinct():
    rooms = {room_names.room_for_session(t, a, "s") for t, a in itertools.product(NAMES, NAMES)}
    assert len(rooms) == len(NAMES) ** 2


@pytest.mark.parametrize("room", ["acme.eu.agent.s", "Acme.agent.s", "acme..s", ".acme.agent", "acme.agent.",
                                  "-acme.agent.s", "acme-.agent.s", f"{'a' * 64}.agent.s"])
def test_names_that_are_not_dns_labels_never_parse_as_a_tenant_and_agent_pair(room):
    parsed = room_names.parse_room(room)
    # 'acme.eu.agent.s' is tenant acme's agent 'eu' (a room of tenant acme) - never a tenant 'acme.eu'
    assert parsed is None or ("." not in parsed.tenant and "." not in parsed.agent and parsed.tenant == "acme")


def test_metadata_cannot_name_a_tenant_with_a_dot():
    assert room_names.parse_room("lobby", '{"voxfleet.dev/tenant": "acme.eu", "voxfleet.dev/agent": "x"}') is None
