"""The stores against a real PostgreSQL server (started by the tests, see conftest)."""

from sqlalchemy import inspect

from effvit_nas.measure.actor import measure_configs
from effvit_nas.measure.devices import fingerprint
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.store import MeasurementStore

FAST = dict(warmup_s=0.2, measure_s=0.5, min_iters=5)


def test_measurement_store_on_postgres(postgres_url, tiny, local_ray):
    store = MeasurementStore(postgres_url)
    assert store.engine.dialect.name == "postgresql"
    assert {"effvit_measurements", "effvit_schema"} <= set(inspect(store.engine).get_table_names())
    settings = BenchSettings(batch=4, **FAST)
    before = store.count()
    # the server lives for the session: an earlier test may have stored this key already
    had = store.get(tiny.short_hash(), fingerprint("cpu")["id"], settings.key()) is not None
    first = measure_configs([tiny], "cpu", settings, store, fresh=True)[0]
    again = measure_configs([tiny], "cpu", settings, MeasurementStore(postgres_url))[0]
    assert again.cached and again.throughput == first.throughput
    # exactly one new row for a new key, none for a re-measured one (it replaces its row)
    assert store.count() == before + (not had)
