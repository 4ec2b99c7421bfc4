import pytest
import torch

from effvit_nas.measure.devices import DeviceError, fingerprint, local_devices, parse_device, resolve_local


@pytest.mark.parametrize(
    "text, kind, index, name",
    [
        ("cpu", "cpu", None, None),
        ("CPU", "cpu", None, None),
        ("auto", "auto", None, None),
        ("cuda", "cuda", None, None),
        ("cuda:3", "cuda", 3, None),
        ("v100", "cuda", None, "v100"),
        ("A100", "cuda", None, "a100"),
        ("h100", "cuda", None, "h100"),
        ("rtx4090", "cuda", None, "rtx4090"),
    ],
)
def test_parse_device(text, kind, index, name):
    spec = parse_device(text)
    assert (spec.kind, spec.index, spec.name) == (kind, index, name)


def test_named_devices_map_to_ray_accelerator_types():
    assert parse_device("v100").ray_accelerator_type == "V100"
    assert parse_device("cuda").ray_accelerator_type is None


@pytest.mark.parametrize("text", ["", "gpu please", "cuda:x", "cuda:-1", "tpu", "???"])
def test_unknown_devices_are_rejected(text):
    with pytest.raises(DeviceError, match="unknown device"):
        parse_device(text)


def test_resolve_cpu_and_auto():
    assert resolve_local(parse_device("cpu")) == "cpu"
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert resolve_local(parse_device("auto")) == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
@pytest.mark.parametrize("text", ["cuda", "cuda:0", "v100", "h100"])
def test_missing_gpu_lists_what_is_available(text):
    with pytest.raises(DeviceError) as e:
        resolve_local(parse_device(text))
    msg = str(e.value)
    assert "not available" in msg and "cpu (" in msg and "\n" not in msg


def test_cpu_fingerprint_is_stable_and_descriptive():
    a, b = fingerprint("cpu"), fingerprint("cpu")
    assert a == b and len(a["id"]) == 12
    assert a["kind"] == "cpu" and a["name"] == local_devices()[0][1]
    assert a["torch"] == torch.__version__ and a["logical_cores"] >= 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_named_gpu_resolves_to_its_cuda_index():
    name = torch.cuda.get_device_name(0).lower()
    token = next(t for t in name.replace("-", " ").split() if any(c.isdigit() for c in t))
    assert resolve_local(parse_device(token)).startswith("cuda:")
    fp = fingerprint("cuda:0")
    assert fp["kind"] == "cuda" and fp["driver"] and fp["cuda"]


def test_a_device_worker_on_a_node_without_the_device_names_the_node():
    """What a node that claims a GPU type it cannot use raises when the device actor starts
    there (the driver unwraps it from Ray's ActorDiedError into one line)."""
    import torch

    from effvit_nas.measure.actor import DeviceWorker
    from effvit_nas.runtime import import_ray

    if torch.cuda.is_available():
        pytest.skip("this machine has the device")
    with pytest.raises(DeviceError, match=r"not available here.*\(Ray node [\d.]+(, id [0-9a-f]{8})?\)$") as e:
        DeviceWorker("v100")
    assert import_ray().util.get_node_ip_address() in str(e.value) and "\n" not in str(e.value)
