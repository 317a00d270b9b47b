"""After the whole run, no secret in any log file written: a pytest plugin.

At the session's end (after every test and every fixture's teardown) this scans every log file
the run wrote under pytest's base temporary directory (``*.log``, ``*.out``, ``*.err``, every
file under a ``logs`` folder: Airflow's task and component logs, devstack's component output,
the standalone receivers' and the publishing tasks' output) for every secret the run used, and
fails the session (exit status 1) naming the file, the line and which secret, never the
secret itself (a SHA-256 prefix stands for it).

Which secrets, without a registry every test must feed:

- the test modules' own constants: module-level strings (or the strings inside a dict, list or
  tuple, or a :class:`~airhook.core.secrets.Secret`) whose name says secret, token, password,
  primary, secondary or key (``RKT_SECRET``, ``CRM_TOKEN``, ``PASSWORDS``…), in every loaded
  module of ``tests``, ``devstack`` and ``bench``;
- every Fernet key made in this process (``Fernet.generate_key`` is wrapped once, here: the
  ``cipher`` fixture, devstack's stacks, the standalone receivers' keys) and in devstack homes
  (their ``secrets.json``, with the API's JWT secret);
- what every airhook store of the run holds: the sources' and subscriptions' secrets, bearer
  tokens, basic passwords and header values, decrypted with those keys, from each SQLite file
  under the base directory and each database of the session's PostgreSQL server (read before
  the server stops);
- any string shaped like a secret airhook generates (``whsec_`` and base64 of 32 bytes), known
  or not.

Each secret is looked for as written, JSON-escaped and URL-encoded.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

__all__ = ["Finding", "fingerprint", "log_files", "scan", "secret_values"]

#: Shorter strings are not taken for secrets (too many would match ordinary text).
MIN_LENGTH = 8
#: Names of module constants that hold secrets.
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PRIMARY|SECONDARY|(^|_)KEYS?$|API_KEY")
#: A secret airhook generates (``airhook.core.secrets.generate_secret``): whsec_ + base64 of 32
#: random bytes.
GENERATED = re.compile(r"whsec_[A-Za-z0-9+/]{43}=")
#: Files taken for logs.
LOG_SUFFIXES = (".log", ".out", ".err")
_MODULE_ROOTS = ("tests", "devstack", "bench")

_fernet_keys: set[str] = set()
_harvested: dict[str, str] = {}  # secret -> label, read from stores before they went away
_harvest_notes: list[str] = []
_findings_key = pytest.StashKey[list["Finding"]]()
_counts_key = pytest.StashKey[tuple[int, int, str]]()


@dataclass(frozen=True)
class Finding:
    """A secret found in a log file."""

    path: Path
    line: int
    label: str
    digest: str  # the secret's SHA-256 prefix: which one, without showing it

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.label} (sha256 {self.digest}…)"


def fingerprint(secret: str) -> str:
    """What stands for a secret in a report: the first 12 hex digits of its SHA-256."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


def _forms(secret: str) -> set[str]:
    """The secret as a log could hold it: as is, JSON-escaped, URL-encoded."""
    return {secret, json.dumps(secret)[1:-1], quote(secret, safe="")}


def scan(files: Iterable[Path], secrets: dict[str, str]) -> list[Finding]:
    """Every line of ``files`` holding one of ``secrets`` (secret → label) or a generated one.

    Unreadable bytes are read as Latin-1: a secret in a binary-ish log still matches.
    """
    wanted = [
        (form, secret, label)
        for secret, label in secrets.items()
        if len(secret) >= MIN_LENGTH
        for form in _forms(secret)
    ]
    findings: list[Finding] = []
    for path in files:
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            hit: set[str] = set()
            for form, secret, label in wanted:
                if secret not in hit and form in line:
                    hit.add(secret)
                    findings.append(Finding(path, number, label, fingerprint(secret)))
            for match in GENERATED.finditer(line):
                if match.group(0) not in hit:
                    hit.add(match.group(0))
                    label = secrets.get(match.group(0), "a generated airhook secret (whsec_…)")
                    findings.append(Finding(path, number, label, fingerprint(match.group(0))))
    return findings


def log_files(root: Path) -> Iterator[Path]:
    """The log files under ``root``: ``*.log``, ``*.out``, ``*.err`` and all under ``logs/``."""
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        inside = root in path.parents and "logs" in path.relative_to(root).parts[:-1]
        if path.suffix in LOG_SUFFIXES or inside:
            yield path


# --- which secrets ----------------------------------------------------------------------------


def _strings(value: Any, depth: int = 0) -> Iterator[str]:
    if depth > 3:
        return
    reveal = getattr(value, "reveal", None)
    if callable(reveal):
        value = reveal()
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item, depth + 1)


def _constants() -> dict[str, str]:
    """Secrets held by constants of the loaded test, devstack and bench modules."""
    found: dict[str, str] = {}
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in _MODULE_ROOTS:
            continue
        for attribute, value in list(vars(module).items()):
            if not SECRET_NAME.search(attribute) or not attribute.isupper():
                continue
            for text in _strings(value):
                if len(text) >= MIN_LENGTH:
                    found.setdefault(text, f"{name}.{attribute}")
    return found


