"""Ray execution: one actor per target device, so timings never overlap on a device.

:class:`DeviceWorker` is a named Ray actor (``effvit-device-<device>``, one per device in the
cluster) with ``max_concurrency=1``: every measurement on that device goes through it, one at
a time, whoever asks (a CLI call, several search workers). On GPU it holds ``num_gpus=1`` and,
for named devices on a cluster, the ``accelerator_type`` resource, so Ray places no other GPU
work (training included) on that GPU while the actor lives. On CPU it reserves ``threads``
CPUs. Only the driver touches the measurement store: workers return results.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from effvit_nas.arch.config import ArchConfig
from effvit_nas.errors import SettingError, UserError
from effvit_nas.measure.devices import DeviceError, DeviceSpec, fingerprint, parse_device, resolve_local
from effvit_nas.measure.heap import HUGE_PAGES_TUNABLE, huge_pages_env, started_with_huge_pages
from effvit_nas.measure.settings import BenchSettings, Measurement, RatioMeasurement
from effvit_nas.measure.store import MeasurementStore
from effvit_nas.measure.timing import check_supported, measure, measure_ratio
from effvit_nas.runtime import Terminated, captured_stderr, check_reachable, import_ray, join_error, keep_sigterm_handler, root_cause

NAMESPACE = "effvit-nas"


def connect(address: str | None = None) -> None:
    """Join the Ray cluster at ``address`` (e.g. ``ray://head:10001`` or ``auto``), or start a
    local Ray when ``address`` is None. Does nothing if Ray is already initialised.

    None means a new local Ray (or ``$RAY_ADDRESS`` when set), never Ray's own default of
    joining whatever cluster a ``ray start`` left recorded on this machine: when that cluster
    died without ``ray stop`` the join hangs silently for minutes. Joining is explicit
    (``--ray-address auto``)."""

    ray = import_ray()

    if ray.is_initialized():
        return
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    check_reachable(target)
    # joining: Ray's client logs every refused attempt to fd 2; a new local Ray must keep it
    # (the processes it starts inherit it)
    capture: contextlib.AbstractContextManager[list[str]] = captured_stderr() if target != "local" else contextlib.nullcontext([])
    try:
        with keep_sigterm_handler(), capture as log:
            ray.init(
                address=target,
                namespace=NAMESPACE,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.AuthenticationError) as e:
        raise UserError(join_error(address or "local", e, "".join(log))) from None
    except SystemExit as e:  # SIGTERM while ray.init had its own handler (sys.exit) installed
        if e.code != signal.SIGTERM:
            raise
        raise Terminated() from None


def ray_accelerator_types() -> list[str]:
    ray = import_ray()

    return sorted(k.split(":", 1)[1] for k in ray.cluster_resources() if k.startswith("accelerator_type:"))


def _this_node() -> str:
    """This process's Ray node as IP and short id (one host may run several nodes)."""

    ray = import_ray()
    node = ray.util.get_node_ip_address()
    return f"{node}, id {ray.get_runtime_context().get_node_id()[:8]}" if ray.is_initialized() else node


class DeviceWorker:
    """Holds one device and measures one candidate at a time (run as a Ray actor)."""

    def __init__(self, device: str):
        try:
            self.torch_device = resolve_local(parse_device(device))
        except DeviceError as e:  # on a cluster: say which node claimed the device and lacks it
            raise DeviceError(f"{e} (Ray node {_this_node()})") from None
        self._fp = fingerprint(self.torch_device)
        # import the model code now (seconds of torch imports), not inside the first timing call
        import effvit_nas.model.deploy  # lazy: loads torch, in the actor only; the driver that asks it needs none
        import effvit_nas.model.efficientvit  # noqa: F401  # lazy: as above

    def fingerprint(self) -> dict[str, Any]:
        return self._fp

    def node(self) -> tuple[str, str]:
        """(Ray node id, node IP) of the node this actor runs on."""

        ray = import_ray()
        return ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()

    def check(self, settings: dict[str, Any]) -> None:
        s = BenchSettings(**settings)
        check_supported(s, self.torch_device)
        # an actor found by name may have been started by an older driver, without the tunable:
        # its figures would be stored under the huge-pages key
        if s.pages == "huge" and not started_with_huge_pages():
            raise SettingError(
                "BenchSettings.pages",
                f"huge, but this process started without GLIBC_TUNABLES={HUGE_PAGES_TUNABLE} (a device actor of an older run?)",
            )

    def measure(self, config: dict[str, Any], settings: dict[str, Any]) -> Measurement:
        return measure(ArchConfig.from_dict(config), BenchSettings(**settings), self.torch_device, self._fp)

    def measure_ratio(self, config: dict[str, Any], reference: dict[str, Any], settings: dict[str, Any]) -> RatioMeasurement:
        configs = (ArchConfig.from_dict(config), ArchConfig.from_dict(reference))
        return measure_ratio(*configs, BenchSettings(**settings), self.torch_device, self._fp)


def _actor_options(name: str, gpu: bool, settings: BenchSettings, slot: Slot) -> dict[str, Any]:
    # a CPU actor reserves as many Ray CPUs as it times threads with: one holding 1 CPU must not
    # be found by name and reused for a 2-thread measurement (Ray would schedule work beside it)
    threads = f"-{settings.threads}t" if not gpu and settings.threads > 1 else ""
    # the pages are chosen when the actor's process starts (glibc reads its tunables then), so
    # an actor of the other choice has another name and process
    pages = "" if settings.pages == "huge" else f"-{settings.pages}pages"
    opts: dict[str, Any] = {
        "name": f"effvit-device-{name}{threads}{pages}{slot.suffix()}",
        "namespace": NAMESPACE,
        "get_if_exists": True,
        "max_concurrency": 1,
        # a killed actor process (OOM killer, a crash) is restarted by Ray and the call it was
        # running re-sent once, so the search goes on and the candidate is measured afresh
        "max_restarts": 2,
        "max_task_retries": 1,
        "num_cpus": 1 if gpu else settings.threads,
    }
    if gpu:
        opts["num_gpus"] = 1
    if settings.pages == "huge":
        opts["runtime_env"] = {"env_vars": huge_pages_env()}
    if slot.node_id:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # lazy: Ray costs seconds to import

        opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(slot.node_id, soft=False)
    return opts


@dataclass(frozen=True)
class Slot:
    """Where one of a device's actors lives: on ``node_id`` (None: wherever Ray places it), the
    ``index``-th of that node's (GPU actors; each holds one GPU)."""

    node_id: str | None = None
    index: int = 0

    def suffix(self) -> str:
        """Name suffix: a slot placed by Ray (no node) and first keeps the device's plain name,
        the actor ``bench`` and a relative budget use too."""
        node = f"-{self.node_id[:8]}" if self.node_id else ""
        return f"{node}-{self.index}" if self.index else node


def _cluster_device(spec: DeviceSpec, res: dict[str, float]) -> tuple[str, bool, str | None]:
    """(actor name, whether it needs a GPU, the cluster's accelerator type to ask for) of
    ``spec`` on a Ray cluster with resources ``res``; DeviceError listing what the cluster has."""
    types = ray_accelerator_types()
    gpu = spec.kind == "cuda" or (spec.kind == "auto" and res.get("GPU", 0) >= 1)
    accel = None
    if spec.ray_accelerator_type:
        accel = next((t for t in types if t.startswith(spec.ray_accelerator_type)), None)
    if spec.kind == "cuda" and (res.get("GPU", 0) < 1 or (spec.ray_accelerator_type and accel is None)):
        raise DeviceError(
            f"device {spec.raw!r} is not in the Ray cluster; available: cpu ({int(res.get('CPU', 0))} CPUs), "
            f"{int(res.get('GPU', 0))} GPUs" + (f", accelerator types {', '.join(types)}" if types else "")
        )
    name = spec.raw.lower() if spec.kind != "auto" else ("cuda" if gpu else "cpu")
    return name, gpu, accel


def get_worker(device: str, settings: BenchSettings, ray_address: str | None = None, slot: Slot = Slot()):
    """The Ray actor holding ``device`` (created if missing) in ``slot``. DeviceError if the
    device does not exist.

    Availability is checked before anything is scheduled: locally against torch's devices,
    on a cluster against its GPUs and accelerator types, so a missing device fails fast with
    the list of what is there instead of an actor that never starts. Locally the actor is
    named after the resolved device (``cpu`` and ``auto`` on a CPU-only machine share one).
    """

    ray = import_ray()

    spec = parse_device(device)
    connect(ray_address)
    res = ray.cluster_resources()
    if ray_address is None:
        name = resolve_local(spec)  # raises DeviceError listing local devices
        gpu, accel = name.startswith("cuda"), None
    else:
        name, gpu, accel = _cluster_device(spec, res)
    if not gpu and settings.threads > res.get("CPU", 0):
        raise SettingError(
            "BenchSettings.threads", f"{settings.threads} is more than the {int(res.get('CPU', 0))} CPUs Ray can give one worker"
        )
    opts = _actor_options(name, gpu, settings, slot)
    if accel:
        # Ray matches accelerator types exactly; use the cluster's full name (A100-80G, ...).
        opts["accelerator_type"] = accel
    return ray.remote(DeviceWorker).options(**opts).remote(device)


class LazyWorker:
    """The device's actor, started on first call and alive while this object holds it: steps
    of one command that each need the device (a relative budget's measurement, then the
    search) share one actor instead of paying an actor start (seconds) each, as
    :func:`get_worker` finds a live named actor."""

    def __init__(self, device: str, settings: BenchSettings, ray_address: str | None = None):
        self._args, self._handle = (device, settings, ray_address), None

    def __call__(self) -> Any:
        if self._handle is None:
            self._handle, _ = live_worker(*self._args)
        return self._handle

    def release(self) -> None:
        """Drop the handle (Ray ends the actor once no one else holds it)."""
        self._handle = None


def _unwrap_user_error(e: Exception) -> None:
    """Re-raise a UserError that happened inside an actor as itself (one-line CLI error)."""

    cause = root_cause(e)
    if isinstance(cause, UserError):
        raise cause from None


def check_local(device: str, settings: BenchSettings) -> dict[str, Any]:
    """The fingerprint of ``device`` on this machine, after checking it can run ``settings``."""
    torch_device = resolve_local(parse_device(device))
    check_supported(settings, torch_device)
    return fingerprint(torch_device)


def check_on_worker(worker: Any, settings: BenchSettings) -> dict[str, Any]:
    """The fingerprint of ``worker``'s device, after checking it can run ``settings``
    (a UserError raised in the actor is raised here as itself)."""

    ray = import_ray()

    try:
        # no retry of this first call: when the actor's __init__ failed (a node claiming a GPU it
        # lacks) a retry cannot help, and Ray would print the __init__ traceback with its notice
        device_fp = ray.get(worker.fingerprint.options(max_task_retries=0).remote())
        ray.get(worker.check.remote(asdict(settings)))
    except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as e:
        _unwrap_user_error(e)
        raise
    return device_fp


def live_worker(
    device: str, settings: BenchSettings, ray_address: str | None = None, slot: Slot = Slot(), handle: Any = None
) -> tuple[Any, dict[str, Any]]:
    """The device's actor in ``slot`` (``handle`` when one was started already) checked on its
    node, and the fingerprint of its device.

    An actor that is ending is replaced by a new one in its slot: Ray hands out a named actor
    whose creating handle was just dropped (a step of this command done with it, or a driver
    that ended) until it is gone (ray-project/ray#49480), and a call to it then fails with
    "all references to the actor were removed"."""

    ray = import_ray()
    handle = handle if handle is not None else get_worker(device, settings, ray_address, slot)
    for wait in (0.0, 0.2, 1.0):  # the ending actor's name is released soon after its end
        try:
            return handle, check_on_worker(handle, settings)
        except ray.exceptions.RayActorError as e:
            if e.actor_init_failed:  # a new actor would fail alike
                raise
            time.sleep(wait)
            handle = get_worker(device, settings, ray_address, slot)
    return handle, check_on_worker(handle, settings)


def measure_configs(
    configs: Iterable[ArchConfig],
    device: str,
    settings: BenchSettings,
    store: MeasurementStore,
    *,
    fresh: bool = False,
    ray_address: str | None = None,
    on_result: Callable[[Measurement], None] | None = None,
    worker: Any = None,
) -> list[Measurement]:
    """Throughput of each config on ``device``: from the store when known, else measured by
    the device's Ray actor and stored. ``fresh`` re-measures and replaces stored figures.

    For a local device the driver fingerprints the (same) hardware itself, so a run whose
    figures are all stored starts no Ray at all; on a cluster the actor's node answers.

    ``worker``: a handle from :func:`live_worker` to reuse. The actor lives as long as a handle
    to it does, so a caller measuring repeatedly (the search) keeps one instead of paying an
    actor start (seconds: a process, torch, the model code) per call; its fingerprint, taken once when
    it started, also spares each call the driver's (nvidia-smi on GPUs).
    """

    ray = import_ray()

    configs = list(configs)
    if worker is None and ray_address is None:
        device_fp = check_local(device, settings)
    elif worker is not None:
        device_fp = check_on_worker(worker, settings)
    else:
        worker, device_fp = live_worker(device, settings, ray_address)
    key = settings.key()
    results = []
    for cfg in configs:
        m = None if fresh else store.get(cfg.short_hash(), device_fp["id"], key)
        if m is None:
            if worker is None:
                worker, _ = live_worker(device, settings, ray_address)
            m = ray.get(worker.measure.remote(cfg.to_dict(), asdict(settings)))
            store.put(m, key)
        results.append(m)
        if on_result:
            on_result(m)
    return results


def measure_ratios(
    configs: Iterable[ArchConfig],
    reference: ArchConfig,
    device: str,
    settings: BenchSettings,
    *,
    ray_address: str | None = None,
    on_result: Callable[[RatioMeasurement], None] | None = None,
) -> list[RatioMeasurement]:
    """Each config's throughput relative to ``reference`` on ``device`` (ratio mode), measured
    by the device's Ray actor. Ratios are not stored: they belong to a pair, not a config."""

    ray = import_ray()
    worker, _ = live_worker(device, settings, ray_address)
    results = []
    for cfg in configs:
        results.append(ray.get(worker.measure_ratio.remote(cfg.to_dict(), reference.to_dict(), asdict(settings))))
        if on_result:
            on_result(results[-1])
    return results


def paired_key(settings: BenchSettings, reference: ArchConfig, reference_throughput: float) -> str:
    """Store key of figures taken in ratio mode against ``reference`` and scaled by its figure
    ``reference_throughput`` (img/s; another protocol). The figure is part of the key because a
    stored figure is ratio x that figure: a study whose preset measured otherwise must not
    judge a candidate by another study's scale (28 characters, within the key column's 32)."""
    scale = hashlib.sha256(f"{reference.short_hash()}@{reference_throughput!r}".encode()).hexdigest()[:12]
    return f"{settings.key()}-vs-{scale}"


def paired_measurement(
    config: ArchConfig,
    r: RatioMeasurement,
    reference_throughput: float,
    reference: str = "the budget's preset",
    reference_p90_ms: float = math.nan,
) -> Measurement:
    """A ratio to ``reference`` (whose figure is ``reference_throughput`` img/s) as a figure in
    images/s, with its interval; for the latency metric also the p90 as the run's p90 ratio
    times ``reference_p90_ms`` (no interval: one run's ratio of two tails). A run with a gap
    (``pair_estimator`` ``gap``) is the reference's seconds per batch plus the gap instead."""
    figure, ci_low, ci_high, said = _paired_figure(r, reference_throughput)
    # the spread a paired figure has is its interval; under 6 pairs there is none to give
    lo, hi = (figure, figure) if math.isnan(ci_low) else (ci_low, ci_high)
    return Measurement(
        config_hash=config.short_hash(),
        throughput=figure,
        q1=lo,
        q3=hi,
        cv=r.cv,
        iterations=r.pairs,
        batch=r.batch,
        seconds=r.seconds,
        settings=r.settings,
        device=r.device,
        config=config.to_dict(),
        note="; ".join(n for n in (f"paired: {said} {reference}", r.note) if n),
        ci_low=ci_low,
        ci_high=ci_high,
        windows=r.pairs,
        disturbed=r.disturbed,
        p90_ms=r.p90_ratio * reference_p90_ms,
    )


def _paired_figure(r: RatioMeasurement, reference_throughput: float) -> tuple[float, float, float, str]:
    """The figure (img/s), its 95 % interval (NaN where the run gives none) and how it
    relates to the reference, in words."""
    reference_s = r.batch / reference_throughput
    if not math.isnan(r.gap_s) and reference_s + r.gap_s > 0:
        # the interval's upper figure is unbounded where the gap's low end reaches -reference_s
        low, high = (r.batch / (reference_s + g) if not reference_s + g <= 0 else math.inf for g in (r.gap_high, r.gap_low))
        return r.batch / (reference_s + r.gap_s), low, high, f"{1e3 * r.gap_s:+.3f} ms per batch on"
    return r.ratio * reference_throughput, r.ci_low * reference_throughput, r.ci_high * reference_throughput, f"{r.ratio:.3f}x"
