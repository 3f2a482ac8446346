"""Forget scenarios written as short strings, as the command line takes them.

``class:3`` (full class 3), ``subclass:rocket`` or ``subclass:69`` (one
CIFAR-100 class inside a CIFAR-20 model), ``random:83`` (83 random training
samples) or ``random:0.00165`` (that fraction), ``class_subset:0:100`` (100
random samples of class 0).
"""

from __future__ import annotations

from jaxunlearn.data import Dataset, ForgetSplit, make_forget_split


def _number(text: str, scenario: str) -> int | float:
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        raise ValueError(f"scenario {scenario!r}: {text!r} is not a number.") from None


def _class(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def parse_scenario(scenario: str, train: Dataset, test: Dataset, *, seed: int = 0) -> ForgetSplit:
    """The :class:`ForgetSplit` that ``scenario`` names (module doc); ``seed`` draws random scenarios."""
    kind, _, rest = scenario.strip().partition(":")
    args = [a for a in rest.split(":") if a]
    kind = kind.lower().replace("-", "_")
    if kind in ("class", "full_class") and len(args) == 1:
        return make_forget_split("full_class", train, test, forget_class=_class(args[0]))
    if kind in ("subclass", "sub_class") and len(args) == 1:
        return make_forget_split("sub_class", train, test, forget_subclass=_class(args[0]))
    if kind == "random" and len(args) == 1:
        value = _number(args[0], scenario)
        size = {"fraction": value} if isinstance(value, float) else {"num_forget": value}
        return make_forget_split("random", train, test, seed=seed, **size)
    if kind == "class_subset" and len(args) == 2:
        return make_forget_split(
            "class_subset", train, test, forget_class=_class(args[0]), num_forget=int(args[1]), seed=seed
        )
    raise ValueError(
        f"cannot read scenario {scenario!r}; write class:C, subclass:C, random:K (a count), random:F (a fraction) "
        "or class_subset:C:K."
    )
