"""Templates in automation params: ``"Hi {{ contact.first_name }}"``, rendered per step.

One Jinja2 environment, configured once, for the whole engine:

* Sandboxed and immutable (:class:`ImmutableSandboxedEnvironment`): no ``__class__`` walks,
  no ``list.append`` on the context. Method calls go through a whitelist (a few pure
  ``str``/``list``/``datetime`` methods), not Jinja's default "everything not marked
  unsafe", because an author's template must not reach anything we forgot to mark.
* Strict: an unknown name is an error naming the full path (``unknown name
  'contact.scroe'``), never an empty string silently sent to a customer.
  ``default``/``d`` covers missing *and* null values, and chains (``contact.a.b |
  default('x')``) instead of failing on the first missing level.
* Data first: ``trigger.items`` is the payload's ``items`` key, not ``dict.items``. Use the
  ``items`` filter to iterate an object.
* Bounded: output is capped at :data:`MAX_OUTPUT_CHARS`; ``*``, ``+``, ``**`` and ``~``
  check sizes before they allocate; ``%`` string formatting and amplifying filters
  (``center``, ``indent``, ``format``, ``batch``...) are not available; ranges, method and
  macro calls draw on a per-render work budget (:data:`MAX_WORK`). A template that loops
  over context data without calling anything is bounded only by that data (the worker's
  time limit is the backstop there).
* Autoescape off: params are not HTML (an email action escapes its own HTML body).
* ``None`` renders as ``""`` inside text (``finalize``), so a null middle name is no
  "None" in a subject line; a param that is exactly ``{{ expr }}`` keeps its native type
  (``"{{ contact.score }}"`` is ``90``), which is how actions get numbers, lists and nulls.

Rejected: ``NativeEnvironment`` (it ``literal_eval``s concatenated output, so a contact
named "[1]" would become a list), Jinja's ``ChainableUndefined`` (prints as empty).
No I/O: there is no loader, so ``include``/``extends``/``import`` fail.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from types import BuiltinMethodType
from typing import Any
from uuid import UUID

from jinja2 import TemplateSyntaxError, meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import Template, TemplateExpression
from jinja2.exceptions import SecurityError, TemplateAssertionError, UndefinedError
from jinja2.filters import make_attrgetter
from jinja2.runtime import BlockReference, Context, LoopContext, Macro, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner, missing, pass_context, pass_environment
from markupsafe import Markup

from engine.values import (
    CoercionError,
    day_in,
    describe,
    is_day,
    to_day,
    to_decimal,
    to_instant,
    zone,
)

MAX_OUTPUT_CHARS = 1_000_000
"""Largest rendered string (and largest string any operator may build on the way)."""

MAX_TEMPLATE_CHARS = 200_000
"""Longest template source accepted."""

MAX_WORK = 100_000
"""Per-render budget: one unit per method/macro call, one per element of a ``range``."""

MAX_INT_BITS = 1_024
"""Largest integer ``*`` and ``**`` may produce; CRM templates never need more."""

MAX_NESTING = 64
"""Deepest params structure :func:`render_params` walks."""

MAX_FORMAT_CHARS = 100
"""Longest strftime format accepted by the ``date``/``datetime`` filters."""

_WORK: ContextVar[list[int] | None] = ContextVar("haste_template_work", default=None)


class TemplateError(Exception):
    """A template that cannot be parsed or rendered. ``name`` is the unknown dotted path
    when that was the cause, so validators can suggest a fix."""

    def __init__(self, message: str, template: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.template = template
        self.name = name

    def __str__(self) -> str:
        return self.message


# --- the environment ---------------------------------------------------------------------


class _UnknownMessage(str):
    """The error text of an undefined value, carrying the value so the renderer can
    name the full path (Jinja's dunder operators raise with the message only)."""

    undefined: _Unknown


class _Unknown(StrictUndefined):
    """Strict on use (print, compare, iterate, test truth), chainable on access, so
    ``a.b.c | default`` works and the error names the first missing level."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name[:2] == "__":
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> Any:
        return self

    @property
    def _undefined_message(self) -> str:
        message = _UnknownMessage(StrictUndefined._undefined_message.fget(self))  # type: ignore[attr-defined]
        message.undefined = self
        return message


def _spend(units: int) -> None:
    budget = _WORK.get()
    if budget is None:
        return
    budget[0] -= units
    if budget[0] < 0:
        raise SecurityError(f"the template does too much work (budget {MAX_WORK} calls)")


def _check_size(size: int, what: str) -> None:
    if size > MAX_OUTPUT_CHARS:
        raise SecurityError(f"{what} would be {size} long; the limit is {MAX_OUTPUT_CHARS}")


def _budget_range(*args: int) -> range:
    """``range`` that draws on the render's work budget (nested loops multiply)."""
    span = range(*args)
    _spend(len(span))
    return span


_SAFE_METHODS: Mapping[type, frozenset[str]] = {
    str: frozenset(
        {
            "lower",
            "upper",
            "title",
            "capitalize",
            "casefold",
            "strip",
            "lstrip",
            "rstrip",
            "startswith",
            "endswith",
            "split",
            "rsplit",
            "splitlines",
            "find",
            "rfind",
            "count",
            "isdigit",
            "isalpha",
            "isalnum",
            "isspace",
            "islower",
            "isupper",
            "isnumeric",
            "removeprefix",
            "removesuffix",
            "partition",
            "rpartition",
            "replace",
        }
    ),
    list: frozenset({"index", "count"}),
    tuple: frozenset({"index", "count"}),
    datetime: frozenset({"isoformat", "strftime", "date", "weekday", "isoweekday"}),
    date: frozenset({"isoformat", "strftime", "weekday", "isoweekday"}),
}


def _method_allowed(obj: Any) -> bool:
    """A bound builtin method from :data:`_SAFE_METHODS`, or a loop/cycler helper."""
    owner = getattr(obj, "__self__", None)
    if owner is None:
        return False
    if isinstance(owner, LoopContext | Cycler):
        return True
    if not isinstance(obj, BuiltinMethodType):
        return False
    for kind in (str, list, tuple, datetime, date):  # datetime before its base class
        if isinstance(owner, kind):
            return obj.__name__ in _SAFE_METHODS[kind]
    return False


def _checked_concat(values: Sequence[Any]) -> str:
    parts = [str(v) for v in values]
    _check_size(sum(len(p) for p in parts), "a ~ concatenation")
    return "".join(parts)


class _CodeGenerator(CodeGenerator):
    """Routes ``~`` through a size check: Jinja compiles it to a plain join the sandbox
    cannot see, and ``{% set ns.s = ns.s ~ ns.s %}`` in a loop doubles per iteration."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Environment(ImmutableSandboxedEnvironment):
    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self) -> None:
        super().__init__(
            autoescape=False,
            undefined=_Unknown,
            keep_trailing_newline=True,
            finalize=_finalize,
            auto_reload=False,
            cache_size=0,
        )
        self.checked_concat = _checked_concat
        self.globals.pop("lipsum", None)
        self.globals["range"] = _budget_range
        self._safe_callables = {id(v) for v in self.globals.values()}

    def getattr(self, obj: Any, attribute: str) -> Any:
        """Objects are data: ``x.items`` is the key ``items``, never ``dict.items``."""
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):
            raise SecurityError("'%' string formatting is not available; use ~ and filters")
        if operator == "*":
            _check_repeat(left, right)
        elif operator == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                _check_size(len(left) + len(right), "a + result")
        elif operator == "**":
            _check_power(left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Only whitelisted callables, each drawing on the work budget."""
        obj = __obj
        allowed = (
            id(obj) in __self._safe_callables
            or isinstance(
                obj, Macro | BlockReference | LoopContext | Joiner | Cycler | StrictUndefined
            )
            or _method_allowed(obj)
        )
        if not allowed:
            name = getattr(obj, "__name__", type(obj).__name__)
            raise SecurityError(f"calling {name!r} is not allowed in templates")
        _spend(1)
        if getattr(obj, "__name__", "") == "replace" and isinstance(
            getattr(obj, "__self__", None), str
        ):
            _check_replace(obj.__self__, args)
        return super().call(__context, obj, *args, **kwargs)


def _finalize(value: Any) -> Any:
    return "" if value is None else value


def _check_repeat(left: Any, right: Any) -> None:
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(times, int):
            _check_size(len(seq) * max(times, 0), "a * result")
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and left.bit_length() + right.bit_length() > MAX_INT_BITS
    ):
        raise SecurityError(f"numbers above {MAX_INT_BITS} bits are not supported")


