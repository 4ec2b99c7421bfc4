"""How training runs and where its results go.

:func:`train` runs :func:`effvit_nas.training.loop.train_loop` on Ray Train's ``TorchTrainer``
with DDP (gloo on CPU, NCCL on GPU), one Ray Train worker per ``TrainExecution.workers``: the
recipe is the ``train_loop_config``, :class:`TrainExecution` becomes the ``ScalingConfig``
and ``RunConfig``. Ray Train persists every epoch checkpoint under ``OUT/checkpoints``;
``resume`` re-runs the same Ray Train run (name and storage path), which restores the newest.

:func:`train_model` trains a config or an export folder and writes the trained accuracy where
users look (the folder's model card, the study); :func:`train_top` does that for the best
Pareto models of a study.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from effvit_nas.arch.config import ArchConfig, load_config
from effvit_nas.data import DataConfig
from effvit_nas.data.streaming import training_data
from effvit_nas.errors import SettingError, UserError
from effvit_nas.measure.actor import connect
from effvit_nas.measure.store import default_storage
from effvit_nas.model.weights import check_weights, read_weights
from effvit_nas.results.cards import set_section
from effvit_nas.results.export import export_trials
from effvit_nas.results.studies import StudyInfo, load_study
from effvit_nas.runtime import free_cpus, import_ray, root_cause
from effvit_nas.supernet.scoring import load_supernet
from effvit_nas.training.loop import EMA_FILE, MODEL_FILE, STATE_FILE, load_state, read_state, steps_per_epoch, train_loop
from effvit_nas.training.recipe import TrainRecipe
from effvit_nas.trials.pareto import pareto_trials

CHECKPOINT_DIR = "checkpoints"
RUN_NAME = "train"
# Ray Train's list of the run's persisted checkpoints, rewritten after each one (Ray 2.60)
RAY_CHECKPOINT_LIST = "checkpoint_manager_snapshot.json"

Progress = Callable[[dict[str, Any]], None]
"""Progress events, dicts of one of three shapes: ``{"start": {config_hash, data, img_size,
workers, use_gpu, out, recipe}}`` once before training; ``{epoch, epochs, step, steps, loss, lr,
img_s}`` about ten times per epoch; ``{"epoch_done": metrics}`` after each epoch (see
``TrainResult.history``)."""


@dataclass(frozen=True)
class TrainExecution:
    """How a training run executes; what it computes is the :class:`TrainRecipe`.

    Attributes:
        out: output folder (weights, ``train.json``, Ray Train's checkpoints); None: an export
            folder trains in place (:func:`train_model`), anything else in ``train-<hash>``.
        workers: Ray Train workers, DDP (default 1). On CPU each needs a CPU.
        use_gpu: one GPU per worker; None (default): when CUDA is available here.
        ray_address: an existing Ray cluster; None: a local Ray.
        resume: continue the run in ``out`` from its newest epoch checkpoint.
        stream: read an ImageFolder from disk as training goes (any size) instead of loading
            it into memory first (:mod:`effvit_nas.data.streaming`; default False).
        loader_workers: DataLoader processes per Ray Train worker decoding and augmenting
            images (default 0: in the worker itself).
        threads: torch threads per worker; None (default): the CPUs not busy now, shared out
            (CPU runs repeat bit for bit only at one thread count: fix it to compare runs).
    """

    out: Path | None = None
    workers: int = 1
    use_gpu: bool | None = None
    ray_address: str | None = None
    resume: bool = False
    stream: bool = False
    loader_workers: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise SettingError("TrainExecution.workers", f"must be positive, got {self.workers}")
        if self.loader_workers < 0:
            raise SettingError("TrainExecution.loader_workers", f"must be 0 or more, got {self.loader_workers}")
        if self.threads is not None and self.threads < 1:
            raise SettingError("TrainExecution.threads", f"must be positive, got {self.threads}")

    def resolved(self, default_out: Path) -> TrainExecution:
        """``out`` absolute (``default_out`` when None) and ``use_gpu`` decided."""
        if self.use_gpu is None:
            import torch  # lazy: torch costs seconds to import

            return replace(self, use_gpu=torch.cuda.is_available()).resolved(default_out)
        return replace(self, out=(self.out or default_out).resolve())

    @property
    def out_dir(self) -> Path:
        """``out`` of a resolved run (see :meth:`resolved`)."""
        if self.out is None:
            raise ValueError("TrainExecution.out: not resolved yet")
        return self.out

    def scaling_config(self, threads: int) -> Any:
        """Ray Train's ScalingConfig: one worker per ``workers``, each a GPU or ``threads`` CPUs."""
        import_ray()
        from ray.train import ScalingConfig  # lazy: Ray costs seconds to import

        per_worker = None if self.use_gpu else {"CPU": threads}
        return ScalingConfig(num_workers=self.workers, use_gpu=bool(self.use_gpu), resources_per_worker=per_worker)

    def run_config(self) -> Any:
        """Ray Train's RunConfig: the run's checkpoints under ``out/checkpoints``, the newest two kept.

        Ray Train restores a run from its storage: the same name and path resume from the
        newest reported checkpoint (``get_checkpoint()`` in the workers)."""
        import_ray()
        from ray.train import CheckpointConfig, RunConfig  # lazy: Ray costs seconds to import

        return RunConfig(name=RUN_NAME, storage_path=str(self.out_dir / CHECKPOINT_DIR), checkpoint_config=CheckpointConfig(num_to_keep=2))


@dataclass(frozen=True)
class Teacher:
    """A trained model to distill from: a folder with ``config.yaml`` and ``model.safetensors``
    (what :func:`train` leaves in its output folder)."""

    arch: ArchConfig
    weights: Path
    num_classes: int | None  # of the weights' classifier; None when it cannot be read

    @classmethod
    def from_folder(cls, folder: str | Path) -> Teacher:
        path = Path(folder)
        weights = path / MODEL_FILE
        if not path.is_dir() or not weights.is_file():
            raise UserError(
                f"unknown teacher {str(folder)!r}: give a folder with config.yaml and {MODEL_FILE} (the output of a finished training)"
            )
        from safetensors import safe_open  # lazy: loads torch

        with safe_open(str(weights), "pt") as f:
            names = f.keys()  # safe_open has no __iter__
            heads = [k for k in names if k.startswith("head.") and k.endswith("weight") and len(f.get_slice(k).get_shape()) == 2]
            classes = f.get_slice(heads[-1]).get_shape()[0] if heads else None
        return cls(load_config(path), weights.resolve(), classes)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch.to_dict(), "weights": str(self.weights), "num_classes": self.num_classes}


