"""Request options: the same names in the query string, multipart form fields or JSON keys.

Each option is validated here, with a 400 that names it; the pipeline receives only a typed
`RequestOptions`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

from server.http.errors import ApiError
from server.pipeline import RequestOptions

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ApiError(400, "invalid_option", f"{name} must be a boolean (true/false, 1/0), got {value!r}")


def _integer(name: str, value: Any, low: int, high: int) -> int:
    """An integer, given as a JSON number or a string; 960.0 is accepted, 960.5 is not."""
    if isinstance(value, bool):
        raise ApiError(400, "invalid_option", f"{name} must be an integer, got {value!r}")
    try:
        number = float(value) if isinstance(value, float) else int(str(value).strip())
    except ValueError:
        raise ApiError(400, "invalid_option", f"{name} must be an integer, got {value!r}") from None
    if number != int(number):
        raise ApiError(400, "invalid_option", f"{name} must be an integer, got {value!r}")
    return _within(name, int(number), low, high)


def _real(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool):
        raise ApiError(400, "invalid_option", f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ApiError(400, "invalid_option", f"{name} must be a number, got {value!r}") from None
    return _within(name, number, low, high)


def _within(name: str, number: T, low: float, high: float) -> T:
    if not low <= number <= high:  # also refuses NaN
        raise ApiError(400, "invalid_option", f"{name} must be within [{low}, {high}], got {number}")
    return number


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ApiError(400, "invalid_option", f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


_OPTION_PARSERS: dict[str, Callable[[Any], Any]] = {
    "use_cls": lambda v: _bool("use_cls", v),
    "det_limit_side_len": lambda v: _integer("det_limit_side_len", v, 16, 4000),
    "det_limit_type": lambda v: _choice("det_limit_type", v, ("min", "max")),
    "det_thresh": lambda v: _real("det_thresh", v, 0.01, 0.99),
    "det_box_thresh": lambda v: _real("det_box_thresh", v, 0.0, 1.0),
    "det_unclip_ratio": lambda v: _real("det_unclip_ratio", v, 0.5, 5.0),
    "drop_score": lambda v: _real("drop_score", v, 0.0, 1.0),
}


def parse_options(raw: Mapping[str, Any]) -> RequestOptions:
    """Validate request options. An unknown name is an error, not silently ignored (typos); a JSON
    `null` means "the model's setting", like leaving the option out."""
    unknown = sorted(set(raw) - set(_OPTION_PARSERS))
    if unknown:
        raise ApiError(
            400, "unknown_option",
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(_OPTION_PARSERS))}",
        )
    return RequestOptions(**{
        name: _OPTION_PARSERS[name](value) for name, value in raw.items() if value is not None
    })
