"""Rule 2's code is held to `RULE_REVISION`, which its `content_key` carries.

Dispatch skips the content scan for a push accepted with the `content_key` in force. A change
to the rule's code left under the same revision would let pushes queued before an upgrade go
out judged by the old code: so the rule's text is pinned here to its revision, and a change to
it fails this test until the revision is raised (which makes dispatch scan them again).
"""

import hashlib
from pathlib import Path

import policies
from policies import PolicySettings, content_key
from policies.minimization import RULE_REVISION

RULE_FILES = ("minimization.py", "pii.py", "settings.py")
PINNED = {7: "a8a6ee79531d7b4795129eb86b2b2d9ceed7c34a57b27b738b0b4ad5aa12e902"}


def test_the_rules_code_is_the_one_its_revision_names() -> None:
    root = Path(policies.__file__).parent
    digest = hashlib.sha256(b"".join((root / name).read_bytes() for name in RULE_FILES)).hexdigest()
    assert PINNED.get(RULE_REVISION) == digest, (
        "rule 2's code changed: raise RULE_REVISION in policies/minimization.py and pin the new "
        f"text here ({RULE_REVISION + 1}: {digest!r}), so that pushes queued before are scanned again"
    )


def test_the_key_names_the_settings() -> None:
    assert content_key(PolicySettings()) == content_key(PolicySettings())
    assert content_key(PolicySettings()) != content_key(PolicySettings(body_max_chars=10))
    assert content_key(PolicySettings()) != content_key(PolicySettings(allowed_data_keys={"promotions": []}))
