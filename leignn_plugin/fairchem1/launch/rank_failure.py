"""A clear error when another rank of a multi-rank run dies or stops answering, instead of a raw backend trace."""

from __future__ import annotations

import torch.distributed as dist

# Phrases gloo, NCCL and the c10d store use when a peer has gone or a collective ran past the timeout.
LOST_PEER_MARKERS = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Broken pipe",
    "timed out",
    "Timed out",
    "Watchdog caught collective operation timeout",
    "Application timeout caused pair closure",  # gloo: another operation on the pair timed out first
)


class RankLostError(RuntimeError):
    """Another rank of this run died or hung, so this rank stops rather than waiting forever."""


def lost_peer(err: BaseException) -> bool:
    """True when ``err`` says a collective failed because a peer vanished or timed out."""
    text = str(err)
    return isinstance(err, dist.DistError) or any(marker in text for marker in LOST_PEER_MARKERS)


def rank_lost_error(err: BaseException, rank: int, world_size: int, timeout_min: float) -> RankLostError:
    """The one-line explanation raised in place of ``err`` (which stays chained as the cause)."""
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return RankLostError(
        f"rank {rank} of {world_size}: another rank of this run died or stopped responding ({first_line}); "
        f"stopping instead of waiting (collectives time out after {timeout_min:g} min, set by the config key "
        "'timeout'); see the other ranks' logs for the cause"
    )