def _check_power(base: Any, exponent: Any) -> None:
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and abs(base) > 1
        and exponent > 0
        and base.bit_length() * exponent > MAX_INT_BITS
    ):
        raise SecurityError(f"numbers above {MAX_INT_BITS} bits are not supported")
    if isinstance(exponent, int | float) and abs(exponent) > MAX_INT_BITS:
        raise SecurityError(f"exponents above {MAX_INT_BITS} are not supported")


def _check_replace(text: str, args: tuple[Any, ...]) -> None:
    if len(args) < 2 or not isinstance(args[0], str) or not isinstance(args[1], str):
        return
    old, new = args[0], args[1]
    hits = text.count(old) if old else len(text) + 1
    _check_size(len(text) + hits * (len(new) - len(old)), "a replace result")


# --- filters -------------------------------------------------------------------------------


def _filter_default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """Missing or null (or, with ``boolean=true``, any falsy value) becomes the default."""
    if isinstance(value, StrictUndefined) or value is None:
        return default_value
    if boolean and not value:
        return default_value
    return value


def _context_zone(context: Context, tz: Any) -> tzinfo:
    if tz is not None:
        return zone(tz)
    workspace = context.get("workspace")
    name = workspace.get("timezone") if isinstance(workspace, Mapping) else None
    return zone(name) if name else UTC