@dataclass
class TrainResult:
    top1: float  # held-out top-1 in [0, 1] of the final model
    top1_ema: float | None  # of the EMA model
    epochs: int
    seconds: float
    images_per_s: float  # training throughput, all workers
    out: str
    history: list[dict[str, Any]]

    @classmethod
    def of(cls, history: list[dict[str, Any]], out: str, seconds: float) -> TrainResult:
        """The result of a run whose epochs' metrics are ``history`` (the last is the result)."""
        last, train_s = history[-1], sum(h["train_s"] for h in history)
        images_per_s = sum(h["img_s"] * h["train_s"] for h in history) / max(train_s, 1e-9)
        return cls(last["top1"], last["top1_ema"], last["epoch"], seconds, images_per_s, out, history)


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete epoch checkpoint under ``out`` (None when there is none). One whose
    copy a kill cut short is passed over (Ray Train's restore passes over it too: it only
    lists checkpoints it finished persisting)."""
    runs = out / CHECKPOINT_DIR / RUN_NAME
    best, best_epoch = None, -1
    for d in runs.glob("checkpoint_*") if runs.is_dir() else []:
        if (d / STATE_FILE).is_file() and (d / MODEL_FILE).is_file():
            try:
                epoch = load_state(d / STATE_FILE)["epoch"]
            except (RuntimeError, EOFError):  # a truncated file; a refused one raises UserError
                continue
            if epoch > best_epoch:
                best, best_epoch = d, epoch
    return best


def set_aside_unreadable_list(out: Path) -> Path | None:
    """Rename Ray Train's list of checkpoints in ``out`` when it does not parse (a kill while
    Ray rewrote it leaves it empty or cut short, and Ray's controller then dies restoring the
    run); the workers resume from the newest checkpoint on disk instead
    (:meth:`~effvit_nas.training.loop.Worker.own_checkpoint`). Returns the renamed file, if any."""
    listed = out / CHECKPOINT_DIR / RUN_NAME / RAY_CHECKPOINT_LIST
    try:
        json.loads(listed.read_text())
        return None
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        aside = listed.with_name(f"{listed.name}.unreadable")
        listed.replace(aside)
        return aside


def _prepare_out(out: Path, resume: bool) -> Path | None:
    """Create ``out``; its newest checkpoint, which must exist exactly when resuming."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SettingError("TrainExecution.out", f"{str(out)!r} cannot be created: {e.strerror or e}") from None
    previous = latest_checkpoint(out)
    if previous is not None and not resume:
        raise SettingError(
            "TrainExecution.resume",
            f"is needed to train into {out}, which holds a training run (epoch checkpoints); or choose another output folder",
        )
    if resume and previous is None:
        raise UserError(f"nothing to resume in {out} (no epoch checkpoint)")
    if resume:
        set_aside_unreadable_list(out)
    return previous


