"""The end-of-run log scan (tests/log_secrets.py) finds a secret planted in a log file.

The scan itself runs once, after the whole session; these check that it can fail: a known
secret in any of its forms, a generated one nobody registered, a secret read back from an
airhook store, and that a report names the file and the secret's fingerprint, never the secret.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography.fernet import Fernet

from airhook.core.secrets import Secret, SecretPair, generate_secret
from airhook.core.source import Source
from airhook.store import Store
from airhook.store.migrate import upgrade
from airhook.store.sources import SourceRepository
from tests import log_secrets
from tests.log_secrets import fingerprint, log_files, scan, secret_values

PLANTED_SECRET = "planted-secret-0123456789"


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Outside pytest's base directory, which the end-of-run scan reads: these logs hold
    secrets on purpose (and go as soon as the test ends)."""
    with tempfile.TemporaryDirectory(prefix="planted-logs-") as folder:
        yield Path(folder)


def _log(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_known_secret_in_a_log_file_is_found_and_not_shown(tmp_path: Path) -> None:
    path = _log(tmp_path, "receiver.log", f"ok\nsigned with {PLANTED_SECRET} today\n")
    [finding] = scan([path], {PLANTED_SECRET: "tests.PLANTED_SECRET"})
    assert (finding.path, finding.line, finding.label) == (path, 2, "tests.PLANTED_SECRET")
    assert finding.digest == fingerprint(PLANTED_SECRET)
    assert PLANTED_SECRET not in str(finding)
    assert fingerprint(PLANTED_SECRET) in str(finding)


def test_escaped_and_encoded_forms_are_found(tmp_path: Path) -> None:
    secret = 'tok/with+"odd"=chars'
    path = _log(
        tmp_path,
        "a.log",
        f"{json.dumps({'token': secret})}\nGET /hook?token={quote(secret, safe='')}\n",
    )
    assert [f.line for f in scan([path], {secret: "odd"})] == [1, 2]


def test_a_generated_secret_nobody_registered_is_found(tmp_path: Path) -> None:
    path = _log(tmp_path, "logs/dag_id=x/attempt=1.log", f"secret={generate_secret().reveal()}")
    [finding] = scan([path], {})
    assert finding.label == "a generated airhook secret (whsec_…)"


def test_a_clean_log_has_no_finding(tmp_path: Path) -> None:
    path = _log(tmp_path, "clean.log", "delivery msg_1 to errors failed: HTTP 500\n")
    assert (
        scan([path], {PLANTED_SECRET: "tests.PLANTED_SECRET", "short": "too short to look for"})
        == []
    )


def test_log_files_are_logs_and_whatever_is_under_a_logs_folder(tmp_path: Path) -> None:
    wanted = [
        _log(tmp_path, "home/receiver.log", ""),
        _log(tmp_path, "home/logs/scheduler", ""),
        _log(tmp_path, "task.err", ""),
    ]
    _log(tmp_path, "home/secrets.json", "{}")
    _log(tmp_path, "standins/crm.jsonl", "{}")
    assert sorted(log_files(tmp_path)) == sorted(wanted)


def test_a_secret_read_back_from_a_store_is_looked_for(tmp_path: Path) -> None:
    primary, bearer = f"store-only-{uuid.uuid4().hex}", f"bearer-{uuid.uuid4().hex}"
    key = Fernet.generate_key()  # recorded by the plugin, as every key made in the run
    assert key.decode() in log_secrets._fernet_keys
    store = Store(f"sqlite:///{tmp_path / 'airhook.db'}")
    upgrade(store)
    try:
        SourceRepository(store, Fernet(key)).create(
            Source(
                name="planted",
                profile="standard",
                scheme="standard",
                secrets=SecretPair(Secret(primary)),
                bearer_tokens=(Secret(bearer),),
            )
        )
    finally:
        store.dispose()
    found = secret_values(tmp_path)
    assert found[primary] == "source 'planted''s secret in the store airhook.db"
    assert found[bearer] == "source 'planted''s secret in the store airhook.db"
    path = _log(tmp_path, "publisher.log", f"Authorization: Bearer {bearer}")
    assert [f.digest for f in scan([path], found)] == [fingerprint(bearer)]


def test_secret_constants_of_test_modules_are_looked_for() -> None:
    found = log_secrets._constants()
    assert found[PLANTED_SECRET] == "tests.test_log_secrets.PLANTED_SECRET"