def _context_now(context: Context) -> datetime:
    raw = context.get("now")
    if raw is None or isinstance(raw, StrictUndefined):
        return datetime.now(UTC)
    return to_instant(raw, UTC)


def _checked_format(fmt: Any) -> str:
    if not isinstance(fmt, str) or len(fmt) > MAX_FORMAT_CHARS:
        raise CoercionError(
            f"a date format is a string of at most {MAX_FORMAT_CHARS} "
            f"characters, got {describe(fmt)}"
        )
    return fmt


@pass_context
def _filter_date(context: Context, value: Any, fmt: str = "%Y-%m-%d", tz: Any = None) -> str:
    """A day as is; a timestamp as the day it falls on in ``tz`` (default: workspace)."""
    if value is None:
        return ""
    where = _context_zone(context, tz)
    fmt = _checked_format(fmt)
    try:
        if is_day(value):
            return to_day(value, where).strftime(fmt)
        return to_instant(value, where).astimezone(where).strftime(fmt)
    except CoercionError as exc:
        raise CoercionError(f"date filter: {exc}") from exc


@pass_context
def _filter_datetime(
    context: Context, value: Any, fmt: str = "%Y-%m-%d %H:%M", tz: Any = None
) -> str:
    """A timestamp on the wall clock of ``tz`` (default: workspace); a day is midnight."""
    if value is None:
        return ""
    where = _context_zone(context, tz)
    fmt = _checked_format(fmt)
    try:
        return to_instant(value, where).astimezone(where).strftime(fmt)
    except CoercionError as exc:
        raise CoercionError(f"datetime filter: {exc}") from exc


@pass_context
def _filter_days_until(context: Context, value: Any, tz: Any = None) -> int | None:
    """Calendar days from today (in ``tz``, default workspace) to the value; negative when
    past, null for null."""
    if value is None:
        return None
    where = _context_zone(context, tz)
    try:
        return (to_day(value, where) - day_in(_context_now(context), where)).days
    except CoercionError as exc:
        raise CoercionError(f"days_until filter: {exc}") from exc


_CURRENCY_SYMBOLS: Mapping[str, str] = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "INR": "₹",
    "KRW": "₩",
    "BRL": "R$",
    "AUD": "A$",
    "CAD": "CA$",
    "CNY": "CN¥",
    "MXN": "MX$",
    "NZD": "NZ$",
}
_ZERO_DECIMAL = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF", "PYG"})
_THREE_DECIMAL = frozenset({"BHD", "KWD", "OMR", "JOD", "TND", "IQD", "LYD"})


def _filter_money(value: Any, currency: Any) -> str:
    """``1234.5 | money('EUR')`` → ``€1,234.50``: the currency's minor units, half-up,
    comma thousands. Not locale-aware (no "1.234,50 €"); codes without a symbol follow
    the amount ("1,234.50 CHF")."""
    if value is None:
        return ""
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise CoercionError(
            f"money filter: currency is a 3-letter ISO code, got {describe(currency)}"
        )
    code = currency.upper()
    places = 0 if code in _ZERO_DECIMAL else 3 if code in _THREE_DECIMAL else 2
    try:
        amount = to_decimal(value).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    except (CoercionError, InvalidOperation) as exc:
        raise CoercionError(f"money filter: {describe(value)} is not an amount") from exc
    text = f"{abs(amount):,.{places}f}"
    sign = "-" if amount < 0 else ""
    symbol = _CURRENCY_SYMBOLS.get(code)
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {code}"


