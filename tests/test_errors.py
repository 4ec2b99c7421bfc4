import pickle

from effvit_nas.errors import SettingError, UserError


def test_setting_error_names_the_setting_and_renames_for_a_front_end():
    e = SettingError("BenchSettings.batch", "must be positive, got 0")
    assert str(e) == "BenchSettings.batch must be positive, got 0" and e.field == "batch"
    assert isinstance(e, UserError) and str(e.named("--batch")) == "--batch must be positive, got 0"


def test_setting_error_survives_pickling():
    """Ray sends errors raised in its workers back pickled; the setting must survive."""
    e = pickle.loads(pickle.dumps(SettingError("ShortTrainSettings.steps", "must be positive, got -1")))
    assert (
        isinstance(e, SettingError)
        and e.setting == "ShortTrainSettings.steps"
        and str(e.named("--steps")) == "--steps must be positive, got -1"
    )
