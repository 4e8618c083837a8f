"""What each model option accepts, checked where the options are defined.

The representation's constructor, the hosts' adapters and the config check of ``main.py`` all use
these rules, so a wrong option gives the same one-line :class:`OptionError` naming the option from
the Python API and from a config file (``model.hidden_channels must be an even positive integer,
got 'abc'``) instead of a failure deep inside a layer's constructor.

``hidden_channels`` must be even because the message block's MLP (F -> F/2 -> 3F) and the energy
head's MLP (F -> F/2 -> 1) have F/2 hidden units, as in the paper; an odd F would silently round
that width down (and F = 1 would leave no hidden unit at all).

The sizes together must give a model of at most :data:`MAX_PARAMETERS` parameters, estimated from
the options before any tensor is allocated (:func:`estimated_parameters`): a width of 10**12 is one
line, not an allocation failure deep inside a layer or the machine running out of memory.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from leignn_plugin.core.radial import ENVELOPE_NAMES, RBF_NAMES
from leignn_plugin.core.update import NODE_UPDATES
from leignn_plugin.errors import UsageError


class OptionError(UsageError, ValueError):
    """A model option with the wrong type or value, or one the model does not have; one line naming it."""


@dataclass(frozen=True)
class Rule:
    """What one option accepts: ``accepts(value)``, and ``requirement`` in words ("a positive integer").

    ``choices`` (when set) gives the accepted names, read when a value is checked (hosts may register
    names after import), so the message lists them and a misspelt name gets the closest one.
    """

    requirement: str
    accepts: Callable[[object], bool]
    choices: Callable[[], tuple[str, ...]] | None = None

    def check(self, key: str, value: object) -> None:
        """Raise :class:`OptionError` naming ``key`` when ``value`` is not accepted."""
        if self.accepts(value):
            return
        requirement, hint = self.requirement, ""
        if self.choices is not None:
            requirement = f"one of {', '.join(self.choices())}"
            best = closest(value, self.choices()) if isinstance(value, str) else None
            hint = f"; did you mean {best}?" if best else ""
        raise OptionError(f"{key} must be {requirement}, got {value!r}{hint}")


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like ``name`` (difflib's ratio of at least 0.6), or None."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def is_integer(value: object) -> bool:
    """An integer that is not a bool (YAML's ``true`` must not pass as 1)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A finite real number that is not a bool (an integer counts: YAML reads ``6`` as int)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def positive_integer() -> Rule:
    return Rule("a positive integer", lambda v: is_integer(v) and int(v) > 0)


def even_positive_integer() -> Rule:
    return Rule("an even positive integer", lambda v: is_integer(v) and int(v) > 0 and int(v) % 2 == 0)


def positive_number() -> Rule:
    return Rule("a positive number", lambda v: is_number(v) and float(v) > 0)


def boolean(optional: bool = False) -> Rule:
    """true or false (or, with ``optional``, null)."""
    if optional:
        return Rule("true, false or null", lambda v: v is None or isinstance(v, bool))
    return Rule("true or false", lambda v: isinstance(v, bool))


def one_of(names: Callable[[], tuple[str, ...]]) -> Rule:
    """One of ``names()`` (a function, so hosts may register further names after import)."""
    return Rule("one of the known names", lambda v: isinstance(v, str) and v in names(), names)


REPRESENTATION_OPTIONS: dict[str, Rule] = {
    "hidden_channels": even_positive_integer(),
    "num_layers": positive_integer(),
    "num_rbf": positive_integer(),
    "cutoff": positive_number(),
    "max_neighbors": positive_integer(),
    "rbf": one_of(lambda: RBF_NAMES),
    "envelope": one_of(lambda: ENVELOPE_NAMES),
    "envelope_exponent": positive_integer(),
    "num_elements": positive_integer(),
    "regress_forces": boolean(),
    "direct_forces": boolean(),
    "regress_stress": boolean(),
    "vectors_out": boolean(optional=True),
    "virtual_node": boolean(),
    "node_update": one_of(lambda: NODE_UPDATES),
}
"""Every option of :class:`~leignn_plugin.core.representation.LEIGNNRepresentation` and its rule
(``tests/test_input_validation.py`` checks these are exactly the constructor's parameters)."""


def check_known(options: Iterable[str], rules: Mapping[str, Rule], prefix: str = "", what: str = "option") -> None:
    """Raise :class:`OptionError` for the first name not in ``rules``, with the closest known one."""
    for name in options:
        if name in rules:
            continue
        best = closest(name, rules)
        hint = f"; did you mean {prefix}{best}?" if best else f" (known: {', '.join(sorted(rules))})"
        raise OptionError(f"unknown {what} {prefix}{name}{hint}")


def check_values(options: Mapping[str, object], rules: Mapping[str, Rule], prefix: str = "") -> None:
    """Check each option in ``options`` that has a rule (names are checked by :func:`check_known`)."""
    for name, value in options.items():
        if name in rules:
            rules[name].check(f"{prefix}{name}", value)


MAX_PARAMETERS = 2**32
"""The largest model the options may describe (4.3e9 parameters; the paper's OC20 model has 1.8e7).
LEIGNN is not sharded: every rank holds the whole model, its gradients and AdamW's two moments, 16 bytes
a parameter, so this limit already needs 69 GB per device before the first activation is stored."""

SIZE_DEFAULTS = {"hidden_channels": 512, "num_layers": 4, "num_rbf": 128, "num_elements": 118, "virtual_node": True}
"""The representation's defaults of the options that set its size (what a config leaves out)."""


def estimated_parameters(options: Mapping[str, object]) -> int:
    """The number of parameters of the model the (valid) ``options`` describe, with its heads, counted
    from the layers' shapes without building them (``tests/test_input_validation.py`` holds it to the
    built model's count)."""
    size = {**SIZE_DEFAULTS, **{k: v for k, v in options.items() if k in SIZE_DEFAULTS}}
    f, layers, rbf = int(size["hidden_channels"]), int(size["num_layers"]), int(size["num_rbf"])
    half = f // 2
    message = f * half + half + half * 3 * f + 3 * f + rbf * 3 * f + 3 * f  # node MLP F -> F/2 -> 3F, radial R -> 3F
    update = 2 * f * f + 2 * f * f + f + f * 3 * f + 3 * f  # W_u F -> 2F, scalar MLP 2F -> F -> 3F
    exchange = 2 * f * f + f + f * f + f + f * f  # scalar MLP 2F -> F -> F, vector mix F -> F
    count = int(size["num_elements"]) * f + layers * (message + update)
    if size["virtual_node"]:
        count += f + layers * exchange + (layers - 1) * exchange  # u_0; to local every layer, to global but the last
    count += f * half + half + half + 1  # energy head F -> F/2 -> 1
    direct = options.get("regress_forces", True) and options.get("direct_forces", True)
    return count + (f if direct else 0)  # direct force head F -> 1


def check_size(options: Mapping[str, object], prefix: str = "") -> None:
    """Refuse options that describe a model of more than :data:`MAX_PARAMETERS` parameters."""
    count = estimated_parameters(options)
    if count > MAX_PARAMETERS:
        given = ", ".join(f"{prefix}{k}={options[k]}" for k in SIZE_DEFAULTS if k in options and k != "virtual_node")
        raise OptionError(
            f"{given or 'the options'} make a model of {count:.2g} parameters, more than the {MAX_PARAMETERS:.2g} "
            f"allowed: each rank would hold {16 * count / 1e9:.2g} GB of weights, gradients and optimiser state "
            f"(the paper's OC20 model, width 512 and 4 layers, has {estimated_parameters({}):.2g})"
        )


def check_combination(options: Mapping[str, object], prefix: str = "") -> None:
    """Options that are fine alone but not together (defaults as the representation's), the model's size
    included (:func:`check_size`)."""
    if options.get("regress_stress", False) and options.get("direct_forces", True):
        raise OptionError(f"{prefix}regress_stress needs conservative forces: set {prefix}direct_forces: false")
    check_size(options, prefix)


def check_options(options: Mapping[str, object], rules: Mapping[str, Rule] = REPRESENTATION_OPTIONS,
                  prefix: str = "") -> None:
    """Names, values and combinations of model options; ``prefix`` (``model.``) goes before each name."""
    check_known(options, rules, prefix)
    check_values(options, rules, prefix)
    check_combination(options, prefix)
