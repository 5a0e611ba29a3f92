"""The actions an automation step can take, one module per family, and their registry.

:data:`ACTIONS` maps a step ``type`` to its :class:`Action`. The port (what an action is
given, what it raises, database vs external kind) is documented in :mod:`actions.base`;
params arrive validated against ``schemas/actions/<type>.json`` and rendered.

Step types that are control flow rather than effects are run by the executor itself and are
not in the registry: ``branch`` (choose a case), ``delay`` (enter ``waiting``) and
``ai_task`` (hand over to the AI queue and wait). :data:`EXECUTOR_STEP_TYPES` lists them, so
that a test can check that every schema in ``schemas/actions/`` is handled by someone.
"""

from __future__ import annotations

from collections.abc import Mapping

from actions.activities import LOG_ACTIVITY
from actions.base import (
    ERROR_CLASSES,
    RETRYABLE_BY_DEFAULT,
    Action,
    ActionEnv,
    ActionError,
    DatabaseAction,
    ExternalAction,
    StepContext,
)
from actions.deals import CHANGE_DEAL_STAGE
from actions.email import SEND_EMAIL
from actions.http import HTTP_REQUEST
from actions.notes import ADD_NOTE
from actions.owners import ASSIGN_OWNER
from actions.records import CREATE_RECORD, UPDATE_RECORD
from actions.tags import ADD_TAG, REMOVE_TAG
from actions.tasks import CREATE_TASK

__all__ = [
    "ACTIONS",
    "ERROR_CLASSES",
    "EXECUTOR_STEP_TYPES",
    "RETRYABLE_BY_DEFAULT",
    "Action",
    "ActionEnv",
    "ActionError",
    "DatabaseAction",
    "ExternalAction",
    "StepContext",
    "get_action",
]

ACTIONS: Mapping[str, Action] = {
    action.type: action
    for action in (
        UPDATE_RECORD,
        CREATE_RECORD,
        ADD_TAG,
        REMOVE_TAG,
        CREATE_TASK,
        ADD_NOTE,
        LOG_ACTIVITY,
        CHANGE_DEAL_STAGE,
        ASSIGN_OWNER,
        SEND_EMAIL,
        HTTP_REQUEST,
    )
}

#: Step types the executor runs itself (control flow, not effects).
EXECUTOR_STEP_TYPES = frozenset({"branch", "delay", "ai_task"})


def get_action(step_type: str) -> Action:
    """The action of a step type; a ``validation`` error names an unknown one."""
    try:
        return ACTIONS[step_type]
    except KeyError:
        raise ActionError(
            "validation",
            f"unknown action type {step_type!r}; known: {', '.join(sorted(ACTIONS))}",
        ) from None
