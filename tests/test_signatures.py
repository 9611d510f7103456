"""lit_gen.signatures: a constructor's signature is the schema its config section is checked against."""

from typing import Literal

import pytest

from lit_gen.errors import ConfigError
from lit_gen.signatures import check_arguments, coerce, plain


class Net:
    def __init__(self, width: int, lr: float = 1e-3, mults: tuple[int, ...] = (1, 2),
                 mode: Literal["a", "b"] = "a", extra: dict | None = None) -> None:
        pass


def test_defaults_are_filled_and_values_converted_to_the_annotated_types():
    out = check_arguments("model", Net, {"width": 8, "lr": 1, "mults": [1, 2, 4]})
    assert out == {"width": 8, "lr": 1.0, "mults": (1, 2, 4), "mode": "a", "extra": None}
    assert isinstance(out["lr"], float)


@pytest.mark.parametrize("given, message", [
    ({}, "model.width is required by Net"),
    ({"width": 8, "widht": 3}, "model.widht: unknown key for Net"),
    ({"width": "8"}, "model.width: expected an integer, got '8'"),
    ({"width": 8, "mode": "c"}, "model.mode: expected one of 'a', 'b'"),
    ({"width": 8, "mults": 3}, "model.mults: expected"),
    ({"width": True}, "model.width: expected an integer"),
])
def test_mistakes_name_the_key_and_what_was_expected(given, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        check_arguments("model", Net, given)


def test_fixed_length_tuples_and_unions():
    assert coerce("x", [0.9, 0.99], tuple[float, float]) == (0.9, 0.99)
    with pytest.raises(ConfigError, match="a list of 2 values"):
        coerce("x", [0.9], tuple[float, float])
    assert coerce("x", None, int | None) is None
    assert coerce("x", 3, int | str) == 3


def test_plain_gives_yaml_ready_containers():
    assert plain({"a": (1, 2), 3: [{"b": (4,)}]}) == {"a": [1, 2], "3": [{"b": [4]}]}
