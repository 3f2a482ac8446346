"""The README's functional-API example runs as written and does what its comments say."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_readme_example_runs():
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    acc = namespace["metrics"].split_accuracies(namespace["logits_fn"], namespace["params"], namespace["split"])
    assert acc["forget_train"] < 0.2 and acc["retain_test"] > 0.85
    ihvp = namespace["ihvp"]
    assert all(bool(abs(leaf).max() < 1e6) for leaf in namespace["jax"].tree.leaves(ihvp))
