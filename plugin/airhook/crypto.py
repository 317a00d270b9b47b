"""Encrypt airhook's stored credentials with Airflow's Fernet key (``[core] fernet_key``)."""

from __future__ import annotations

from airhook.core.errors import SetupError
from airhook.core.secrets import Cipher

__all__ = ["airflow_cipher"]


def airflow_cipher() -> Cipher:
    """Return Airflow's Fernet; refuse to run with no key rather than store secrets in clear.

    :raises SetupError: ``[core] fernet_key`` is empty.
    """
    from airhook.airflow_internals import fernet as airflow_fernet

    fernet = airflow_fernet()
    if not fernet.is_encrypted:
        raise SetupError(
            "[core] fernet_key",
            "[core] fernet_key is empty: airhook does not store webhook secrets unencrypted. "
            "Set AIRFLOW__CORE__FERNET_KEY (python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())').",
        )
    return fernet
