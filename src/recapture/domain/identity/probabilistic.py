"""Probabilistic re-identification of a returning device: a scored guess, used only where it is provably precise.

When a device arrives with no deterministic link (the cookie expired, the in-app browser handed over to the
phone's own browser), it is compared with the recent devices of identified persons seen on the same network
prefix. The guess only ever links an anonymous device to one person, with its confidence; it never merges two
identified persons, and shared networks (offices, carrier NAT, VPNs) are excluded outright.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from ua_parser import parse


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceSignature:
    ip_prefix: str | None
    browser: str | None
    browser_major: str | None
    os: str | None
    os_major: str | None
    device: str | None
    language: str | None
    screen: str | None
    timezone: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    person: int
    signature: DeviceSignature
    last_seen: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbabilisticPolicy:
    enabled: bool = False
    # A network prefix seen with more devices than this in a day is shared (office, carrier NAT, VPN).
    shared_network_devices: int = 4
    min_score: float = 0.8
    min_margin: float = 0.2
    # Older sightings count for less: half the weight after this long.
    half_life: timedelta = timedelta(days=3)
    lookback: timedelta = timedelta(days=14)


@dataclass(frozen=True, slots=True, kw_only=True)
class Guess:
    person: int
    confidence: float
    runner_up: float


# What each matching trait is worth; the network prefix is required (no prefix match, no candidate).
WEIGHTS: dict[str, float] = {
    "ip_prefix": 0.35, "os": 0.12, "os_major": 0.08, "device": 0.12, "language": 0.08, "screen": 0.1,
    "timezone": 0.05, "browser": 0.05, "browser_major": 0.05,
}


def ip_prefix(ip: str | None) -> str | None:
    """/24 for IPv4 and /64 for IPv6: the household or phone, not the exact address (which rotates)."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    bits = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


@lru_cache(maxsize=4096)
def _user_agent(user_agent: str) -> tuple[str | None, str | None, str | None, str | None, str | None]:
    result = parse(user_agent)
    agent, system, device = result.user_agent, result.os, result.device
    return (
        agent.family if agent else None, agent.major if agent else None,
        system.family if system else None, system.major if system else None,
        device.family if device else None,
    )


def is_tablet(user_agent: str | None) -> bool:
    """iPads, Android tablets (an Android browser that does not say Mobile) and anything calling itself a tablet."""
    if not user_agent:
        return False
    family = (_user_agent(user_agent)[4] or "").lower()
    android_tablet = "android" in user_agent.lower() and "mobile" not in user_agent.lower()
    return "ipad" in family or "tablet" in family or android_tablet or "tablet" in user_agent.lower()


def signature(
    ip: str | None, user_agent: str | None, language: str | None, screen: str | None, timezone: str | None
) -> DeviceSignature:
    browser, browser_major, system, system_major, device = _user_agent(user_agent) if user_agent else (None,) * 5
    return DeviceSignature(
        ip_prefix=ip_prefix(ip), browser=browser, browser_major=browser_major, os=system, os_major=system_major,
        device=device, language=(language or "").lower() or None, screen=screen, timezone=timezone,
    )


def score(anonymous: DeviceSignature, known: DeviceSignature, age: timedelta, policy: ProbabilisticPolicy) -> float:
    if anonymous.ip_prefix is None or anonymous.ip_prefix != known.ip_prefix:
        return 0.0
    matched = sum(
        weight for trait, weight in WEIGHTS.items()
        if getattr(anonymous, trait) is not None and getattr(anonymous, trait) == getattr(known, trait)
    )
    # Two different devices of the same model must not look identical: a device family mismatch is decisive.
    if anonymous.device and known.device and anonymous.device != known.device:
        return 0.0
    decay = math.pow(0.5, max(age.total_seconds(), 0.0) / policy.half_life.total_seconds())
    return matched * (0.5 + 0.5 * decay)


def best_guess(
    anonymous: DeviceSignature, candidates: Sequence[Candidate], devices_on_network_today: int,
    now: datetime, policy: ProbabilisticPolicy,
) -> Guess | None:
    """The one person this device most likely belongs to, or None when the evidence is not clear enough."""
    if not policy.enabled or devices_on_network_today > policy.shared_network_devices:
        return None
    by_person: dict[int, float] = {}
    for candidate in candidates:
        if now - candidate.last_seen > policy.lookback:
            continue
        value = score(anonymous, candidate.signature, now - candidate.last_seen, policy)
        by_person[candidate.person] = max(by_person.get(candidate.person, 0.0), value)
    ranked = sorted(by_person.items(), key=lambda item: item[1], reverse=True)
    if not ranked:
        return None
    person, best = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
    if best < policy.min_score or best - runner_up < policy.min_margin:
        return None
    return Guess(person=person, confidence=round(best, 4), runner_up=round(runner_up, 4))
