"""How event values become tracker input (compiled: C types in values.pxd)."""

from __future__ import annotations

from typing import Any

_NUMERIC = (int, float)


def kind_of(value: object) -> str:
    """The kind a non-null feature value implies (booleans are categories)."""
    return "numeric" if type(value) in _NUMERIC else "categorical"


def categorical(value: object) -> str:
    """A categorical value as the category name the trackers count."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value if isinstance(value, str) else repr(value)


def prediction_value(prediction: Any) -> float | int | str:
    """The watched value of a prediction: class probabilities are watched through their
    argmax (ties: the greatest class name)."""
    if isinstance(prediction, dict):
        return _argmax(prediction, checked=False)  # type: ignore[return-value]
    return prediction  # type: ignore[no-any-return]


def _argmax(prediction: dict[str, Any], *, checked: bool) -> str | None:
    """The class of the highest probability (ties: the greatest class name); with
    ``checked``, None unless every probability is an int or a float. One loop: about four
    times cheaper than ``max`` with a key function (docs/benchmarks.md)."""
    best_name: str | None = None
    best: Any = None
    for name, prob in prediction.items():
        if checked and type(prob) is not float and type(prob) is not int:
            return None
        if best_name is None or prob > best or (prob == best and name > best_name):
            best_name, best = name, prob
    return best_name


def checked_argmax(prediction: dict[str, Any]) -> str | None:
    """``prediction_value`` of valid class probabilities; None if they are not valid
    (the full parser then says why)."""
    return _argmax(prediction, checked=True)