_ROUNDINGS: Mapping[str, str] = {
    "common": ROUND_HALF_UP,
    "ceil": ROUND_CEILING,
    "floor": ROUND_FLOOR,
}


def _filter_round(value: Any, precision: int = 0, method: str = "common") -> Any:
    """Decimal rounding (``common`` is half-up, unlike Python's banker's ``round``);
    keeps the input's type: float in, float out; int in, int out; text/Decimal → Decimal."""
    if method not in _ROUNDINGS:
        raise CoercionError(
            f"round filter: method is common, ceil or floor, got {describe(method)}"
        )
    if isinstance(precision, bool) or not isinstance(precision, int) or abs(precision) > 20:
        raise CoercionError(
            f"round filter: precision is a whole number up to 20, got {describe(precision)}"
        )
    try:
        rounded = to_decimal(value).quantize(Decimal(1).scaleb(-precision), _ROUNDINGS[method])
    except InvalidOperation as exc:
        raise CoercionError(f"round filter: {describe(value)} cannot be rounded") from exc
    if isinstance(value, float):
        return float(rounded)
    if isinstance(value, int) and precision <= 0:
        return int(rounded)
    return rounded


@pass_environment
def _filter_join(env: _Environment, value: Any, d: str = "", attribute: Any = None) -> str:
    """``join`` that sizes the result before building it (a 1 MB separator times a
    100k-item range would otherwise be 100 GB)."""
    items = list(value)
    if attribute is not None:
        getter = make_attrgetter(env, attribute)
        items = [getter(item) for item in items]
    parts = ["" if item is None else str(item) for item in items]
    _check_size(sum(map(len, parts)) + len(str(d)) * max(len(parts) - 1, 0), "a join result")
    return str(d).join(parts)


def _filter_replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text = str(value)
    _check_replace(text, (str(old), str(new)))
    return text.replace(str(old), str(new), -1 if count is None else count)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and abs(value.adjusted()) < 18:
            return int(value)
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, StrictUndefined):
        value._fail_with_undefined_error()
    raise CoercionError(f"tojson filter: a {type(value).__name__} is not JSON")


def _filter_tojson(value: Any, indent: int | None = None) -> str:
    """JSON text (not HTML-escaped: params are not HTML); Decimal as an exact number where
    JSON can hold it, instants as ISO-8601."""
    if indent is not None and (not isinstance(indent, int) or not 0 <= indent <= 8):
        raise CoercionError("tojson filter: indent is 0 to 8")
    return json.dumps(value, default=_json_default, ensure_ascii=False, indent=indent)


_KEPT_BUILTIN_FILTERS = (
    "upper",
    "lower",
    "title",
    "capitalize",
    "trim",
    "truncate",
    "int",
    "float",
    "abs",
    "length",
    "count",
    "first",
    "last",
    "list",
    "sort",
    "unique",
    "reverse",
    "map",
    "select",
    "reject",
    "selectattr",
    "rejectattr",
    "sum",
    "min",
    "max",
    "items",
    "dictsort",
    "wordcount",
    "striptags",
    "urlencode",
    "string",
    "attr",
    "groupby",
)
"""Builtins that cannot amplify their input. Left out on purpose: center, indent,
wordwrap, format, batch, slice (size bombs), random (not reproducible), pprint, xmlattr,
urlize, filesizeformat, safe/escape/forceescape (HTML concerns)."""

_OUR_FILTERS: Mapping[str, Callable[..., Any]] = {
    "default": _filter_default,
    "d": _filter_default,
    "date": _filter_date,
    "datetime": _filter_datetime,
    "days_until": _filter_days_until,
    "money": _filter_money,
    "round": _filter_round,
    "join": _filter_join,
    "replace": _filter_replace,
    "tojson": _filter_tojson,
}


def _build_environment() -> _Environment:
    env = _Environment()
    kept = {name: env.filters[name] for name in _KEPT_BUILTIN_FILTERS}
    env.filters.clear()
    env.filters.update(kept)
    env.filters.update(_OUR_FILTERS)
    return env


