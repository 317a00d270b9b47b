"""airhook.core.errors: one tree, structured fields, no secrets in messages."""

from __future__ import annotations

import inspect

import airhook.core.errors as errors
from airhook.core.errors import (
    AddressNotAllowedError,
    AirhookError,
    DeliveryError,
    PayloadValidationError,
    SignatureError,
    TemplateRenderError,
    VerificationError,
)


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
