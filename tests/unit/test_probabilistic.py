"""The probabilistic scorer: prefix required, shared networks excluded, clear winner only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from recapture.domain.identity.probabilistic import (
    Candidate,
    ProbabilisticPolicy,
    best_guess,
    ip_prefix,
    signature,
)

NOW = datetime(2026, 10, 5, 12, tzinfo=UTC)
IPHONE_SAFARI = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Version/17.1 Mobile/15E148 Safari/604.1")
IPHONE_INSTAGRAM = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                    "Mobile/15E148 Instagram 309.0.0.0.1 (iPhone14,5; iOS 17_1; en_US)")
ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/126.0.0.0 Mobile Safari/537.36")
ON = ProbabilisticPolicy(enabled=True)


def candidate(person: int, ip: str, agent: str, hours_ago: float = 1) -> Candidate:
    return Candidate(person=person, signature=signature(ip, agent, "en-US", "390x844", None),
                     last_seen=NOW - timedelta(hours=hours_ago))


def test_prefixes_are_household_sized() -> None:
    """/24 for IPv4, /64 for IPv6; nonsense is no prefix."""
    assert ip_prefix("198.51.100.77") == "198.51.100.0/24"
    assert ip_prefix("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert ip_prefix("not-an-ip") is None


def test_same_phone_other_browser_is_guessed() -> None:
    """The in-app browser's buyer is the guess for Safari on the same phone and network."""
    anonymous = signature("198.51.100.7", IPHONE_SAFARI, "en-US", "390x844", None)
    guess = best_guess(anonymous, [candidate(1, "198.51.100.9", IPHONE_INSTAGRAM)], 2, NOW, ON)
    assert guess is not None
    assert guess.person == 1


def test_off_by_default_and_on_shared_networks_nothing_is_guessed() -> None:
    """Disabled policy, or more devices on the prefix than the shared-network limit: no guess."""
    anonymous = signature("198.51.100.7", IPHONE_SAFARI, "en-US", "390x844", None)
    known = [candidate(1, "198.51.100.9", IPHONE_INSTAGRAM)]
    assert best_guess(anonymous, known, 2, NOW, ProbabilisticPolicy()) is None
    assert best_guess(anonymous, known, ON.shared_network_devices + 1, NOW, ON) is None


def test_no_guess_without_a_clear_winner_or_on_another_device_model() -> None:
    """Two equally good candidates (family on one network) or a different phone model: no guess."""
    anonymous = signature("198.51.100.7", IPHONE_SAFARI, "en-US", "390x844", None)
    twins = [candidate(1, "198.51.100.9", IPHONE_INSTAGRAM), candidate(2, "198.51.100.10", IPHONE_INSTAGRAM)]
    assert best_guess(anonymous, twins, 3, NOW, ON) is None
    assert best_guess(anonymous, [candidate(3, "198.51.100.9", ANDROID)], 2, NOW, ON) is None


def test_stale_sightings_and_other_networks_do_not_count() -> None:
    """A sighting older than the lookback, or on another prefix, is no evidence."""
    anonymous = signature("198.51.100.7", IPHONE_SAFARI, "en-US", "390x844", None)
    assert best_guess(anonymous, [candidate(1, "198.51.100.9", IPHONE_INSTAGRAM, hours_ago=24 * 20)], 1, NOW, ON) is None
    assert best_guess(anonymous, [candidate(1, "203.0.113.9", IPHONE_INSTAGRAM)], 1, NOW, ON) is None
