"""Signed checkpoints made as the ledger grows, not only when an auditor asks for one.

Verification holds the ledger to its latest signed checkpoint, so what it protects is the events
that checkpoint covers; those after it are held by the hash chain alone, which whoever holds the
database key can rewrite. Signed only on an auditor's request, the unsigned tail was every event
since their last visit: a withdrawal deleted from it, and the projection put back, verified, and
the next checkpoint signed the forged history. `serve` now signs one every
`CGW_CHECKPOINT_SECONDS` (300) when the ledger has grown, so a tail rewritten unseen is at most
that old; rewriting more needs the checkpoint rows deleted too, which only an external witness
catches (SECURITY.md). A checkpoint refused is logged as an error each time: new events whose
chain does not hold, or fewer events than the latest checkpoint signed. An event already signed
and changed since is not seen here (a checkpoint adds to the signed tree, it does not hash it
again): verification finds it.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.errors import Conflict
from gateway.services.audit_ledger import AuditLedger

__all__ = ["sign_checkpoints"]

log = logging.getLogger("gateway.checkpoints")


async def sign_checkpoints(ledger: AuditLedger, every: float) -> None:
    """Until cancelled: every `every` seconds, a checkpoint over the events not yet signed."""
    while True:
        await asyncio.sleep(every)
        try:
            made = await ledger.checkpoint_if_grown()
        except Conflict as refused:
            log.error("ledger checkpoint refused", extra={"reason": refused.detail})
        except Exception as exc:  # a full disk, a busy lock: tried again at the next interval
            log.warning("ledger checkpoint failed", extra={"error": type(exc).__name__})
        else:
            if made is not None:
                log.info("ledger checkpoint signed", extra={"tree_size": made.tree_size})
