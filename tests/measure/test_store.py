import math
import threading

import pytest

from effvit_nas.errors import SettingError
from effvit_nas.measure.actor import Slot, get_worker, live_worker, measure_configs
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.store import MeasurementStore, StorageError
from tests.support import FAST_BENCH

FAST = {**FAST_BENCH, "min_iters": 5}


def test_hit_miss_and_fresh(tmp_path, tiny, cpu_worker):
    store = MeasurementStore(f"sqlite:///{tmp_path}/m.db")
    settings = BenchSettings(batch=4, **FAST)
    other = tiny.replace(depths=(1, 1, 2))

    first = measure_configs([tiny], "cpu", settings, store, worker=cpu_worker)
    assert not first[0].cached and store.count() == 1

    again = measure_configs([tiny, other], "cpu", settings, store, worker=cpu_worker)
    assert again[0].cached and not again[1].cached and store.count() == 2
    assert again[0].throughput == first[0].throughput

    # another protocol is another key
    measure_configs([tiny], "cpu", BenchSettings(batch=2, **FAST), store, worker=cpu_worker)
    assert store.count() == 3

    fresh = measure_configs([tiny], "cpu", settings, store, fresh=True, worker=cpu_worker)
    assert not fresh[0].cached and store.count() == 3
    listed = store.all()  # oldest first; the fresh one replaced tiny's first row, so it is newest
    assert [(m.config_hash, p) for _, p, m in listed] == [
        (other.short_hash(), settings.key()),
        (tiny.short_hash(), BenchSettings(batch=2, **FAST).key()),
        (tiny.short_hash(), settings.key()),
    ]
    assert listed[-1][2].throughput == fresh[0].throughput and {d for d, _, _ in listed} == {fresh[0].device["id"]}
    stored = store.get(tiny.short_hash(), fresh[0].device["id"], settings.key())
    assert stored.cached and stored.throughput == fresh[0].throughput
    assert fresh[0].started > first[0].finished  # measured anew (two real figures may happen to be equal)


def test_store_reopens_and_survives(tmp_path, tiny, cpu_worker):
    """Measured the way the CLI does (no handle passed: the named actor is looked up)."""
    url = f"sqlite:///{tmp_path}/m.db"
    m = measure_configs([tiny], "cpu", BenchSettings(batch=4, **FAST), MeasurementStore(url))[0]
    reopened = MeasurementStore(url).get(tiny.short_hash(), m.device["id"], BenchSettings(batch=4, **FAST).key())
    assert reopened is not None and reopened.config == tiny.to_dict() and reopened.settings["batch"] == 4
    assert math.isnan(reopened.started) and m.finished <= reopened.finished < m.finished + 60


def test_schema_version_is_checked(tmp_path):
    url = f"sqlite:///{tmp_path}/v.db"
    store = MeasurementStore(url)
    with store.engine.begin() as c:
        c.exec_driver_sql("UPDATE effvit_schema SET value='999' WHERE key='measurements_schema'")
    with pytest.raises(StorageError, match="schema v999"):
        MeasurementStore(url)


@pytest.mark.parametrize("url, message", [("nonsense", "invalid storage URL"), ("nosuchdb://x", "invalid storage URL")])
def test_bad_urls(url, message):
    with pytest.raises(StorageError, match=message):
        MeasurementStore(url)


