"""A local single-node Apache Kafka broker (KRaft, combined mode) built from Maven Central jars.

Used by `anonstream broker start|stop|status`, `anonstream demo` and the pytest session
fixture, so that development, the demo and the tests all run on a real broker. The recipe
(pom, server.properties template, log4j2 config) is in `deploy/local-kafka/`; the jars are
fetched once by Maven into `deploy/local-kafka/libs/` and reused without network afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click

from stream.exceptions import BrokerError, BrokerUnreachableError
from stream.kafka import admin, tcp_reachable
from stream.local.certs import TlsFiles, make_broker_certificates, write_private
from stream.settings import Settings

RECIPE_ENV = "ANONSTREAM_KAFKA_RECIPE"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
PREFERRED_PORT = 9092


def recipe_dir() -> Path:
    """`deploy/local-kafka` of this checkout, or `$ANONSTREAM_KAFKA_RECIPE`."""
    override = os.environ.get(RECIPE_ENV)
    if override:
        return Path(override).resolve()
    return Path(__file__).resolve().parents[2] / "deploy" / "local-kafka"


def ensure_jars(recipe: Path | None = None, *, quiet: bool = False) -> Path:
    """Return the directory of broker jars, fetching them with Maven the first time."""
    recipe = recipe or recipe_dir()
    libs = recipe / "libs"
    stamp = libs / ".complete"
    if stamp.exists():
        return libs
    pom = recipe / "pom.xml"
    if not pom.exists():
        raise BrokerError(f"local Kafka recipe not found: {pom} (set {RECIPE_ENV})")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("mvn (Apache Maven) not found on PATH; it fetches the broker jars once")
    if not quiet:
        click.echo(f"fetching Kafka broker jars from Maven Central into {libs} ...", err=True)
    shutil.rmtree(libs, ignore_errors=True)
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise BrokerError("mvn could not fetch the broker jars:\n" + "\n".join(tail))
    stamp.touch()
    return libs


def free_port(preferred: int | None = None) -> int:
    """A loopback TCP port nobody listens on (`preferred` when it is free)."""
    if preferred:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", preferred))
            except OSError:
                pass
            else:
                return preferred
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cluster_id() -> str:
    """A KRaft cluster id: the 22-character URL-safe base64 of a random UUID."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


@dataclass(frozen=True)
class BrokerState:
    """What `broker status` and `broker stop` need to find a running broker."""

    pid: int
    bootstrap: str
    controller_port: int
    log_dir: str
    log_file: str
    started_at: float
    ssl_bootstrap: str | None = None  # the SSL listener, when started with `security`
    sasl_ssl_bootstrap: str | None = None  # the SASL_SSL (SCRAM-SHA-512) listener

    @property
    def port(self) -> int:
        return int(self.bootstrap.rpartition(":")[2])


SCRAM_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class BrokerSecurity:
    """The secure listeners of a local broker: TLS files and the SCRAM users to create.

    With it the broker listens on three loopback ports: PLAINTEXT (also inter-broker), SSL
    (server certificate only) and SASL_SSL (SCRAM-SHA-512 over TLS, `scram_users` created
    when the log dir is formatted: name -> password).
    """

    tls: TlsFiles
    scram_users: Mapping[str, str] = field(default_factory=dict)


