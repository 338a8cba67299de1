"""Pseudonyms: `subject_ref = "sub_" + lowercase unpadded base32(HMAC-SHA256(pseudonym key, user_id))`.

The expected values are computed here with the stdlib (hmac + base64), never with our own code,
and the checked-in vector file is re-derived the same way so it cannot drift from the spec.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.keys import KeyStore
from storage.pseudonyms import SUBJECT_REF_PATTERN, Pseudonymizer

VECTORS_FILE = Path(__file__).parents[2] / "data" / "pseudonym_vectors.json"
REF = re.compile(r"^sub_[a-z2-7]{52}$")


def reference_ref(key: bytes, user_id: str) -> str:
    """The spec's formula, written out independently of storage.pseudonyms."""
    digest = hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).digest()
    return "sub_" + base64.b32encode(digest).decode("ascii").lower().rstrip("=")


def load_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))["vectors"]
    return vectors


VECTORS = load_vectors()


def test_vector_file_is_not_trivial() -> None:
    assert len(VECTORS) >= 10
    assert len({v["key_hex"] for v in VECTORS}) >= 3
    assert any(len(v["user_id"]) == 128 for v in VECTORS)
    assert any(not v["user_id"].isascii() for v in VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v['key_hex'][:6]}-{v['user_id'][:12]}")
def test_vector_matches_independent_hmac_and_our_pseudonymizer(vector: dict[str, Any]) -> None:
    key = bytes.fromhex(vector["key_hex"])
    assert reference_ref(key, vector["user_id"]) == vector["subject_ref"]  # the file is right
    assert Pseudonymizer(key).subject_ref(vector["user_id"]) == vector["subject_ref"]  # so are we


def test_pattern_constant_is_the_spec_pattern() -> None:
    # The spec's shape; `(?!\n)` because validators use `re.search`, whose `$` matches before a
    # final newline.
    assert SUBJECT_REF_PATTERN == r"^sub_[a-z2-7]{52}$(?!\n)"
    ref = "sub_" + "a" * 52
    assert re.search(SUBJECT_REF_PATTERN, ref)
    assert not re.search(SUBJECT_REF_PATTERN, ref + "\n")


@settings(max_examples=200, deadline=None)
@given(user_id=st.text(min_size=1, max_size=128), key=st.binary(min_size=32, max_size=64))
def test_format_and_stability_for_any_user_id(user_id: str, key: bytes) -> None:
    ref = Pseudonymizer(key).subject_ref(user_id)
    assert REF.fullmatch(ref)
    assert re.search(SUBJECT_REF_PATTERN, ref)  # as the routes and models match it
    assert Pseudonymizer(key).subject_ref(user_id) == ref  # a fresh instance agrees
    assert ref == reference_ref(key, user_id)


def test_different_keys_give_different_refs() -> None:
    users = [f"user-{n}" for n in range(50)]
    key_a, key_b = os.urandom(32), os.urandom(32)
    refs_a = {Pseudonymizer(key_a).subject_ref(u) for u in users}
    refs_b = {Pseudonymizer(key_b).subject_ref(u) for u in users}
    assert len(refs_a) == len(refs_b) == len(users)
    assert refs_a.isdisjoint(refs_b)


def test_near_identical_user_ids_do_not_collide() -> None:
    pseudonyms = Pseudonymizer(bytes(32))
    ids = ["alice", "Alice", "alice ", " alice", "alice\x00", "ａlice"]
    assert len({pseudonyms.subject_ref(u) for u in ids}) == len(ids)


@pytest.mark.parametrize("size", [0, 16, 31])
def test_short_keys_are_refused(size: int) -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Pseudonymizer(b"k" * size)


@pytest.mark.parametrize(
    "value",
    [
        "sub_" + "a" * 51,
        "sub_" + "a" * 53,
        "sub_" + "A" * 52,
        "sub_" + "a" * 48 + "====",
        "sub_" + "a" * 51 + "1",
        "sub_" + "a" * 51 + "8",
        "SUB_" + "a" * 52,
        "usr_" + "a" * 52,
        "sub_" + "a" * 52 + "\n",
        "",
    ],
)
def test_the_pattern_refuses_near_misses(value: str) -> None:
    assert not re.search(SUBJECT_REF_PATTERN, value)


def test_refs_are_stable_across_key_store_reloads(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    created = KeyStore.create(path)
    before = Pseudonymizer(created.pseudonym_key).subject_ref("wallet-user-42")
    created.add_kek()  # rotating encryption keys must not move pseudonyms
    reloaded = KeyStore.load(path)
    assert Pseudonymizer(reloaded.pseudonym_key).subject_ref("wallet-user-42") == before
    assert before == reference_ref(reloaded.pseudonym_key, "wallet-user-42")


def test_pseudonym_key_is_separate_from_every_encryption_key(tmp_path: Path) -> None:
    keys = KeyStore.create(tmp_path / "keys.json")
    raw = json.loads((tmp_path / "keys.json").read_text())
    others = {raw["database_key"], raw["directory_key"], raw["signing_key"], *raw["kek"].values()}
    assert raw["pseudonym_key"] not in others
    assert len(keys.pseudonym_key) >= 32