ENV = _build_environment()
"""The engine's one template environment (thread-safe to render with)."""

FILTERS: tuple[str, ...] = tuple(sorted(ENV.filters))
"""Every filter an author may use; docs/conditions.md lists them (a test checks)."""


# --- compile -------------------------------------------------------------------------------


def _syntax_error(exc: TemplateSyntaxError | TemplateAssertionError, source: str) -> TemplateError:
    return TemplateError(f"syntax error on line {exc.lineno}: {exc.message}", source)


def _check_source(source: Any) -> str:
    if not isinstance(source, str):
        raise TemplateError(f"a template is a string, got {describe(source)}", str(source))
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(
            f"template is longer than {MAX_TEMPLATE_CHARS} characters", source[:200]
        )
    return source


@lru_cache(maxsize=1024)
def _compile(source: str) -> Template:
    try:
        return ENV.from_string(source)
    except (TemplateSyntaxError, TemplateAssertionError) as exc:
        raise _syntax_error(exc, source) from None


@lru_cache(maxsize=1024)
def _compile_param(source: str) -> tuple[bool, Template]:
    """(native, template): a string that is exactly one ``{{ expr }}`` compiles to an
    expression whose value is kept as is; anything else renders to text."""
    try:
        ast = ENV.parse(source)
        body = ast.body
        if (
            len(body) == 1
            and isinstance(body[0], nodes.Output)
            and len(body[0].nodes) == 1
            and not isinstance(body[0].nodes[0], nodes.TemplateData)
        ):
            assign = nodes.Assign(nodes.Name("result", "store"), body[0].nodes[0], lineno=1)
            return True, ENV.from_string(nodes.Template([assign], lineno=1))
        return False, ENV.from_string(ast)
    except (TemplateSyntaxError, TemplateAssertionError) as exc:
        raise _syntax_error(exc, source) from None


# --- render --------------------------------------------------------------------------------


def _is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def render(template: str, context: Mapping[str, Any]) -> str:
    """Render ``template`` against ``context``; raises :class:`TemplateError` only."""
    source = _check_source(template)
    compiled = _compile(source)
    token = _WORK.set([MAX_WORK])
    try:
        out: list[str] = []
        size = 0
        for chunk in compiled.generate(dict(context)):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateError(f"output is longer than {MAX_OUTPUT_CHARS} characters", source)
            out.append(chunk)
        return "".join(out)
    except TemplateError:
        raise
    except Exception as exc:
        raise _translate(exc, source, context) from None
    finally:
        _WORK.reset(token)


def render_params(params: Any, context: Mapping[str, Any]) -> Any:
    """Render every string in ``params`` (values, not keys). A string without ``{{`` or
    ``{%`` is returned untouched; one that is exactly ``{{ expr }}`` keeps the native type
    of ``expr``."""
    return _render_params(params, context, 0)


def _render_params(params: Any, context: Mapping[str, Any], depth: int) -> Any:
    if depth > MAX_NESTING:
        raise TemplateError(f"params nest deeper than {MAX_NESTING} levels", "")
    if isinstance(params, str):
        return _render_param(params, context) if _is_template(params) else params
    if isinstance(params, Mapping):
        return {k: _render_params(v, context, depth + 1) for k, v in params.items()}
    if isinstance(params, list | tuple):
        return [_render_params(v, context, depth + 1) for v in params]
    return params


def _render_param(source: str, context: Mapping[str, Any]) -> Any:
    native, compiled = _compile_param(_check_source(source))
    if not native:
        return render(source, context)
    token = _WORK.set([MAX_WORK])
    try:
        value = TemplateExpression(compiled, False)(dict(context))
        return _native(value, source, 0)
    except TemplateError:
        raise
    except Exception as exc:
        raise _translate(exc, source, context) from None
    finally:
        _WORK.reset(token)