# the tensor names and shapes a checkpoint's weights must hold, given the data's class count
Expected = Callable[[int], dict[str, tuple[int, ...]]]


def check_checkpoints(out: Path, num_classes: int, expected: Expected | None = None) -> None:
    """UserError naming the file unless every epoch checkpoint under ``out`` (Ray Train
    restores the newest it finished; a truncated one fails there after a minute of start-up)
    reads back: ``state.pt``, the weights, and (given ``expected``) their names and shapes."""
    runs = out / CHECKPOINT_DIR / RUN_NAME
    for d in sorted(runs.glob("checkpoint_*")) if runs.is_dir() else []:
        if not ((d / STATE_FILE).is_file() and (d / MODEL_FILE).is_file()):
            continue  # a copy a kill cut short: Ray Train never lists it (see latest_checkpoint)
        remedy = f"delete {d} and run again (--resume goes on from the checkpoint before it), or train into another --out"
        # the shapes of the class count the checkpoint was trained for: a resume with other data
        # is then refused by its own, clearer check (_check_inputs) rather than as a misfit
        trained_for = read_state(d / STATE_FILE, remedy).get("num_classes", num_classes)
        for name in (MODEL_FILE, EMA_FILE):
            if (d / name).is_file():
                if expected is None:
                    read_weights(d / name, remedy)
                else:
                    check_weights(d / name, expected(trained_for), remedy)


def model_shapes(arch: ArchConfig) -> Expected:
    """``arch``'s state-dict shapes at a class count, from a model built on the meta device
    (no memory allocated)."""

    def shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
        import torch  # lazy: torch costs seconds to import

        from effvit_nas.model.efficientvit import build_model  # lazy: loads torch

        with torch.device("meta"):
            model = build_model(arch.replace(num_classes=num_classes))
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    return shapes


def _discard(out: Path, created: bool) -> None:
    """After a failed run: the output folder it created, unless it holds a checkpoint to resume
    from. A folder that was there before is never touched."""
    if created and out.is_dir() and latest_checkpoint(out) is None:
        shutil.rmtree(out, ignore_errors=True)


def _check_inputs(dataset: Any, recipe: TrainRecipe, workers: int, previous: Path | None, teacher: Teacher | None, out: Path) -> None:
    """What would otherwise fail inside the workers: class counts, too little data."""
    if previous is not None:
        had = load_state(previous / STATE_FILE).get("num_classes")
        if had is not None and had != dataset.num_classes:
            raise UserError(f"the checkpoint in {out} has {had} classes, the data {dataset.num_classes}; resume with the same data")
    if teacher is not None and teacher.num_classes not in (None, dataset.num_classes):
        raise UserError(f"teacher has {teacher.num_classes} classes, the data {dataset.num_classes}")
    images = dataset.train_count
    if steps_per_epoch(images, recipe.batch, workers) == 0:
        per_worker = recipe.batch // workers
        raise SettingError(
            "TrainRecipe.batch", f"{recipe.batch} is more than {images} training images fill ({workers} worker(s), {per_worker} each)"
        )


