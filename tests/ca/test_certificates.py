"""Serials: 20 positive octets that no one can guess from the serials of other certificates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import pairwise

import pytest

from est_ca.ca.certificates import SERIAL_BYTES, Serial
from est_ca.errors import BadRequest
from est_ca.service import Service
from tests.helpers import KeyPool, csr_der, make_csr, new_order, new_user

# All but the first octet, which is 0x01..0x7f to keep the serial positive and 20 octets long.
_FREE_BITS = 8 * (SERIAL_BYTES - 1)
# Below this many serials, being in increasing or decreasing order is likely by chance (2/n!).
_ORDER_SAYS_SOMETHING_FROM = 20


def predictability(serials: Sequence[int]) -> list[str]:
    """Every way these serials betray a pattern; empty for independent random serials.

    The bounds are far from what chance does: with 20 random octets two of 1,000 serials share
    their first 8 octets with a probability below 1e-13, and the share of set bits stays within
    0.3..0.7 by more than eight standard deviations even for three serials."""
    findings = []
    if len(set(serials)) != len(serials):
        findings.append("a serial repeats")
    findings += [
        f"{serial:x} is not 20 positive octets with a first octet of 0x01..0x7f"
        for serial in serials
        if not 1 << _FREE_BITS <= serial < 1 << (_FREE_BITS + 7)
    ]
    ordered = sorted(set(serials))
    findings += [f"{a:x} and {b:x} are adjacent" for a, b in pairwise(ordered) if b == a + 1]
    prefixes = Counter(serial.to_bytes(SERIAL_BYTES, "big")[:8] for serial in serials)
    findings += [f"{n} serials start with {p.hex()}" for p, n in prefixes.items() if n > 1]
    if len(serials) >= _ORDER_SAYS_SOMETHING_FROM and list(serials) in (ordered, ordered[::-1]):
        findings.append("the serials come in increasing or decreasing order")
    mask = (1 << _FREE_BITS) - 1
    ones = sum((serial & mask).bit_count() for serial in serials) / (_FREE_BITS * len(serials))
    if not 0.3 <= ones <= 0.7:
        findings.append(f"{ones:.0%} of the free bits are set")
    return findings


def test_serials_are_20_positive_octets_none_guessable_from_another() -> None:
    serials = [Serial.random().value for _ in range(1000)]
    assert predictability(serials) == []


async def test_issued_certificates_carry_such_serials(service: Service, keys: KeyPool) -> None:
    assert service.authority is not None
    serials = []
    for index in range(3):
        placed = await new_order(service, await new_user(service))
        certificate = await service.authority.enroll_with_order(
            placed.order.reference,
            placed.one_time_code,
            csr_der(make_csr(keys.rsa(index).key)),
            source="test",
        )
        serials.append(certificate.serial_number)
    assert predictability(serials) == []


def test_a_counter_is_predictable() -> None:
    """The check itself: what a counter or a constant prefix makes is found."""
    start = Serial.random().value
    assert "adjacent" in " ".join(predictability([start, start + 1, start + 7]))
    assert "start with" in " ".join(predictability([start, start + (1 << 64)]))
    assert "order" in " ".join(predictability([start + (i << 100) for i in range(20)]))
    assert "free bits" in " ".join(predictability([(1 << 152) + i * 99991 for i in range(3)]))
    assert "not 20 positive octets" in " ".join(predictability([1 << 151, 1 << 159]))


@pytest.mark.parametrize("text", ["zz", "", "0x", "12 34", "-1"])
def test_a_serial_that_is_not_hexadecimal_is_a_bad_request(text: str) -> None:
    with pytest.raises(BadRequest, match="not a certificate serial") as refused:
        Serial.from_hex(text)
    assert refused.value.field == "serial"


@pytest.mark.parametrize("value", [0, -1, 1 << (8 * SERIAL_BYTES - 1)])
def test_a_serial_out_of_range_is_a_bad_request(value: int) -> None:
    with pytest.raises(BadRequest, match="positive and fit 20 octets") as refused:
        Serial(value)
    assert refused.value.field == "serial"


def test_a_serial_is_read_in_the_spellings_tools_print() -> None:
    serial = Serial.random()
    spelled = ":".join(serial.hex[i : i + 2] for i in range(0, len(serial.hex), 2))
    assert Serial.from_hex(spelled.upper()) == serial
    assert Serial.from_hex(f" 0x{serial.hex} ") == serial
