"""Where the device actors' time went during a search: timing, or idle, and why idle.

An actor is idle for one of three reasons, charged in this order:

* ``end``: after the run's last measurement started, there is no candidate left to give it;
* ``proxy``: a proxy was computing on its node, and on a CPU target no timing runs beside a
  proxy (the proxy's own seconds, timed in its task);
* ``other``: the rest, orchestration: the loop telling, asking and screening before it has a
  candidate to hand over, Ray's round trips (a proxy's included), and the driver busy
  elsewhere while a finished proxy waits to be collected.

All times are ``time.perf_counter()`` seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

Span = tuple[float, float]

ANY_NODE = "*"  # a proxy Ray placed itself: it may have run on any node


def merged(spans: Iterable[Span]) -> list[Span]:
    """The union of ``spans`` as sorted, disjoint spans."""
    out: list[Span] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _gaps(busy: Sequence[Span], window: Span) -> list[Span]:
    """The parts of ``window`` that no span of ``busy`` (merged) covers."""
    gaps, at = [], window[0]
    for start, end in busy:
        if start > at:
            gaps.append((at, min(start, window[1])))
        at = max(at, end)
    if at < window[1]:
        gaps.append((at, window[1]))
    return [(s, e) for s, e in gaps if e > s]


def _covered(span: Span, by: Sequence[Span]) -> float:
    return sum(max(0.0, min(span[1], e) - max(span[0], s)) for s, e in by)


def actor_idle(
    busy: Mapping[int, Sequence[Span]],
    nodes: Mapping[int, str],
    proxies: Mapping[str, Sequence[Span]],
    window: Span,
    last_start: float,
) -> dict[str, float]:
    """Seconds the actors were idle inside ``window``, summed over actors, by reason (module doc).

    Args:
        busy: actor -> the spans it spent measuring.
        nodes: actor -> its node.
        proxies: node (or :data:`ANY_NODE`) -> the spans proxies ran there; pass only proxies
            that keep timings off their node (none on a GPU target).
        window: the run's span after set-up.
        last_start: when the run's last measurement started.
    """
    idle = {"end": 0.0, "proxy": 0.0, "other": 0.0}
    for actor, node in nodes.items():
        blocking = merged([*proxies.get(node, ()), *proxies.get(ANY_NODE, ())])
        for start, end in _gaps(merged(busy.get(actor, ())), window):
            tail = max(0.0, end - max(start, last_start))
            idle["end"] += tail
            rest = (start, end - tail)
            by_proxy = _covered(rest, blocking) if rest[1] > rest[0] else 0.0
            idle["proxy"] += by_proxy
            idle["other"] += max(0.0, rest[1] - rest[0] - by_proxy)
    return idle