def test_device_actor_never_times_two_configs_at_once(tiny, cpu_worker):
    """Two callers, each with its own handle, submit at the same time: the timings must not overlap."""
    from effvit_nas.runtime import import_ray

    ray = import_ray()

    from dataclasses import asdict

    settings = BenchSettings(batch=4, **FAST)
    results = []

    def call(cfg):
        worker = get_worker("cpu", settings)  # the same named actor for both (and as cpu_worker)
        results.append(ray.get(worker.measure.remote(cfg.to_dict(), asdict(settings))))

    threads = [threading.Thread(target=call, args=(c,)) for c in (tiny, tiny.replace(depths=(1, 2, 1)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b = sorted(results, key=lambda m: m.started)
    assert a.finished <= b.started


def test_a_named_actor_found_as_it_ends_is_replaced(local_ray):
    """A handle found by name does not keep an actor alive: once its creating handle is
    dropped (a command's earlier step), calls to it fail with "all references to the actor were
    removed" (seen in `export --remeasure` of a 2-target study). live_worker replaces it."""
    import time

    settings, slot = BenchSettings(batch=4, **FAST), Slot(index=7)  # a name no other test uses
    creator = get_worker("cpu", settings, None, slot)
    local_ray.get(creator.__ray_ready__.remote())
    found = get_worker("cpu", settings, None, slot)
    assert found._actor_id == creator._actor_id
    del creator
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until Ray has ended it
        try:
            local_ray.get(found.__ray_ready__.remote())
            time.sleep(0.1)
        except local_ray.exceptions.RayActorError as e:
            assert "references to the actor were removed" in str(e)
            break
    else:
        raise AssertionError("the actor outlived its creating handle")
    handle, fp = live_worker("cpu", settings, None, slot, found)
    assert handle._actor_id != found._actor_id and local_ray.get(handle.fingerprint.remote())["id"] == fp["id"]
    local_ray.kill(handle)


def test_more_threads_than_ray_has_cpus_names_the_setting(local_ray):
    cpus = int(local_ray.cluster_resources()["CPU"])
    with pytest.raises(SettingError) as e:
        get_worker("cpu", BenchSettings(batch=4, threads=cpus + 1))
    assert e.value.setting == "BenchSettings.threads" and f"more than the {cpus} CPUs" in str(e.value)
    assert "--" not in str(e.value)


def test_a_store_written_before_window_statistics_is_upgraded_in_place(tmp_path, tiny, cpu_worker):
    """A v1 table without the window columns (as effvit-nas 0.1 wrote it) gains them on open;
    its rows read back with NaN intervals, and new figures keep their interval and counts."""
    import sqlite3

    db = tmp_path / "old.db"
    MeasurementStore(f"sqlite:///{db}")
    con = sqlite3.connect(db)
    for column in ("ci_low", "ci_high", "windows", "disturbed"):
        con.execute(f"ALTER TABLE effvit_measurements DROP COLUMN {column}")
    con.execute(
        "INSERT INTO effvit_measurements (config_hash, device_id, protocol_key, throughput, q1, q3, cv, iterations, batch, seconds, "
        "note, settings_json, device_json, config_json, measured_at) VALUES ('old', 'dev', 'p', 100, 90, 110, 0.1, 10, 4, 1, '', "
        "'{}', '{\"id\": \"dev\"}', '{}', '2026-01-01 00:00:00')"
    )
    con.commit()
    con.close()

    store = MeasurementStore(f"sqlite:///{db}")
    old = store.get("old", "dev", "p")
    assert old.throughput == 100 and math.isnan(old.ci_low) and old.windows == 0
    settings = BenchSettings(batch=4, **FAST)
    new = measure_configs([tiny], "cpu", settings, store, worker=cpu_worker)[0]
    back = store.get(tiny.short_hash(), new.device["id"], settings.key())
    assert back.windows == new.windows > 0 and back.disturbed == new.disturbed
    assert back.ci_low == new.ci_low or (math.isnan(back.ci_low) and math.isnan(new.ci_low))


@pytest.mark.parametrize("url", ["sqlite:////no/such/dir/x.db", "postgresql+psycopg://effvit@127.0.0.1:1/effvit"])
def test_unreachable_storage_is_one_line(url):
    """A folder that does not exist; a server that does not answer (nothing listens on port 1)."""
    with pytest.raises(StorageError, match=r"^cannot open storage '.+': \S") as e:
        MeasurementStore(url)
    assert "\n" not in str(e.value)


def test_an_unreachable_server_is_named_without_its_password():
    with pytest.raises(StorageError) as e:
        MeasurementStore("postgresql+psycopg://effvit:s3cret@127.0.0.1:1/effvit")
    assert "s3cret" not in str(e.value)


def test_a_cpu_actor_reserves_the_threads_it_times_with_under_its_own_name():
    """A 2-thread measurement gets an actor holding 2 Ray CPUs, never the 1-CPU actor of the
    same device found by name (Ray would then schedule other work on the second core)."""
    # private: the Ray options an actor is started with, without starting one per thread count
    from effvit_nas.measure.actor import Slot, _actor_options

    one, two = (_actor_options("cpu", False, BenchSettings(batch=1, threads=n), Slot()) for n in (1, 2))
    assert (one["num_cpus"], two["num_cpus"]) == (1, 2) and one["name"] != two["name"]
    gpu = _actor_options("cuda:0", True, BenchSettings(batch=1, threads=2), Slot())  # a GPU actor: 1 CPU, 1 GPU
    assert (gpu["num_cpus"], gpu["num_gpus"], gpu["name"]) == (1, 1, "effvit-device-cuda:0")


def test_an_actor_starts_with_the_pages_it_times_with_under_its_own_name():
    """glibc reads its tunables when a process starts: a huge-pages actor is started with them,
    and a system-pages measurement never reuses it by name."""
    from effvit_nas.measure.actor import Slot, _actor_options

    huge, system = (_actor_options("cpu", False, BenchSettings(batch=1, pages=p), Slot()) for p in ("huge", "system"))
    assert "glibc.malloc.hugetlb=1" in huge["runtime_env"]["env_vars"]["GLIBC_TUNABLES"]
    assert "runtime_env" not in system and huge["name"] != system["name"]


def _figure(config_hash: str, throughput: float):
    from effvit_nas.measure.settings import Measurement

    return Measurement(config_hash, throughput, throughput, throughput, 0.0, 5, 4, 1.0, {}, {"id": "dev"}, {})


def test_a_claim_keeps_a_second_driver_off_the_key_until_released(tmp_path):
    """Two drivers sharing a store: while the first holds the claim on a key the second cannot
    take it (it waits for the first's figure); released, the key is free again."""
    url = f"sqlite:///{tmp_path}/c.db"
    first, second = MeasurementStore(url), MeasurementStore(url)
    assert first.claim("abc", "dev", "p")
    assert not first.claim("abc", "dev", "p")  # one claim per key, this process included
    first.put(_figure("abc", 123.0), "p")
    assert second.get("abc", "dev", "p").throughput == 123.0  # what the second waits for
    first.release("abc", "dev", "p")
    assert second.claim("abc", "dev", "p")


def test_a_claim_left_by_a_dead_process_or_too_old_is_taken_over(tmp_path):
    """A driver killed mid-measurement leaves its claim: on this host a dead owner frees it at
    once (a resumed search must not wait), from another host only its age does."""
    import datetime
    import socket
    import subprocess
    import sys

    from sqlalchemy.orm import Session

    from effvit_nas.measure.store import CLAIM_STALE_S, _ClaimRow

    store = MeasurementStore(f"sqlite:///{tmp_path}/c.db")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = datetime.datetime.now(datetime.UTC)
    old = now - datetime.timedelta(seconds=CLAIM_STALE_S + 60)
    with Session(store.engine) as s, s.begin():
        s.add(_ClaimRow(key="a/dev/p", owner=f"{socket.gethostname()}:{dead.pid}", claimed_at=now))
        s.add(_ClaimRow(key="b/dev/p", owner="elsewhere:1", claimed_at=old))
        s.add(_ClaimRow(key="c/dev/p", owner="elsewhere:1", claimed_at=now))
    for key in ("a", "b"):
        assert store.claim(key, "dev", "p")  # ours to measure
        store.release(key, "dev", "p")
    assert store.claim("a", "dev", "p") and store.claim("b", "dev", "p")  # and the claims were dropped
    assert not store.claim("c", "dev", "p")  # a live claim from another host is respected