def _threads(ray: Any, workers: int, use_gpu: bool, wanted: int | None = None) -> int:
    """torch threads per CPU worker: ``wanted`` if given, else the CPUs free now, shared out (a
    device actor may hold some; asking for more would wait forever); each worker also asks Ray
    for that many, so ``wanted`` may not exceed the CPUs Ray has per worker."""
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if not use_gpu and workers > cpus:
        raise SettingError("TrainExecution.workers", f"{workers} needs {workers} CPUs; Ray has {cpus}")
    if wanted is not None:
        if not use_gpu and wanted * workers > cpus:
            raise SettingError("TrainExecution.threads", f"{wanted} x {workers} worker(s) is more than the {cpus} CPUs Ray has")
        return wanted
    free = int(ray.available_resources().get("CPU", 0))
    if use_gpu:
        return 1
    # Ray counts CPUs, not load: on a shared machine the cores other processes keep busy are
    # left out too (runtime.free_cpus), or the workers' threads would wait on lost cores
    return max(1, min(cpus, free, free_cpus()) // workers)


def _trainer(ray: Any, loop: Callable[[dict[str, Any]], None], config: dict[str, Any], dataset: Any, run: TrainExecution) -> Any:
    """Ray Train's TorchTrainer: ``loop`` with ``config`` (plus the data, once in Ray's object
    store, and the worker's threads) as ``train_loop_config``, ``run`` as its ScalingConfig
    and RunConfig."""
    from ray.train.torch import TorchConfig, TorchTrainer  # lazy: Ray costs seconds to import

    threads = _threads(ray, run.workers, bool(run.use_gpu), run.threads)
    config = {**config, "data_ref": ray.put(dataset), "threads": threads, "loader_workers": run.loader_workers}
    backend = TorchConfig(backend="nccl" if run.use_gpu else "gloo")
    return TorchTrainer(
        loop, train_loop_config=config, torch_config=backend, scaling_config=run.scaling_config(threads), run_config=run.run_config()
    )


# a file system that cannot take the checkpoint: full, over quota, read-only
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _worker_error(error: BaseException, out: Path | None = None) -> BaseException:
    """The UserError a worker raised, if that is what ended the run (or, for a checkpoint that
    could not be written into ``out``, one saying so), else ``error``."""

    failures = getattr(error, "worker_failures", None) or {}  # Ray Train's WorkerGroupError
    causes = [root_cause(error), *(root_cause(e) for _, e in sorted(failures.items()))]
    for cause in causes:
        if isinstance(cause, UserError):
            return cause
    for cause in causes:
        if isinstance(cause, OSError) and cause.errno in _DISK_ERRNOS:
            return UserError(
                f"writing the checkpoint into {out} failed: {os.strerror(cause.errno)}; free space (or choose another --out) "
                "and run the same command again (with --resume once an epoch checkpoint exists)"
            )
    return error


def _fit(trainer: Any, queue: Any, on_progress: Progress | None, out: Path | None = None) -> Any:
    """``trainer.fit()`` in a thread while this one hands the workers' progress events on."""
    box: dict[str, Any] = {}

    def fit() -> None:
        try:
            box["result"] = trainer.fit()
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    def drain() -> None:
        while on_progress is not None and queue is not None and not queue.empty():
            on_progress(queue.get())

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(timeout=0.5)
        drain()
    drain()
    if "error" in box:
        cause = _worker_error(box["error"], out)
        if cause is not box["error"]:
            raise cause from None
        raise box["error"]
    return box["result"]


@dataclass
class FinishedRun:
    """What :func:`execute` leaves: the newest checkpoint folder, its metrics history, the
    data's class count, wall seconds and Ray Train's run folder."""

    final: Path
    history: list[dict[str, Any]]
    num_classes: int
    seconds: float
    ray_path: str | None


def execute(
    loop: Callable[[dict[str, Any]], None],
    config: dict[str, Any],
    data: DataConfig,
    recipe: TrainRecipe,
    run: TrainExecution,
    start: dict[str, Any],
    teacher: Teacher | None = None,
    on_progress: Progress | None = None,
    expected: Expected | None = None,
) -> FinishedRun:
    """Run the Ray Train ``loop`` (``config`` + recipe as its ``train_loop_config``) into the
    resolved ``run.out``; ``start``: the progress header's run description; ``expected``: the
    names and shapes the checkpoints' weights must have (see :func:`check_checkpoints`)."""
    ray = import_ray()
    from ray.util.queue import Queue  # lazy: Ray costs seconds to import

    out = run.out_dir
    created = not out.exists()
    try:
        dataset = training_data(data, run.stream)  # DataError (exit 2) here, not inside a worker
        check_checkpoints(out, dataset.num_classes, expected)  # before Ray Train would restore one
        previous = _prepare_out(out, run.resume)
        _check_inputs(dataset, recipe, run.workers, previous, teacher, out)
        connect(run.ray_address)
        queue = Queue() if on_progress else None
        own = {"resume_from": str(previous) if previous is not None and run.resume else None}
        trainer = _trainer(ray, loop, {**config, "recipe": asdict(recipe), "progress": queue, **own}, dataset, run)
        if on_progress:
            info = {"data": data.source, "img_size": data.img_size, "workers": run.workers, "use_gpu": run.use_gpu}
            on_progress({"start": {**start, **info, "recipe": asdict(recipe)}})
        t0 = time.perf_counter()
        result = _fit(trainer, queue, on_progress, out)
    except BaseException:  # also Ctrl-C: a failed run leaves no empty folder behind
        _discard(out, created)
        raise
    final = latest_checkpoint(out)
    if final is None:
        _discard(out, created)
        raise UserError(f"training ended without a checkpoint in {out}")
    history = load_state(final / STATE_FILE)["history"]
    return FinishedRun(final, history, dataset.num_classes, time.perf_counter() - t0, getattr(result, "path", None))


def train(
    arch: ArchConfig,
    data: DataConfig,
    recipe: TrainRecipe,
    run: TrainExecution = TrainExecution(),
    teacher: Teacher | None = None,
    on_progress: Progress | None = None,
    init_from: str | Path | None = None,
) -> TrainResult:
    """Train ``arch`` on ``data`` with ``recipe`` (resolved for ``run.workers``, see
    :func:`effvit_nas.training.recipe.recipe_for`) as ``run`` says; write ``model.safetensors``,
    ``model_ema.safetensors``, ``config.yaml`` and ``train.json`` into ``run.out``.
    ``init_from``: a trained supernet folder whose weights ``arch`` starts from (fine-tuning)."""
    given = run.out or Path(f"train-{arch.short_hash()}")
    run = run.resolved(given)
    inherited = _inherited(init_from, arch) if init_from is not None else None
    config = {"arch": arch.to_dict(), "teacher": teacher.to_dict() if teacher else None, "init_from": inherited and inherited["supernet"]}
    start = {"config_hash": arch.short_hash(), "out": str(given)}
    done = execute(train_loop, config, data, recipe, run, start, teacher, on_progress, model_shapes(arch))
    _copy_final(done.final, run.out_dir, arch, done.num_classes)
    res = TrainResult.of(done.history, str(run.out), done.seconds)
    extra = {"workers": run.workers, "recipe": asdict(recipe), "data": asdict(data), "teacher": teacher.to_dict() if teacher else None}
    _write_record(run.out_dir / "train.json", arch, res, {**extra, "init_from": inherited}, done.ray_path)
    return res


def _inherited(folder: str | Path, arch: ArchConfig) -> dict[str, str]:
    """The supernet ``arch`` inherits its weights from (UserError when it is no point of its space)."""

    supernet, digest = load_supernet(folder)
    if not supernet.space.contains(arch.replace(num_classes=supernet.space.num_classes)):
        raise UserError(
            f"{arch.short_hash()} is not a point of the space of the supernet in {folder} ({supernet.space.name!r}): nothing to inherit"
        )
    return {"supernet": str(Path(folder).resolve()), "weights_sha256": digest}


def _write_record(path: Path, arch: ArchConfig, res: TrainResult, extra: dict[str, Any], ray_path: str | None) -> None:
    """train.json: the result, how it was trained (``extra``) and Ray Train's run folder."""
    record = {"config_hash": arch.short_hash(), "top1": res.top1, "top1_ema": res.top1_ema, "epochs": res.epochs}
    record |= {"images_per_s": res.images_per_s, **extra, "history": res.history, "ray_result_path": ray_path}
    path.write_text(json.dumps(record, indent=1) + "\n")


def _copy_final(final: Path, out: Path, arch: ArchConfig, num_classes: int) -> None:
    """The last checkpoint's weights into ``out``, with a config.yaml (``arch`` with the data's
    ``num_classes``) so that the folder loads as a model (``model info``, a distillation teacher)."""
    shutil.copy(final / MODEL_FILE, out / MODEL_FILE)
    if (final / EMA_FILE).exists():
        shutil.copy(final / EMA_FILE, out / EMA_FILE)
    if not (out / "config.yaml").exists():
        (out / "config.yaml").write_text(
            f"# EfficientViT {arch.short_hash()} (effvit-nas train)\n" + arch.replace(num_classes=num_classes).to_yaml()
        )


@dataclass(frozen=True)
class StudyRecord:
    """Where :func:`train_model` recorded a trained accuracy: trial ``trial`` of study
    ``study`` in ``storage``; ``error`` says why the study could not be updated (the model
    card and train.json were)."""

    study: str
    trial: int
    storage: str
    error: str | None = None


@dataclass
class TrainedModel:
    result: TrainResult
    recorded: StudyRecord | None  # None unless an export folder was trained


def _export_folder(source: str | Path) -> Path | None:
    """``source`` when it is a folder written by ``export`` (it has proxy.json)."""
    src = Path(source)
    return src if src.is_dir() and (src / "proxy.json").is_file() else None


def train_model(
    source: str | Path,
    data: DataConfig,
    recipe: TrainRecipe,
    run: TrainExecution = TrainExecution(),
    distill: str | Path | None = None,
    storage: str | None = None,
    on_progress: Progress | None = None,
    init_from: str | Path | None = None,
) -> TrainedModel:
    """Train ``source`` (a preset, a config file, or an export folder) with :func:`train`.

    An export folder trains in place unless ``run.out`` is given, and gets the trained top-1
    in its model card (README.md) and in its study's ``trained`` user attr (``storage``:
    default the one the export recorded, else the default storage). ``distill``: a
    :class:`Teacher` folder to distill from; ``init_from``: a trained supernet folder to
    inherit the initial weights from.
    """
    arch = load_config(source)
    export = _export_folder(source)
    if run.out is None:
        run = replace(run, out=export if export is not None else Path(f"train-{arch.short_hash()}"))
    teacher = Teacher.from_folder(distill) if distill is not None else None
    result = train(arch, data, recipe, run, teacher, on_progress, init_from)
    return TrainedModel(result, record_training(export, arch, result, storage) if export is not None else None)


def record_training(folder: Path, arch: ArchConfig, res: TrainResult, storage: str | None = None) -> StudyRecord:
    """Trained accuracy next to the proxy score of export folder ``folder``: in its model card
    and in its study (see :func:`train_model`)."""

    card = folder / "README.md"
    ema = f" (EMA {100 * res.top1_ema:.1f} %)" if res.top1_ema is not None else ""
    if card.exists():
        line = f"top-1 {100 * res.top1:.1f} %{ema} after {res.epochs} epochs (`effvit-nas train`, see train.json); weights: model.safetensors, model_ema.safetensors."
        set_section(card, "## Trained", line)
    proxy = json.loads((folder / "proxy.json").read_text())
    url = storage or _export_storage(folder)
    entry = {"top1": res.top1, "top1_ema": res.top1_ema, "epochs": res.epochs, "hash": arch.short_hash(), "out": res.out}
    try:
        study = load_study(proxy["study"], url)
        trained = dict(study.user_attrs.get("trained", {}))
        trained[str(proxy["trial"])] = entry
        study.set_user_attr("trained", trained)
    except UserError as e:
        return StudyRecord(proxy["study"], proxy["trial"], url, error=str(e))
    return StudyRecord(proxy["study"], proxy["trial"], url)


def _export_storage(folder: Path) -> str:
    """The study storage an export recorded in its index.json (unless masked), else the default."""

    index = folder.parent / "index.json"
    stored = json.loads(index.read_text()).get("storage") if index.exists() else None
    return stored if stored and "***" not in stored else default_storage()


@dataclass
class TrainedTrial:
    """One model :func:`train_top` exported and trained."""

    trial: int
    config_hash: str
    folder: Path
    trained: TrainedModel

    def to_dict(self) -> dict[str, Any]:
        res = self.trained.result
        return {"trial": self.trial, "hash": self.config_hash, "folder": str(self.folder), "top1": res.top1, "top1_ema": res.top1_ema}


def train_top(
    study: str,
    storage: str,
    k: int,
    data: DataConfig,
    recipe: TrainRecipe,
    run: TrainExecution = TrainExecution(),
    out: Path | None = None,
    on_progress: Progress | None = None,
    on_trained: Callable[[TrainedTrial], None] | None = None,
) -> list[TrainedTrial]:
    """Export the ``k`` most accurate Pareto models of ``study`` into ``out`` (default
    ``<study>-models``) and train each in its export folder with :func:`train_model`, on
    ``data`` at the model's own resolution. ``run.out`` must be None (the folders are the
    outputs). ``on_trained`` is called after each model. Empty when nothing is feasible."""

    if run.out is not None:
        raise SettingError("train_top.run", "out must be None: each model trains in its export folder (train_top.out)")
    s = load_study(study, storage)
    chosen = pareto_trials(s)[:k]
    if not chosen:
        return []
    done = []
    for e in export_trials(s, StudyInfo.of(s), storage, chosen, out or Path(f"{study}-models")):
        model_data = replace(data, img_size=load_config(e.folder).img_size)
        trained = train_model(e.folder, model_data, recipe, run, storage=storage, on_progress=on_progress)
        done.append(TrainedTrial(e.trial, e.config_hash, e.folder, trained))
        if on_trained is not None:
            on_trained(done[-1])
    return done
