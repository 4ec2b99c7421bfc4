import importlib
import pkgutil

import effvit_nas


def test_public_names_resolve_even_after_every_module_is_imported():
    """A subpackage named like a public function would shadow it once imported."""
    for m in pkgutil.walk_packages(effvit_nas.__path__, "effvit_nas."):
        if not m.name.endswith("__main__"):
            importlib.import_module(m.name)
    for name in effvit_nas.__all__:
        obj = getattr(effvit_nas, name)
        assert not hasattr(obj, "__path__"), f"effvit_nas.{name} is a package, not the public {name}"
    assert callable(effvit_nas.train) and callable(effvit_nas.run_search) and callable(effvit_nas.build_model)
