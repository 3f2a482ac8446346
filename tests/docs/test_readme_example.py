"""The README's functional-API example runs as written and does what its comments say."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_readme_examples_run(capsys):
    """Both examples, as written, in one namespace: the functional API, then the method contract (jit, two
    requests, an already-forgotten index, vmap over keys)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2, "README lost its functional-API or method-contract example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    acc = namespace["metrics"].split_accuracies(namespace["logits_fn"], namespace["params"], namespace["split"])
    assert acc["forget_train"] < 0.2 and acc["retain_test"] > 0.85
    ihvp = namespace["ihvp"]
    assert all(bool(abs(leaf).max() < 1e6) for leaf in namespace["jax"].tree.leaves(ihvp))

    exec(compile(blocks[1], "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert "forgotten by an earlier request" in capsys.readouterr().out
    leaves = namespace["jax"].tree.leaves(namespace["many"])
    assert all(leaf.shape[0] == 4 for leaf in leaves)
    assert float(abs(leaves[0][0] - leaves[0][1]).max()) > 0  # different keys, different fine-tuned models