def _devstack_secrets(root: Path) -> dict[str, str]:
    """devstack homes' ``secrets.json``: the Fernet key and the API's JWT secret."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("secrets.json")) if root.is_dir() else []:
        try:
            written = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(written, dict):
            for key, value in written.items():
                if isinstance(value, str):
                    found.setdefault(value, f"devstack secrets.json {key!r}")
                    if key == "fernet":
                        _fernet_keys.add(value)
    return found


def _credentials(connection: Any, label: str) -> dict[str, str]:
    """The secrets in an airhook store's sources and subscriptions, decrypted."""
    from cryptography.fernet import Fernet, InvalidToken, MultiFernet

    found: dict[str, str] = {}
    keys = [Fernet(key.encode()) for key in sorted(_fernet_keys)]
    if not keys:
        return found
    cipher = MultiFernet(keys)
    import sqlalchemy as sa

    inspector = sa.inspect(connection)
    for table in ("airhook_source", "airhook_subscription"):
        if not inspector.has_table(table):
            continue  # not an airhook store, or one older than subscriptions
        rows = connection.exec_driver_sql(f"SELECT name, credentials FROM {table}").all()
        for name, sealed in rows:
            try:
                credentials = json.loads(cipher.decrypt(str(sealed).encode()))
            except (InvalidToken, ValueError):
                continue
            secrets = [credentials.get("primary"), credentials.get("secondary")]
            secrets += list(credentials.get("bearer") or [])
            secrets += [pair[1] for pair in credentials.get("basic") or [] if len(pair) > 1]
            secrets += list((credentials.get("headers") or {}).values())
            for secret in secrets:
                if isinstance(secret, str) and len(secret) >= MIN_LENGTH:
                    found.setdefault(secret, f"{table[8:]} {name!r}'s secret in {label}")
    return found


def _sqlite_store_secrets(root: Path) -> dict[str, str]:
    import sqlalchemy as sa

    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.db")) if root.is_dir() else []:
        engine = sa.create_engine(f"sqlite:///{path}")
        try:
            with engine.connect() as connection:
                found.update(_credentials(connection, f"the store {path.name}"))
        except Exception as exc:
            _harvest_notes.append(f"{path}: not read ({type(exc).__name__})")
        finally:
            engine.dispose()
    return found


def _harvest_postgres(base_url: str) -> None:
    """Read every database of the session's PostgreSQL server, before it stops."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"{base_url}/postgres")
    try:
        with engine.connect() as connection:
            names = [
                row[0]
                for row in connection.exec_driver_sql(
                    "SELECT datname FROM pg_database WHERE NOT datistemplate"
                )
            ]
    finally:
        engine.dispose()
    for name in names:
        database = sa.create_engine(f"{base_url}/{name}")
        try:
            with database.connect() as connection:
                for secret, label in _credentials(connection, f"PostgreSQL {name}").items():
                    _harvested.setdefault(secret, label)
        except Exception as exc:
            _harvest_notes.append(f"PostgreSQL {name}: not read ({type(exc).__name__})")
        finally:
            database.dispose()


def secret_values(root: Path) -> dict[str, str]:
    """Every secret of the run, each with a label saying where it came from."""
    found = _constants()
    found.update({key: "a Fernet key made in this run" for key in _fernet_keys})
    found.update(_devstack_secrets(root))
    for source in (_harvested, _sqlite_store_secrets(root)):
        for secret, label in source.items():
            found.setdefault(secret, label)
    return found


# --- the hooks ----------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Record every Fernet key this process makes."""
    from cryptography.fernet import Fernet

    original = Fernet.__dict__["generate_key"].__func__
    if getattr(original, "_records_keys", False):
        return

    def generate_key(cls: type[Fernet]) -> bytes:
        key: bytes = original(cls)
        _fernet_keys.add(key.decode("ascii"))
        return key

    generate_key._records_keys = True  # type: ignore[attr-defined]
    Fernet.generate_key = classmethod(generate_key)  # type: ignore[method-assign,assignment]


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: Any) -> Iterator[None]:
    """Once the PostgreSQL server is up, read its stores when it is about to stop (a finalizer
    added after the fixture's own runs first)."""
    yield
    if fixturedef.argname != "postgres_url" or fixturedef.cached_result is None:
        return
    base_url = fixturedef.cached_result[0]
    if not isinstance(base_url, str):
        return

    def harvest() -> None:
        try:
            _harvest_postgres(base_url)
        except Exception as exc:
            _harvest_notes.append(f"PostgreSQL {base_url}: not read ({type(exc).__name__})")

    fixturedef.addfinalizer(harvest)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or getattr(factory, "_basetemp", None) is None:
        return  # no test made a temporary directory: nothing was written there
    root = Path(factory.getbasetemp())
    files, secrets = list(log_files(root)), secret_values(root)
    findings = scan(files, secrets)
    session.config.stash[_findings_key] = findings
    session.config.stash[_counts_key] = (len(files), len(secrets), str(root))
    if findings:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    findings = config.stash.get(_findings_key, None)
    if findings is None:
        return
    for note in _harvest_notes:
        terminalreporter.write_line(f"log secrets: {note}")
    files, secrets, root = config.stash.get(_counts_key, (0, 0, "?"))
    if not findings:
        terminalreporter.write_line(
            f"log secrets: {files} log files under {root} scanned for {secrets} secrets "
            "and generated ones: none found"
        )
        return
    terminalreporter.section("secrets in log files", sep="=", red=True, bold=True)
    for finding in findings[:200]:
        terminalreporter.write_line(str(finding))
    if len(findings) > 200:
        terminalreporter.write_line(f"… and {len(findings) - 200} more")
