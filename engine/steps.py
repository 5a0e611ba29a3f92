"""The walk over an automation's steps: ``if``, rendering, branches, ``on_error`` — shared by
``haste dry-run`` and the worker's executor, so the two can never disagree on control flow.

The walk is pure control flow. Everything with an effect goes through a :class:`Runner`:

* :meth:`Runner.prior` — the outcome this step already has (the executor answers from the
  step records committed by earlier slices of the run, so a resumed execution skips what
  is done and reuses its output; dry-run has none). A recorded outcome is final: the
  step's ``if`` is not evaluated again, a branch keeps the case it chose.
* :meth:`Runner.settle` — an outcome the walk decided by itself (skipped by ``if``, a
  template that does not render, the case a branch chose), to be recorded.
* :meth:`Runner.run` — run the step with its rendered params.
* :meth:`Runner.not_reached` — a step jumped over by ``goto``.

An outcome may be ``suspended`` (a delay, an AI task, a retry back-off): the walk stops
there and the run continues later from the same place.

Control flow, as documented for authors: steps run in order; a failed step (after its
retries) follows its ``on_error`` (default: the automation's): ``stop`` ends the run as
failed, ``continue`` goes on with the next step, ``goto:<id>`` jumps forward to a later
step of the same list or of an enclosing one. A branch runs the steps of its first case
whose ``if`` holds, else its ``default``. A step that did not run (skipped, not reached,
failed, in a case not chosen) has ``steps.<id>.output`` = null for later templates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from engine import conditions, templating
from engine.definitions import iter_steps, pointer_join

Status = Literal["completed", "skipped", "failed", "suspended"]


@dataclass(frozen=True)
class StepError:
    """Why a step attempt failed: a class the retry policy matches on, and a message that
    names the problem. Wider than the actions' error classes: the executor adds
    ``internal`` (a bug), ``provider_error`` (an AI task failed) and ``cancelled``."""

    error_class: str
    message: str
    retryable: bool = False
    retry_after: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.error_class,
            "message": self.message,
            "retryable": self.retryable,
            "retry_after": self.retry_after,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepError:
        return cls(
            str(data.get("class") or "internal"),
            str(data.get("message") or ""),
            bool(data.get("retryable")),
            data.get("retry_after"),
            dict(data.get("details") or {}),
        )

    def __str__(self) -> str:
        return f"{self.error_class}: {self.message}"


@dataclass(frozen=True)
class Outcome:
    """What became of one step. A branch's output is ``{"case": <index> | "default" | None}``."""

    status: Status
    output: Any = None
    error: StepError | None = None


@dataclass(frozen=True)
class Step:
    """One step where the walk meets it."""

    id: str
    type: str
    pointer: str
    definition: Mapping[str, Any]

    @property
    def params(self) -> Any:
        return self.definition.get("params") or {}


class Runner(Protocol):
    """The effects of a walk (see the module doc)."""

    def prior(self, step: Step) -> Outcome | None: ...

    def settle(
        self,
        step: Step,
        outcome: Outcome,
        *,
        condition: conditions.Evaluation | None = None,
        params: Any = None,
    ) -> Outcome: ...

    def run(
        self, step: Step, params: Any, *, condition: conditions.Evaluation | None = None
    ) -> Outcome: ...

    def not_reached(self, step: Step, goto: str) -> None: ...


@dataclass(frozen=True)
class WalkResult:
    """``finished`` (every step done or skipped), ``failed`` (a step failed with ``stop``)
    or ``suspended``; ``step`` is the one that failed or suspended the run."""

    status: Literal["finished", "failed", "suspended"]
    step: Step | None = None
    outcome: Outcome | None = None
    goto: str | None = None
    """A goto target not found in the walked list: the enclosing list goes on skipping."""


def choose_case(
    params: Mapping[str, Any], context: Mapping[str, Any], now: datetime
) -> int | Literal["default"] | None:
    """The first case whose ``if`` holds, else ``"default"`` when there is one, else None."""
    for index, case in enumerate(params.get("cases") or []):
        if conditions.evaluate(case.get("if"), context, now=now).matched:
            return index
    return "default" if params.get("default") is not None else None


