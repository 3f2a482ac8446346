"""PyTorch state_dict import: imported flax models against an independent numpy NCHW forward pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models_numpy_reference as ref
from jaxunlearn import models as M
from jaxunlearn.models import torch_import as ti

RTOL, ATOL = 2e-4, 2e-4


def _imported(module, input_shape, seed=0):
    template = M.abstract_variables(module, input_shape)
    sd = ref.random_state_dict(ti.torch_names(module, template), seed=seed)
    return sd, ti.load_torch_state_dict(module, template, sd)


def _images(shape, batch=3, seed=1):
    x = np.random.default_rng(seed).standard_normal((batch,) + shape).astype(np.float32)
    return x, x.transpose(0, 3, 1, 2).astype(np.float64)


def test_mlp_import_matches_numpy_on_images():
    module = M.MLP(num_classes=10, hidden=(32, 16))
    sd, variables = _imported(module, (6, 6, 2))
    assert sorted(sd) == sorted(f"linear{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias"))
    x, x_nchw = _images((6, 6, 2))  # 2 channels: NCHW vs NHWC flatten order matters
    got = module.apply(variables, x)
    np.testing.assert_allclose(got, ref.mlp(sd, x_nchw, 3), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape,padding", [((32, 32, 1), 0), ((20, 24, 3), 0), ((8, 8, 1), 2)])
def test_lenet_import_matches_numpy(shape, padding):
    module = M.LeNet(num_classes=10, padding=padding)
    sd, variables = _imported(module, shape)
    assert sorted(sd) == sorted(f"{n}.{p}" for n in ("conv1", "conv2", "fc1", "fc2", "fc3") for p in ("weight", "bias"))
    x, x_nchw = _images(shape)
    np.testing.assert_allclose(module.apply(variables, x), ref.lenet(sd, x_nchw, padding), rtol=RTOL, atol=ATOL)


def test_lenet_first_linear_width_is_the_originals_at_32x32():
    names = ti.torch_names(M.LeNet(), M.abstract_variables(M.LeNet(), (32, 32, 1)))
    assert names["fc1.weight"].torch_shape == (120, 5 * 5 * 16)
    assert names["conv1.weight"].torch_shape == (6, 1, 5, 5)


def test_small_cnn_import_matches_numpy():
    module = M.SmallCNN(num_classes=10, channels=8, hidden=24)
    sd, variables = _imported(module, (18, 22, 3))  # non-square: the (C, H, W) flatten must hold
    x, x_nchw = _images((18, 22, 3))
    np.testing.assert_allclose(module.apply(variables, x), ref.small_cnn(sd, x_nchw), rtol=RTOL, atol=ATOL)
    full = ti.torch_names(M.SmallCNN(), M.abstract_variables(M.SmallCNN(), (32, 32, 3)))
    assert full["fc1.weight"].torch_shape == (384, 5 * 5 * 64)


def test_resnet_import_matches_numpy_eval_and_train():
    blocks = (2, 2, 2, 2)
    module = M.ResNet18(num_classes=7, stage_widths=(4, 8, 8, 16), blocks=blocks)
    sd, variables = _imported(module, (8, 8, 3))
    assert "conv1.0.weight" in sd and "conv1.1.running_var" in sd
    assert "conv2_x.0.residual_function.3.weight" in sd and "conv2_x.0.shortcut.0.weight" not in sd
    assert "conv3_x.0.shortcut.1.running_mean" in sd and "conv3_x.1.shortcut.0.weight" not in sd
    assert ("conv2_x.1.residual_function.0.weight" in sd) == (blocks[0] == 2)
    x, x_nchw = _images((8, 8, 3), batch=4)
    np.testing.assert_allclose(module.apply(variables, x, train=False), ref.resnet18(sd, x_nchw), rtol=RTOL, atol=ATOL)
    # train mode: batch statistics, and the running statistics move by momentum 0.1
    expected_stats: dict = {}
    expected = ref.resnet18(sd, x_nchw, train=True, new_stats=expected_stats)
    logits, state = M.apply_model(module, variables["params"], {"batch_stats": variables["batch_stats"]}, x, train=True)
    np.testing.assert_allclose(logits, expected, rtol=1e-3, atol=1e-3)
    exported = ti.export_torch_state_dict(module, {"params": variables["params"], **state})
    for key, value in expected_stats.items():
        np.testing.assert_allclose(exported[key], value, rtol=1e-3, atol=1e-4, err_msg=key)


def test_full_size_resnet18_at_32x32():
    module = M.ResNet18(num_classes=100)
    template = M.abstract_variables(module, (32, 32, 3))
    names = ti.torch_names(module, template)
    assert sum(int(np.prod(d.torch_shape)) for k, d in names.items() if "running" not in k) == 11_220_132
    sd = ref.random_state_dict(names, seed=3)
    variables = ti.load_torch_state_dict(module, template, sd)
    x, _ = _images((32, 32, 3), batch=2)
    logits = jax.jit(lambda v, xx: module.apply(v, xx))(variables, x)
    assert logits.shape == (2, 100) and bool(jnp.all(jnp.isfinite(logits)))


def test_vgg_import_matches_numpy_with_adaptive_pool():
    cfg = (4, "M", 6, 6, "M", "M")
    module = M.VGG(num_classes=5, cfg=cfg, pool_size=(3, 3), classifier_width=16, backbone_classes=12)
    for shape in ((8, 8, 3), (20, 12, 3)):  # 1x1 map replicated to 3x3; 2x1 map pooled unevenly to 3x3
        sd, variables = _imported(module, shape)
        assert {"model.features.0.weight", "model.features.3.bias", "model.features.5.weight",
                "model.classifier.6.weight", "fc.weight"} <= set(sd)
        x, x_nchw = _images(shape)
        got = module.apply(variables, x, train=False)
        np.testing.assert_allclose(got, ref.vgg(sd, x_nchw, cfg, (3, 3)), rtol=RTOL, atol=ATOL)


def test_vgg11_names_and_size_match_torchvision():
    module = M.VGG(num_classes=100)
    names = ti.torch_names(module, M.abstract_variables(module, (32, 32, 3)))
    convs = sorted(int(k.split(".")[2]) for k in names if k.startswith("model.features") and k.endswith("weight"))
    assert convs == [0, 3, 6, 8, 11, 13, 16, 18]
    assert names["model.classifier.0.weight"].torch_shape == (4096, 512 * 7 * 7)
    assert names["fc.weight"].torch_shape == (100, 1000)
    assert sum(int(np.prod(d.torch_shape)) for d in names.values()) == 132_863_336 + 1000 * 100 + 100


def test_import_errors_name_the_key():
    module = M.LeNet(num_classes=10)
    template = M.abstract_variables(module, (32, 32, 1))
    sd = ref.random_state_dict(ti.torch_names(module, template))
    missing = {k: v for k, v in sd.items() if k != "fc2.bias"}
    with pytest.raises(ValueError, match="fc2.bias"):
        ti.load_torch_state_dict(module, template, missing)
    wrong = dict(sd, **{"fc3.weight": np.zeros((84, 10), np.float32)})
    with pytest.raises(ValueError, match=r"fc3.weight.*\(10, 84\)"):
        ti.load_torch_state_dict(module, template, wrong)
    extra = dict(sd, **{"fc4.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(ValueError, match="fc4.weight"):
        ti.load_torch_state_dict(module, template, extra)
    ti.load_torch_state_dict(module, template, extra, strict=False)
    with pytest.raises(TypeError, match="ViT"):
        ti.torch_names(M.ViT(), M.abstract_variables(M.ViT(), (8, 8, 1)))


def test_dataparallel_prefix_num_batches_tracked_npz_and_roundtrip(tmp_path):
    module = M.ResNet18(num_classes=3, stage_widths=(2, 2, 4, 4))
    template = M.abstract_variables(module, (8, 8, 3))
    sd = ref.random_state_dict(ti.torch_names(module, template), seed=5)
    sd["conv1.1.num_batches_tracked"] = np.array(7)
    wrapped = {"module." + k: v for k, v in sd.items()}
    np.savez(tmp_path / "sd.npz", **wrapped)
    variables = ti.load_torch_state_dict(module, template, ti.read_npz(tmp_path / "sd.npz"))
    back = ti.export_torch_state_dict(module, variables)
    assert set(back) == set(sd) - {"conv1.1.num_batches_tracked"}
    for k, v in back.items():
        np.testing.assert_array_equal(v, sd[k])
    assert variables["batch_stats"]["conv1_1"]["var"].shape == (2,)


def test_optional_torch_parity():
    torch = pytest.importorskip("torch")
    tnn = torch.nn

    class TorchLeNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = tnn.Conv2d(1, 6, 5), tnn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = tnn.Linear(400, 120), tnn.Linear(120, 84), tnn.Linear(84, 10)

        def forward(self, x):
            x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
            x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
            x = torch.relu(self.fc1(x.view(len(x), -1)))
            return self.fc3(torch.relu(self.fc2(x)))

    net = TorchLeNet().eval()
    module = M.LeNet()
    variables = ti.load_torch_state_dict(
        module, M.abstract_variables(module, (32, 32, 1)), {k: v.detach().numpy() for k, v in net.state_dict().items()}
    )
    x, x_nchw = _images((32, 32, 1))
    expected = net(torch.from_numpy(x_nchw.astype(np.float32))).detach().numpy()
    np.testing.assert_allclose(module.apply(variables, x), expected, rtol=RTOL, atol=ATOL)


def test_imported_params_never_share_memory_with_the_source_arrays():
    """Mutating the state_dict's arrays in place after the import leaves the params unchanged (a small
    ResNet block covers biases, batch-norm scales, biases and running statistics)."""
    module = M.ResNet18(num_classes=7, stage_widths=(4, 4, 4, 4), blocks=(1, 1, 1, 1))
    sd, _ = _imported(module, (8, 8, 3))
    sd = {k: np.asarray(v, np.float32) for k, v in sd.items()}
    variables = ti.load_torch_state_dict(module, M.abstract_variables(module, (8, 8, 3)), sd)
    before = jax.tree.map(lambda a: np.array(a, copy=True), variables)
    for value in sd.values():
        value[...] = 123.0  # what a torch optimizer's in-place step does to shared storage
    jax.tree.map(np.testing.assert_array_equal, variables, before)
