"""Run a fidelity study: draw the architectures (measuring their throughput on the device, in
the band when one is asked), then score each with every proxy and train its reference, as Ray
tasks, storing each result the moment it exists. Whatever is stored is never run again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from effvit_nas.arch.config import ArchConfig
from effvit_nas.arch.space import load_space
from effvit_nas.data import load_data
from effvit_nas.errors import SettingError, UserError
from effvit_nas.fidelity.settings import FidelitySettings, ProxySpec
from effvit_nas.fidelity.store import FidelityStore, Result
from effvit_nas.measure.actor import live_worker, measure_configs
from effvit_nas.measure.settings import Measurement
from effvit_nas.measure.store import MeasurementStore
from effvit_nas.proxy.registry import SUPERNET, evaluate_proxy
from effvit_nas.proxy.short_training import ShortTrainSettings
from effvit_nas.runtime import import_ray, root_cause
from effvit_nas.search.budget import resolve_budget
from effvit_nas.supernet.scoring import load_supernet

MAX_DRAWS_PER_ARCH = 60  # a band that keeps fewer than 1 in 60 draws is too narrow to fill


@dataclass(frozen=True)
class Job:
    """One evaluation: proxy ``key`` (``kind == 'proxy'``) or reference seed ``key`` of an
    architecture."""

    kind: str
    config_hash: str
    key: str

    def label(self) -> str:
        return f"{self.config_hash} {self.kind} {self.key}"


Progress = Callable[[Job, Result | None], None]
"""Called after each job with ``(job, result)``."""


def open_store(settings: FidelitySettings, storage: str, study: str, create: bool = True) -> FidelityStore:
    """The study ``study``, checked to hold results made with ``settings`` (created if missing
    when ``create``)."""
    store = FidelityStore(storage, study, create)
    store.claim(settings.identity())
    return store


def device_measurer(settings: FidelitySettings, storage: str, ray_address: str | None) -> Callable[[ArchConfig], Measurement]:
    """Throughput on the study's device through its Ray actor and the measurement store (the
    actor lives as long as the returned function)."""

    worker, _ = live_worker(settings.device, settings.bench, ray_address)
    measurements = MeasurementStore(storage)

    def measure(config: ArchConfig):
        return measure_configs([config], settings.device, settings.bench, measurements, ray_address=ray_address, worker=worker)[0]

    return measure


def _band_limits(settings: FidelitySettings, store: FidelityStore, measure) -> tuple[float, float] | None:
    """(low, high) images/s of the band, resolved once and stored with the study."""

    if settings.band is None:
        return None
    stored = store.band()
    if stored is None:
        space = load_space(settings.space)
        budget = resolve_budget(settings.band.budget, max(space.img_sizes), space.num_classes, measure)
        stored = {"images_per_s": budget.images_per_s, "reference": budget.reference}
        store.set_band(stored)
    t = settings.band.tolerance
    return stored["images_per_s"] * (1 - t), stored["images_per_s"] * (1 + t)


def draw_architectures(
    settings: FidelitySettings,
    store: FidelityStore,
    measure: Callable[[ArchConfig], Measurement],
    on_draw: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """The study's architectures: those stored, then new draws from the space (seeded, so a
    resumed run continues the same sequence) until there are ``settings.archs``. Each is
    measured with ``measure``; with a band, draws outside it are measured and dropped.
    ``on_draw(kept, drawn)`` after each draw."""

    archs = store.archs()
    if len(archs) >= settings.archs:
        return archs[: settings.archs]
    space = load_space(settings.space)
    limits = _band_limits(settings, store, measure)
    kept = {a["hash"] for a in archs}
    rng = np.random.default_rng(settings.seed)
    drawn = 0
    while len(archs) < settings.archs:
        drawn += 1
        if drawn > MAX_DRAWS_PER_ARCH * settings.archs:
            raise UserError(f"only {len(archs)} of {drawn - 1} drawn architectures fell in the band {settings.band}: widen --band")
        config = space.sample(rng)
        if config.short_hash() in kept:
            continue
        m = measure(config)
        if limits is None or limits[0] <= m.throughput <= limits[1]:
            archs.append({"hash": config.short_hash(), "config": config.to_dict(), "throughput": m.throughput})
            kept.add(config.short_hash())
            store.set_archs(archs)
        if on_draw:
            on_draw(len(archs), drawn)
    return archs


def check_supernet_weights(settings: FidelitySettings, store: FidelityStore) -> None:
    """UserError when the study holds a ``supernet:DIR`` proxy's scores made with other weights
    than those now in DIR (a supernet retrained in place): new scores would not compare with
    them. Scores stored before the digest was kept cannot be checked."""

    for proxy in (p for p in settings.proxies if p.name.startswith(SUPERNET)):
        folder = proxy.name[len(SUPERNET) :]
        digest = load_supernet(folder)[1]
        results = (store.get("proxy", a["hash"], str(proxy)) for a in store.archs())
        other = sorted({r.details["weights_sha256"] for r in results if r and r.details.get("weights_sha256", digest) != digest})
        if other:
            raise UserError(
                f"this study's {proxy} scores were made with supernet weights {', '.join(other)}, not those now in {folder} "
                f"({digest}): use a new --study, or put those weights back"
            )


def pending_jobs(settings: FidelitySettings, store: FidelityStore, archs: list[dict[str, Any]]) -> tuple[list[Job], int]:
    """Jobs not stored yet, cheapest first (zero-cost proxies, train proxies, then one
    reference seed at a time over all architectures, so a run cut short leaves whole seeds),
    and the number already stored."""
    order = sorted(settings.proxies, key=lambda p: p.steps or 0)
    jobs = [Job("proxy", a["hash"], str(p)) for p in order for a in archs]
    jobs += [Job("reference", a["hash"], str(settings.seed + s)) for s in range(settings.seeds) for a in archs]
    todo = [j for j in jobs if store.get(j.kind, j.config_hash, j.key) is None]
    return todo, len(jobs) - len(todo)


def _evaluate(job: dict[str, Any], config: dict[str, Any], data: Any, train: dict[str, Any]) -> dict[str, Any]:
    """One job, in a Ray worker: a proxy value or a reference top-1."""

    name = "train" if job["kind"] == "reference" else job["key"].partition("@")[0]
    r = evaluate_proxy(name, ArchConfig.from_dict(config), data, ShortTrainSettings(**train))
    details = {k: v for k, v in r.details.items() if k in ("steps", "final_loss", "history", "weights_sha256")}
    # a proxy's cost as a search pays it: without the evaluations only made for the record
    return {"value": r.value, "seconds": r.seconds - r.details.get("eval_seconds", 0.0), "details": details}


def _threads(settings: FidelitySettings, cpus: float) -> int:
    if settings.threads is not None:
        if settings.threads > cpus:
            raise SettingError("FidelitySettings.threads", f"{settings.threads} is more than the {int(cpus)} CPUs Ray has")
        return settings.threads
    return max(1, min(4, int(cpus)))


def run_jobs(
    settings: FidelitySettings, store: FidelityStore, archs: list[dict[str, Any]], jobs: list[Job], on_result: Progress | None = None
) -> None:
    """Evaluate ``jobs`` as Ray tasks of ``threads`` CPUs each, storing each result as it
    arrives. Only as many tasks as the cluster can run at once are submitted, the next one
    when one finishes: Ray does not start queued tasks in submission order, and the order
    (cheap proxies, then one reference seed at a time) is what makes a run cut short useful."""

    if not jobs:
        return
    ray = import_ray()
    cpus = ray.cluster_resources().get("CPU", 1)
    settings = replace(settings, threads=_threads(settings, cpus))
    configs = {a["hash"]: a["config"] for a in archs}
    proxy_data = ray.put(load_data(settings.data)) if any(j.kind == "proxy" for j in jobs) else None
    ref_data, ref_images = None, 0
    if any(j.kind == "reference" for j in jobs):
        data = load_data(settings.reference_data())
        ref_data, ref_images = ray.put(data), len(data.train_y)
    task = ray.remote(num_cpus=settings.threads)(_evaluate)

    def submit(job: Job) -> Any:
        if job.kind == "proxy":
            data, train = proxy_data, settings.proxy_run(ProxySpec.parse(job.key))
        else:
            data, train = ref_data, settings.reference_run(ref_images, int(job.key) - settings.seed)
        return task.remote(asdict(job), configs[job.config_hash], data, asdict(train))

    for job, result in _in_order(ray, jobs, submit, max(1, int(cpus // settings.threads)), root_cause):
        store.put(job.kind, job.config_hash, job.key, result)
        if on_result:
            on_result(job, result)


def _in_order(ray: Any, jobs: list[Job], submit: Callable[[Job], Any], slots: int, root_cause) -> Iterator[tuple[Job, Result]]:
    """Results of ``jobs`` as they finish, with at most ``slots`` submitted at a time, in order."""
    queue = list(reversed(jobs))
    running: dict[Any, Job] = {}  # Ray's object ref -> its job
    while queue or running:
        while queue and len(running) < slots:
            job = queue.pop()
            running[submit(job)] = job
        done, _ = ray.wait(list(running), num_returns=1)
        job = running.pop(done[0])
        try:
            raw = ray.get(done[0])
        except Exception as e:
            cause = root_cause(e)
            raise UserError(f"{job.label()} failed: {type(cause).__name__}: {cause}") from None
        yield job, Result(raw["value"], raw["seconds"], raw["details"])