def case_steps(step: Step, case: Any) -> tuple[list[Mapping[str, Any]], str]:
    """The steps of the chosen case of a branch, and the pointer of their list."""
    params = step.params
    if isinstance(case, int) and not isinstance(case, bool):
        cases = params.get("cases") or []
        if 0 <= case < len(cases):
            ptr = pointer_join(step.pointer, "params", "cases", case, "steps")
            return list(cases[case].get("steps") or []), ptr
    if case == "default":
        return list(params.get("default") or []), pointer_join(step.pointer, "params", "default")
    return [], step.pointer


def on_error_policy(step: Step, default: str) -> str:
    """``stop`` | ``continue`` | ``goto:<id>`` for a failed step."""
    policy = step.definition.get("on_error")
    return str(policy) if isinstance(policy, str) and policy else default


def _null_outputs(context: dict[str, Any], steps: Sequence[Any], pointer: str) -> None:
    for _, nested in iter_steps(list(steps), pointer):
        sid = nested.get("id")
        if isinstance(sid, str):
            context["steps"].setdefault(sid, {"output": None})


def walk(
    steps: Sequence[Mapping[str, Any]],
    runner: Runner,
    context: dict[str, Any],
    *,
    pointer: str = "/actions",
    on_error: str = "stop",
    clock: Any = None,
) -> WalkResult:
    """Walk ``steps`` in order (see the module doc); ``context["steps"]`` is filled as it goes."""
    context.setdefault("steps", {})
    skip_to: str | None = None
    for index, raw in enumerate(steps):
        if not isinstance(raw, Mapping):
            continue
        step = Step(str(raw.get("id")), str(raw.get("type")), f"{pointer}/{index}", raw)
        if skip_to is not None:
            if step.id != skip_to:
                runner.not_reached(step, skip_to)
                _null_outputs(context, [raw], step.pointer)
                continue
            skip_to = None
        now = clock() if clock is not None else datetime.now(UTC)
        outcome = runner.prior(step)
        if outcome is None:
            outcome = _decide(step, runner, context, now)
        if outcome.status == "suspended":
            return WalkResult("suspended", step, outcome)
        context["steps"][step.id] = {
            "output": outcome.output if outcome.status == "completed" else None
        }
        if step.type == "branch":
            chosen = (outcome.output or {}).get("case") if outcome.status == "completed" else None
            _null_outputs(context, [raw], step.pointer)
            if chosen is not None or outcome.status == "completed":
                nested, nested_ptr = case_steps(step, chosen)
                result = walk(
                    nested, runner, context, pointer=nested_ptr, on_error=on_error, clock=clock
                )
                if result.status != "finished":
                    return result
                if result.goto is not None:
                    skip_to = result.goto
                continue
        if outcome.status == "failed":
            policy = on_error_policy(step, on_error)
            if policy == "continue":
                continue
            if policy.startswith("goto:"):
                skip_to = policy.removeprefix("goto:")
                continue
            return WalkResult("failed", step, outcome)
    return WalkResult("finished", goto=skip_to)


def _decide(step: Step, runner: Runner, context: dict[str, Any], now: datetime) -> Outcome:
    """Evaluate ``if``, render params, choose a branch case, or run the step."""
    evaluation = None
    if step.definition.get("if") is not None:
        evaluation = conditions.evaluate(step.definition["if"], context, now=now)
        if not evaluation.matched:
            return runner.settle(step, Outcome("skipped"), condition=evaluation)
    if step.type == "branch":
        case = choose_case(step.params, context, now)
        return runner.settle(step, Outcome("completed", {"case": case}), condition=evaluation)
    try:
        params = templating.render_params(step.params, context)
    except templating.TemplateError as exc:
        error = StepError("validation", f"template: {exc}", details={"template": exc.template})
        return runner.settle(step, Outcome("failed", error=error), condition=evaluation)
    return runner.run(step, params, condition=evaluation)
