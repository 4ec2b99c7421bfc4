"""The measurement pool: one device actor per matching accelerator, all measuring in parallel.

``cuda`` or a GPU name on a cluster gets one actor per matching GPU (each holds ``num_gpus=1``,
pinned to its node); a CPU gets one actor per node, since all of a machine's CPU is one device
(timings on its cores disturb each other, :func:`~effvit_nas.measure.timing.device_lock`).
``cuda:N`` is one GPU, so one actor. Every actor's fingerprint keys the figures it measures,
and a pool keeps only actors of one fingerprint (the most common): a study's throughputs must
come from one kind of hardware, so nodes with other hardware are left out and named.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from effvit_nas.measure.actor import Slot, connect, get_worker, live_worker
from effvit_nas.measure.devices import DeviceSpec, local_devices, parse_device
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.runtime import import_ray


@dataclass(frozen=True)
class PoolMember:
    """One device actor of the pool: its handle, its device's fingerprint and its node."""

    handle: Any
    fingerprint: dict[str, Any]
    node_id: str
    node_ip: str
    slot: Slot


@dataclass(frozen=True)
class Pool:
    """The actors measuring for a run, and the actors left out for other hardware
    (``"<node IP>: <device name> (fingerprint <id>)"``)."""

    members: list[PoolMember]
    left_out: list[str]

    def describe(self) -> str:
        """E.g. ``2 device actors (cpu: AMD EPYC) on 2 nodes``, for the search's first lines."""
        fp = self.members[0].fingerprint
        nodes = len({m.node_id for m in self.members})
        text = f"{len(self.members)} device actor{'s' * (len(self.members) > 1)} ({fp['kind']}: {fp['name']}) on {nodes} node{'s' * (nodes > 1)}"
        return text + "".join(f"; left out (other hardware): {x}" for x in self.left_out)


def _wants_gpu(spec: DeviceSpec, gpus: float) -> bool:
    return spec.kind == "cuda" or (spec.kind == "auto" and gpus >= 1)


def _local_slots(spec: DeviceSpec) -> list[Slot]:
    """A local Ray (one node): one actor per local GPU matching ``spec``, else one."""
    gpus = [n for d, n in local_devices() if d.startswith("cuda")]
    if spec.index is not None or not _wants_gpu(spec, len(gpus)):
        return [Slot()]
    matching = [n for n in gpus if spec.name is None or spec.name in n.lower().replace(" ", "")]
    return [Slot(index=i) for i in range(len(matching))] or [Slot()]  # none: get_worker says what exists


def alive_nodes() -> list[dict[str, Any]]:
    """The Ray cluster's live nodes (``NodeID``, ``Resources``, ...)."""

    return [n for n in import_ray().nodes() if n.get("Alive")]


def _cluster_slots(spec: DeviceSpec, settings: BenchSettings) -> list[Slot]:
    """On a cluster: per alive node, one slot per matching GPU, or one for its CPU."""

    ray = import_ray()
    nodes = alive_nodes()
    if spec.index is not None:
        return [Slot()]
    if _wants_gpu(spec, ray.cluster_resources().get("GPU", 0)):
        accel = spec.ray_accelerator_type
        slots = [
            Slot(n["NodeID"], i)
            for n in nodes
            if accel is None or any(k.startswith(f"accelerator_type:{accel}") for k in n["Resources"])
            for i in range(int(n["Resources"].get("GPU", 0)))
        ]
    else:
        slots = [Slot(n["NodeID"]) for n in nodes if n["Resources"].get("CPU", 0) >= settings.threads]
    return slots or [Slot()]  # none: get_worker raises the DeviceError listing what exists


def start_pool(device: str, settings: BenchSettings, ray_address: str | None = None, size: int | None = None) -> Pool:
    """Start (or find by name) the actors measuring ``device``: at most ``size`` (None: one per
    matching accelerator), each checked on its node. A node lacking the device it claims is
    a DeviceError naming the node, before any trial."""

    ray = import_ray()
    connect(ray_address)
    spec = parse_device(device)
    slots = _local_slots(spec) if ray_address is None else _cluster_slots(spec, settings)
    handles = [get_worker(device, settings, ray_address, slot) for slot in slots[:size]]  # all start at once
    members = [_member(h, slot, device, settings, ray_address) for h, slot in zip(handles, slots, strict=False)]
    common, _ = Counter(m.fingerprint["id"] for m in members).most_common(1)[0]
    left = [m for m in members if m.fingerprint["id"] != common]
    for m in left:  # not kept alive holding CPUs or a GPU that proxies and training could use
        ray.kill(m.handle)
    described = [f"{m.node_ip}: {m.fingerprint['name']} (fingerprint {m.fingerprint['id']})" for m in left]
    return Pool([m for m in members if m.fingerprint["id"] == common], described)


def _member(handle: Any, slot: Slot, device: str, settings: BenchSettings, ray_address: str | None) -> PoolMember:
    """``handle`` checked on its node (one found by name as it ends, the command's budget
    actor released just before, is replaced in its slot: :func:`live_worker`)."""

    ray = import_ray()
    handle, fp = live_worker(device, settings, ray_address, slot, handle)
    node, ip = ray.get(handle.node.remote())
    return PoolMember(handle, fp, node, ip, slot)


def restart_member(member: PoolMember, device: str, settings: BenchSettings, ray_address: str | None) -> PoolMember:
    """``member`` with a new actor in its slot: a named actor found by name may be another
    driver's, which dies for good with that driver's job."""
    return _member(None, member.slot, device, settings, ray_address)