class LocalBroker:
    """One local broker whose files live under `home` (`<data_dir>/broker`)."""

    def __init__(self, home: Path, *, recipe: Path | None = None) -> None:
        self.home = home
        self.recipe = recipe or recipe_dir()
        self.state_file = home / "state.json"

    # -- lifecycle --------------------------------------------------------------------
    def start(
        self,
        *,
        port: int | None = None,
        partitions: int = 6,
        auto_create_topics: bool = False,
        heap_mb: int = 512,
        security: BrokerSecurity | None = None,
    ) -> BrokerState:
        """Format a fresh log dir, start the broker and wait until it answers metadata.

        With `security`, also open an SSL and a SASL_SSL listener (see `BrokerSecurity`).
        """
        running = self.status()
        if running is not None:
            raise BrokerError(
                f"a broker started from {self.home} is already running at {running.bootstrap} "
                f"(pid {running.pid}); stop it first"
            )
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java (>= 17) not found on PATH; the local Kafka broker needs it")
        libs = ensure_jars(self.recipe)
        log_dir = self.home / "data"
        shutil.rmtree(log_dir, ignore_errors=True)
        self.home.mkdir(parents=True, exist_ok=True)
        broker_port = port or free_port(PREFERRED_PORT)
        taken = {broker_port}
        controller_port = _another_port(taken)
        secure_ports = (_another_port(taken), _another_port(taken)) if security else None
        properties = self._write_properties(
            broker_port=broker_port,
            controller_port=controller_port,
            log_dir=log_dir,
            partitions=partitions,
            auto_create_topics=auto_create_topics,
            security=security,
            secure_ports=secure_ports,
        )
        classpath = f"{libs}/*"
        self._format(java, classpath, properties, security=security)
        process, log_file = self._launch(java, classpath, properties, heap_mb=heap_mb)
        state = BrokerState(
            pid=process.pid,
            bootstrap=f"127.0.0.1:{broker_port}",
            controller_port=controller_port,
            log_dir=str(log_dir),
            log_file=str(log_file),
            started_at=time.time(),
            ssl_bootstrap=f"127.0.0.1:{secure_ports[0]}" if secure_ports else None,
            sasl_ssl_bootstrap=f"127.0.0.1:{secure_ports[1]}" if secure_ports else None,
        )
        self.state_file.write_text(json.dumps(asdict(state)))
        try:
            wait_until_ready(state.bootstrap, timeout_s=START_TIMEOUT_S, process=process)
        except BaseException:
            self.stop()
            raise
        return state

    def _log_config(self) -> str:
        return f"-Dlog4j2.configurationFile={self.recipe / 'log4j2.xml'}"

    def _write_properties(
        self,
        *,
        broker_port: int,
        controller_port: int,
        log_dir: Path,
        partitions: int,
        auto_create_topics: bool,
        security: BrokerSecurity | None,
        secure_ports: tuple[int, int] | None,
    ) -> Path:
        """`server.properties` from the recipe's templates; returns its path."""
        properties = self.home / "server.properties"
        template = string.Template((self.recipe / "server.properties.template").read_text())
        secure_listeners = secure_protocols = extra = ""
        if security is not None and secure_ports is not None:
            ssl_port, sasl_port = secure_ports
            secure_listeners = f",SSL://127.0.0.1:{ssl_port},SASL_SSL://127.0.0.1:{sasl_port}"
            secure_protocols = ",SSL:SSL,SASL_SSL:SASL_SSL"
            extra = string.Template(
                (self.recipe / "security.properties.template").read_text()
            ).substitute(
                keystore=security.tls.broker_keystore,
                ca_cert=security.tls.ca_cert,
            )
        properties.write_text(
            template.substitute(
                broker_port=broker_port,
                controller_port=controller_port,
                log_dir=log_dir,
                num_partitions=partitions,
                offsets_partitions=max(1, min(partitions, 10)),
                auto_create_topics=str(auto_create_topics).lower(),
                secure_listeners=secure_listeners,
                secure_protocols=secure_protocols,
            )
            + extra
        )
        return properties

    def _format(
        self, java: str, classpath: str, properties: Path, *, security: BrokerSecurity | None
    ) -> None:
        """Format the KRaft log dir with a fresh cluster id (and the SCRAM users)."""
        argv = [
            java,
            "-cp",
            classpath,
            self._log_config(),
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_id(),
            "-c",
            str(properties),
        ]
        # The tool takes SCRAM credentials on its command line only: a local, short-lived
        # process; the argv is never printed (errors show the tool's own output).
        for name, password in (security.scram_users if security else {}).items():
            if not name or any(c in name + password for c in ",=[]"):
                raise BrokerError(
                    f"SCRAM user names and passwords may not contain , = [ ]; got user {name!r}"
                )
            argv += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
        fmt = subprocess.run(  # noqa: S603 - fixed argv
            argv, capture_output=True, text=True, check=False
        )
        if fmt.returncode != 0:
            raise BrokerError("formatting the broker log dir failed:\n" + fmt.stdout + fmt.stderr)

    def _launch(
        self, java: str, classpath: str, properties: Path, *, heap_mb: int
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """Start the broker in its own session, output to `broker.log`; (process, log file)."""
        log_file = self.home / "broker.log"
        with log_file.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603 - fixed argv
                [
                    java,
                    f"-Xmx{heap_mb}m",
                    f"-Xms{min(heap_mb, 256)}m",
                    "-XX:+UseG1GC",
                    "-Djava.awt.headless=true",
                    self._log_config(),
                    "-cp",
                    classpath,
                    "kafka.Kafka",
                    str(properties),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return process, log_file

    def status(self) -> BrokerState | None:
        """The running broker's state, or None (a stale state file is removed)."""
        if not self.state_file.exists():
            return None
        state = BrokerState(**json.loads(self.state_file.read_text()))
        if not _alive(state.pid):
            self.state_file.unlink(missing_ok=True)
            return None
        return state

    def stop(self, *, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after `timeout_s`); False if none ran."""
        if not self.state_file.exists():
            return False
        state = BrokerState(**json.loads(self.state_file.read_text()))
        stopped = False
        if _alive(state.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _alive(state.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(state.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(state.pid, signal.SIGKILL)
                while _alive(state.pid):
                    time.sleep(0.05)
            stopped = True
        self.state_file.unlink(missing_ok=True)
        return stopped


def _another_port(taken: set[int]) -> int:
    """A free loopback port not in `taken` (which it joins)."""
    port = free_port()
    while port in taken:
        port = free_port()
    taken.add(port)
    return port


def _alive(pid: int) -> bool:
    try:
        finished, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        # Not our child (started by an earlier `anonstream broker start`): probe it.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not _is_zombie(pid)
    return finished == 0


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def wait_until_ready(
    bootstrap: str, *, timeout_s: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until a broker at `bootstrap` answers a metadata request, or raise."""
    from kafka.errors import KafkaConfigurationError, KafkaError

    # The local broker listens in PLAINTEXT on loopback, whatever the environment configures
    # for other brokers: settings built from these values only, not from ANONSTREAM_*.
    local = Settings.model_construct(bootstrap_servers=bootstrap, request_timeout_s=5.0)
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BrokerError(f"the broker exited with status {process.returncode} while starting")
        # kafka-python backs off for tens of seconds after a refused connection: only
        # hand over to it once the port accepts connections.
        if not tcp_reachable(bootstrap, timeout_s=1.0):
            last_error = "connection refused"
            time.sleep(0.1)
            continue
        try:
            client = admin(local)
        except KafkaConfigurationError:
            raise
        except (KafkaError, OSError) as exc:
            last_error = type(exc).__name__
            time.sleep(0.25)
            continue
        try:
            client.describe_cluster()
            return
        except (KafkaError, OSError) as exc:
            last_error = type(exc).__name__
            time.sleep(0.25)
        finally:
            client.close()
    raise BrokerUnreachableError(
        f"no Kafka broker answered at {bootstrap} within {timeout_s:.0f}s ({last_error})"
    )


@contextlib.contextmanager
def running_broker(
    home: Path, *, partitions: int = 6, security: BrokerSecurity | None = None
) -> Iterator[BrokerState]:
    """Start a broker for the duration of a `with` block (tests, demo)."""
    broker = LocalBroker(home)
    state = broker.start(port=free_port(), partitions=partitions, security=security)
    try:
        yield state
    finally:
        broker.stop()


SECURE_USER = "anonstream"


def secure_setup(home: Path) -> BrokerSecurity:
    """A fresh CA and broker certificate under `home/tls`, and the SCRAM user `anonstream`
    with a random password written to `home/secrets/anonstream_sasl_password` (owner-only:
    the secrets directory layout of ANONSTREAM_SECRETS_DIR); the password is never printed."""
    import secrets as random_secrets

    try:
        tls = make_broker_certificates(home / "tls")
    except ModuleNotFoundError as exc:
        raise BrokerError(
            f"--secure needs the {exc.name} package (pip install 'anonstream[dev]')"
        ) from None
    secrets_dir = home / "secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = random_secrets.token_urlsafe(24)
    write_private(secrets_dir / "anonstream_sasl_password", password.encode())
    return BrokerSecurity(tls=tls, scram_users={SECURE_USER: password})


# -- CLI ------------------------------------------------------------------------------
def _home(data_dir: str | None) -> Path:
    if data_dir:
        return Path(data_dir) / "broker"
    from stream.settings import load_settings

    return load_settings().data_dir / "broker"


@click.group("broker")
def broker_cli() -> None:
    """Run a local single-node Kafka broker (KRaft) for development and the demo."""


@broker_cli.command("start")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Loopback port; 0 = 9092 if free, otherwise any free port.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="State directory (default: ANONSTREAM_DATA_DIR, .anonstream).",
)
@click.option(
    "--partitions",
    type=click.IntRange(1, 64),
    default=6,
    help="Default partitions of auto-created internal topics.",
)
@click.option(
    "--secure",
    is_flag=True,
    help="Also open an SSL and a SASL_SSL (SCRAM-SHA-512) listener, with a fresh CA and a "
    f"user {SECURE_USER!r} whose password is written to <data-dir>/broker/secrets.",
)
def broker_start(port: int, data_dir: str | None, partitions: int, secure: bool) -> None:
    """Format a fresh log dir, start the broker, wait until it answers, print its address."""
    home = _home(data_dir)
    security = secure_setup(home) if secure else None
    state = LocalBroker(home).start(port=port or None, partitions=partitions, security=security)
    click.echo(state.bootstrap)
    lines = [f"export ANONSTREAM_BOOTSTRAP_SERVERS={state.bootstrap}"]
    if security is not None:
        lines = [
            f"export ANONSTREAM_BOOTSTRAP_SERVERS={state.sasl_ssl_bootstrap}",
            "export ANONSTREAM_SECURITY_PROTOCOL=SASL_SSL",
            f"export ANONSTREAM_SASL_MECHANISM={SCRAM_MECHANISM}",
            f"export ANONSTREAM_SASL_USERNAME={SECURE_USER}",
            f"export ANONSTREAM_SSL_CAFILE={security.tls.ca_cert}",
            f"export ANONSTREAM_SECRETS_DIR={home / 'secrets'}",
            f"(SSL without SASL: {state.ssl_bootstrap}; PLAINTEXT: {state.bootstrap})",
        ]
    click.echo(
        f"broker running (pid {state.pid}, log {state.log_file}); use it with:\n  "
        + "\n  ".join(lines),
        err=True,
    )


@broker_cli.command("stop")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
def broker_stop(data_dir: str | None) -> None:
    """Stop the local broker cleanly."""
    if LocalBroker(_home(data_dir)).stop():
        click.echo("broker stopped", err=True)
    else:
        click.echo("no broker was running", err=True)


@broker_cli.command("status")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
def broker_status(data_dir: str | None) -> None:
    """Print the local broker's address and pid; exit 1 if none runs."""
    state = LocalBroker(_home(data_dir)).status()
    if state is None:
        click.echo("no broker running", err=True)
        sys.exit(1)
    secure = (
        f" ssl={state.ssl_bootstrap} sasl_ssl={state.sasl_ssl_bootstrap}"
        if state.ssl_bootstrap
        else ""
    )
    click.echo(f"{state.bootstrap}{secure} pid={state.pid} log={state.log_file}")
