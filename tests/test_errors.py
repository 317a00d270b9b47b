"""airhook.core.errors: one tree, structured fields, no secrets in messages."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import airhook.core.errors as errors
from airhook.core.errors import (
    AddressNotAllowedError,
    AirhookError,
    AlreadyExistsError,
    ConfigurationError,
    ConflictError,
    DeliveryError,
    DeliveryNotFoundError,
    NotFoundError,
    PayloadValidationError,
    SignatureError,
    SourceExistsError,
    SourceNotFoundError,
    SubscriptionExistsError,
    SubscriptionNotFoundError,
    TemplateRenderError,
    UnknownPlatformError,
    VerificationError,
)

#: Modules that only run inside their runner, checked from their source instead of imported:
#: Alembic executes the migration environment with its own context established.
RUN_BY_THEIR_RUNNER = ("airhook.store.migrations.env",)

#: Run in a child process with a private AIRFLOW_HOME: importing ``airhook.plugin`` builds the
#: receiver app and reads Airflow's configuration, which must not leak into this test process.
_WALK = """
import importlib, inspect, json, pkgutil, sys
import airhook
from airhook.core.errors import AirhookError

skipped = set(sys.argv[1:])

def refuse(name):
    raise SystemExit(f"cannot walk into {name}")

modules = ["airhook"] + [
    info.name for info in pkgutil.walk_packages(airhook.__path__, "airhook.", onerror=refuse)
]
found = []
for name in modules:
    if name in skipped:
        continue
    module = importlib.import_module(name)  # an import error fails the walk: nothing skipped
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if obj.__module__ == name and issubclass(obj, BaseException):
            found.append([name, obj.__qualname__, issubclass(obj, AirhookError)])
print(json.dumps({"modules": modules, "classes": found}))
"""


@dataclass(frozen=True)
class Walk:
    """What importing every module of the package found."""

    modules: list[str]
    #: (module, class name, derives from AirhookError) for every exception class defined.
    classes: list[tuple[str, str, bool]]


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Walk:
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    result = subprocess.run(
        [sys.executable, "-c", _WALK, *RUN_BY_THEIR_RUNNER],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    return Walk(found["modules"], [tuple(item) for item in found["classes"]])


def test_every_error_derives_from_the_one_base() -> None:
    classes = [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if obj.__module__ == errors.__name__
    ]
    assert len(classes) == len(errors.__all__)
    for cls in classes:
        assert issubclass(cls, AirhookError), cls


def test_the_tree_in_the_docstring_names_every_error() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        assert name in doc, name


def test_every_exception_class_in_the_package_derives_from_the_base(walk: Walk) -> None:
    # The walk reached every subpackage, and the errors defined outside core.errors.
    assert {"airhook.cli", "airhook.store.migrations.versions", "airhook.receiver.app"} <= set(
        walk.modules
    )
    assert {"CommandError", "DestinationNotAllowedError", "_TooLarge"} <= {
        name for _, name, _ in walk.classes
    }
    outside = [f"{module}.{name}" for module, name, derives in walk.classes if not derives]
    assert not outside


def test_the_tree_in_the_docstring_names_every_public_error_of_the_package(walk: Walk) -> None:
    doc = errors.__doc__ or ""
    for module, name, _ in walk.classes:
        if not name.startswith("_"):
            assert re.search(rf"\b{name}\b", doc), f"{module}.{name}"


@pytest.mark.parametrize("name", sorted(RUN_BY_THEIR_RUNNER))
def test_modules_run_by_their_runner_define_no_class(name: str) -> None:
    spec = importlib.util.find_spec(name)
    assert spec is not None
    assert spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]


def test_store_errors_keep_their_names_and_carry_the_name() -> None:
    for cls, kind in (
        (SourceNotFoundError, "source"),
        (SubscriptionNotFoundError, "subscription"),
        (DeliveryNotFoundError, "delivery"),
    ):
        error = cls("nope")
        assert isinstance(error, NotFoundError)
        assert (error.kind, error.name, error.status_code) == (kind, "nope", 404)
    assert str(SubscriptionNotFoundError("nope")) == "no subscription named 'nope'"
    assert str(DeliveryNotFoundError("msg_x")) == "no delivery 'msg_x'"
    for cls, kind in ((SourceExistsError, "source"), (SubscriptionExistsError, "subscription")):
        taken = cls("crm")
        assert isinstance(taken, AlreadyExistsError)
        assert (taken.kind, taken.name, str(taken)) == (kind, "crm", f"{kind} 'crm' exists already")


def test_unknown_platform_lists_the_known_ones() -> None:
    error = UnknownPlatformError("zapier", ("ccai", "rkt"))
    assert isinstance(error, NotFoundError)
    assert str(error) == "no platform named 'zapier' (known: ccai, rkt)"


def test_configuration_errors_are_still_value_errors() -> None:
    # DAG code written against the plain ValueError of earlier releases keeps working.
    assert issubclass(ConfigurationError, ValueError)
    assert not issubclass(NotFoundError, LookupError)


def test_conflict_names_what_and_why() -> None:
    error = ConflictError("delivery", "msg_1", "it is being sent right now")
    assert (error.kind, error.name, error.status_code) == ("delivery", "msg_1", 409)
    assert str(error) == "delivery msg_1: it is being sent right now"


def test_verification_errors_carry_reason_and_status() -> None:
    error = SignatureError("timestamp_too_old", "older than 300 s")
    assert isinstance(error, VerificationError)
    assert (error.reason, error.status_code) == ("timestamp_too_old", 401)
    assert AddressNotAllowedError("address_not_allowed").status_code == 403


def test_validation_error_message_leaves_out_the_value() -> None:
    error = PayloadValidationError(
        platform="rkt",
        event="lead.captured",
        json_path="$.data.email",
        keyword="pattern",
        message="'john@secret-domain' does not match",
    )
    assert "secret-domain" not in str(error)
    assert error.json_path == "$.data.email"


def test_template_and_delivery_errors_are_structured() -> None:
    template_error = TemplateRenderError("slack.json.j2", 7, "'chat' is undefined")
    assert (template_error.template, template_error.lineno) == ("slack.json.j2", 7)
    assert str(template_error).startswith("slack.json.j2:7:")
    delivery = DeliveryError("https://example.com/hook", 503, "unavailable", retryable=True)
    assert (delivery.status_code, delivery.retryable) == (503, True)