def _native(value: Any, source: str, depth: int) -> Any:
    """The expression's value as JSON-ish data; iterators (``map``, ``range``) become
    lists, anything that is not data (a macro, a function) is an error."""
    if isinstance(value, StrictUndefined):
        value._fail_with_undefined_error()
    if isinstance(value, Markup):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str | Decimal | date | UUID):
        return value
    if depth > MAX_NESTING:
        raise TemplateError("the expression's value nests too deeply", source)
    if isinstance(value, Mapping):
        return {str(k): _native(v, source, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | range | Iterator):
        items = []
        for item in value:
            items.append(_native(item, source, depth + 1))
            _check_size(len(items), "the expression's list")
        return items
    raise TemplateError(f"the expression gives a {type(value).__name__}, which is not data", source)


def _translate(exc: Exception, source: str, context: Mapping[str, Any]) -> TemplateError:
    """Any render failure as a TemplateError whose message an author can act on."""
    text = exc.args[0] if exc.args else None
    unknown = text.undefined if isinstance(text, _UnknownMessage) else None
    if isinstance(exc, SecurityError):
        return TemplateError(f"not allowed: {exc}", source)
    if isinstance(unknown, _Unknown):
        name = _undefined_path(unknown, context)
        if name is not None:
            return TemplateError(f"unknown name '{name}'", source, name=name)
        return TemplateError(f"unknown name: {exc}", source)
    if isinstance(exc, UndefinedError):
        return TemplateError(f"unknown name: {exc}", source)
    if isinstance(exc, TemplateSyntaxError | TemplateAssertionError):
        return _syntax_error(exc, source)
    if isinstance(exc, RecursionError):
        return TemplateError("template recursion is too deep", source)
    if isinstance(exc, CoercionError):
        return TemplateError(str(exc), source)
    return TemplateError(f"{type(exc).__name__}: {exc}", source)


def _undefined_path(unknown: _Unknown, context: Mapping[str, Any]) -> str | None:
    obj, name = unknown._undefined_obj, unknown._undefined_name
    if obj is missing:
        return str(name)
    parent = _find_path(obj, context)
    return None if parent is None else f"{parent}.{name}"


def _find_path(target: Any, context: Mapping[str, Any], limit: int = 10_000) -> str | None:
    """The dotted path of ``target`` inside the context (by identity, breadth first)."""
    queue: deque[tuple[Any, str]] = deque(
        (v, str(k)) for k, v in context.items() if isinstance(v, Mapping | list | tuple)
    )
    seen = 0
    while queue and seen < limit:
        node, path = queue.popleft()
        seen += 1
        if node is target:
            return path
        children = node.items() if isinstance(node, Mapping) else enumerate(node)
        queue.extend(
            (v, f"{path}.{k}") for k, v in children if isinstance(v, Mapping | list | tuple)
        )
    return None


# --- static analysis -----------------------------------------------------------------------


def referenced_paths(template: str) -> set[str]:
    """The dotted context paths a template reads (``contact.first_name``,
    ``steps.s1.output.text``), for static "unknown name" checks by the caller.

    Names bound inside the template (loop variables, ``set``, macro arguments) and
    globals (``range``, ``namespace``...) are left out; a dynamic key (``contact[k]``)
    cuts the path before it; a method call (``x.y.upper()``) drops the method name.
    Raises :class:`TemplateError` on syntax errors and unknown filters.
    """
    source = _check_source(template)
    try:
        ast = ENV.parse(source)
        free = meta.find_undeclared_variables(ast) - set(ENV.globals)
    except (TemplateSyntaxError, TemplateAssertionError) as exc:
        raise _syntax_error(exc, source) from None
    found: set[str] = set()
    _collect_paths(ast, free, found)
    return found


def _collect_paths(node: nodes.Node, free: set[str], found: set[str]) -> None:
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
        _collect_chain(node.node.node, free, found)
        for child in (*node.args, *node.kwargs, node.dyn_args, node.dyn_kwargs):
            if child is not None:
                _collect_paths(child, free, found)
        return
    if isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Name):
        _collect_chain(node, free, found)
        return
    for child in node.iter_child_nodes():
        _collect_paths(child, free, found)


def _collect_chain(node: nodes.Node, free: set[str], found: set[str]) -> None:
    segments: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            segments.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem):
            key = node.arg
            if (
                isinstance(key, nodes.Const)
                and isinstance(key.value, str | int)
                and not (isinstance(key.value, bool))
            ):
                segments.append(str(key.value))
            else:
                _collect_paths(key, free, found)
                segments.clear()
            node = node.node
        elif isinstance(node, nodes.Name):
            if node.ctx == "load" and node.name in free:
                found.add(".".join([node.name, *reversed(segments)]))
            return
        else:
            _collect_paths(node, free, found)
            return
