"""``ConfigLibrary``: the drop-in for the API TARS services already call
(``tars.config.ConfigLibrary``), backed by the config-manager's REST API and
its signed MQTT updates.

Start-up: REST (``GET /api/config/services/<service>``), else the service's
own verified on-disk copy, else model defaults. Values (docs/adopting.md): the
manager's value > inherited variable ``FIELD.upper()`` > model default, except
that a variable listed in ``CONFIG_PINNED_ENV`` keeps its inherited value
(reported as ``pinned``); keys the model does not declare are left out. Live
updates pass every check of ``contracts/README.md`` and
``contracts/freshness.md``, then validate against every model the service asked
for and go through its callbacks; any failure keeps the previous config in
force and is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from . import cache
from . import envelope as env
from .errors import NotInitializedError, SettingsError
from .fit import Fit, build_model, failing_keys, fit_model, reportable
from .freshness import AppliedState
from .keys import TrustedKeys, load_trusted_keys
from .mqtt import MqttSubscriber, default_client_id
from .pipeline import Counters, Outcome, UpdatePipeline
from .report import Reporter, encode
from .settings import ClientSettings, build_settings, warn_ignored

log = logging.getLogger("config_manager_client")

T = TypeVar("T", bound=BaseModel)
#: Payloads waiting for verification; more are dropped (and counted).
MAX_QUEUED = 256
#: What ``subscribe_updates`` takes: called with the new model instance, sync
#: or async (the name TARS' quickstart imports).
ConfigUpdateCallback = Callable[[Any], None] | Callable[[Any], Awaitable[None]]
Callback = ConfigUpdateCallback


class ConfigSource(str, Enum):  # noqa: UP042 - str-valued like TARS' enum
    """Where the config in force came from."""

    REST = "rest"
    LKG = "lkg"
    DEFAULTS = "defaults"
    MQTT = "mqtt"


def parse_rest_config(content: bytes, service: str) -> tuple[dict[str, Any], int, str]:
    """``config``, ``version`` and ``config_epoch`` of the manager's answer to
    ``GET /api/config/services/<service>``; ``ValueError`` for anything else
    (any bytes: the answer is untrusted until it parses)."""
    try:
        body = env.parse_strict(content)
    except (UnicodeDecodeError, ValueError):
        raise ValueError("the answer is not JSON") from None
    if not isinstance(body, dict) or body.get("service") != service:
        raise ValueError(f"the answer is not the config of {service}")
    config, version, epoch = body.get("config"), body.get("version"), body.get("config_epoch")
    if (
        not isinstance(config, dict)
        or isinstance(version, bool)
        or not isinstance(version, int)
        or not 1 <= version <= env.MAX_SAFE_INTEGER
        or not isinstance(epoch, str)
        or not env._EPOCH.fullmatch(epoch)
    ):
        raise ValueError("unexpected response shape")
    return config, version, epoch


class ConfigLibrary:
    """Configuration of one TARS service, kept current.

    Keyword arguments override the environment; ``db_path`` and
    ``hmac_key_base64`` are accepted for compatibility with TARS' library and
    not used (this client never opens the manager's database).
    """

    def __init__(
        self,
        service_name: str,
        db_path: str | None = None,
        cache_path: str | os.PathLike[str] | None = None,
        mqtt_url: str | None = None,
        signature_public_key: str | None = None,
        hmac_key_base64: str | None = None,
        *,
        manager_url: str | None = None,
        api_token: str | None = None,
        instance_id: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        if db_path is not None:
            log.warning("db_path is ignored: config-manager is read over REST, never its database")
        del hmac_key_base64  # the on-disk copy is verified with the signature key
        self.settings: ClientSettings = build_settings(
            service_name,
            manager_url=manager_url,
            api_token=api_token,
            mqtt_url=mqtt_url,
            cache_path=cache_path,
            instance_id=instance_id,
            envmap=self._environ,
        )
        self._key_text = signature_public_key
        self._trusted: TrustedKeys | None = None
        self._pipeline: UpdatePipeline | None = None
        self._subscriber: MqttSubscriber | None = None
        self._source = ConfigSource.DEFAULTS
        self._models: dict[type[BaseModel], BaseModel] = {}
        #: One callback per model: subscribing again with a model replaces it.
        self._callbacks: dict[type[BaseModel], Callback] = {}
        #: Per model, the config keys that did not fit the config in force.
        self._misfits: dict[type[BaseModel], tuple[str, ...]] = {}
        #: Per model, the fields held by the environment (CONFIG_PINNED_ENV).
        self._pinned: dict[type[BaseModel], dict[str, str]] = {}
        self._queue: asyncio.Queue[bytes | None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._cached: tuple[str, int, str] | None = None
        self._database_available = False
        self.counters = Counters()
        self._reporter = Reporter(self.settings.service, self.settings.instance_id)
        #: The current report still has to be published (changed, or reconnected).
        self._report_pending = False
        #: Set after each payload is handled (for tests and health checks).
        self.last_outcome: Outcome | None = None

    # ----------------------------------------------------------- properties
    @property
    def source(self) -> ConfigSource:
        return self._source

    @property
    def is_read_only(self) -> bool:
        """True while the config did not come from the manager (on-disk copy
        or defaults): the manager could not be reached at start-up."""
        return self._source in (ConfigSource.LKG, ConfigSource.DEFAULTS)

    @property
    def database_available(self) -> bool:
        return self._database_available

    @property
    def applied(self) -> AppliedState | None:
        return self._pipeline.applied if self._pipeline else None

    @property
    def mqtt_connected(self) -> bool:
        return self._subscriber is not None and self._subscriber.connected

    @property
    def topic(self) -> str:
        return f"system/config/{self.settings.service}"

    @property
    def instance_id(self) -> str:
        """This instance's id in applied-state reports."""
        return self.settings.instance_id

    @property
    def last_report(self) -> dict[str, Any] | None:
        """The applied-state report describing this instance now (published,
        or built only with ``CONFIG_REPORT_APPLIED=0`` or without MQTT):
        ``applied`` with the version in force, or ``rejected`` after a refused
        update; ``None`` while it runs on defaults and nothing was refused."""
        return self._reporter.current

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> ConfigLibrary:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        _t: type[BaseException] | None,
        _e: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def initialize(self) -> None:
        """Loads the start-up config and starts following updates. Fails only
        for unusable settings (no trusted key, bad URL), never because the
        manager or the broker is down."""
        if self._pipeline is not None:
            return
        self._trusted = load_trusted_keys(self._key_text, self._environ)
        warn_ignored(self.settings.service, self.settings.ignored)
        s = self.settings
        raw: dict[str, Any] = {}
        applied: AppliedState | None = None
        loaded = await self._load_rest()
        if loaded is not None:
            raw, applied = loaded
            self._source = ConfigSource.REST
            self._database_available = True
        else:
            from_disk = await asyncio.to_thread(self._load_cache)
            if from_disk is not None:
                raw = from_disk.config
                applied = AppliedState.of(from_disk)
                self._cached = (from_disk.config_epoch, from_disk.version, from_disk.checksum)
                self._source = ConfigSource.LKG
            else:
                log.warning(
                    "service=%s starting on model defaults until a fresh update arrives", s.service
                )
        self._pipeline = UpdatePipeline(
            s.service,
            self._trusted,
            s.policy,
            s.max_payload_bytes,
            applied,
            raw,
            self.counters,
        )
        if applied is not None:
            self._reporter.applied(applied, datetime.now(UTC))
            self._report_pending = True
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run(), name=f"config-updates-{s.service}")
        if s.mqtt is not None:
            self._subscriber = MqttSubscriber(
                s.mqtt,
                self.topic,
                default_client_id(s.service),
                s.mqtt_keepalive,
                self._received,
                self._reconnected,
            )
            if s.report_applied:
                self._subscriber.set_will(self._reporter.topic, encode(self._reporter.offline()))
            self._subscriber.start()
        else:
            log.warning("service=%s has no MQTT_URL: no live updates", s.service)

    async def close(self) -> None:
        """Finishes the updates already received, publishes the ``offline``
        report (when reporting and connected), then disconnects cleanly, so
        the broker discards the will."""
        if self._worker is not None and self._queue is not None:
            # Finish what was received (the on-disk copy of an applied update
            # and its report included), then stop.
            self._queue.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(self._worker), timeout=5)
            except TimeoutError:
                self._worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._worker
            self._worker = None
        if self._subscriber is not None:
            if self.settings.report_applied and self._subscriber.connected:
                info = self._subscriber.publish_retained(
                    self._reporter.topic, encode(self._reporter.offline())
                )
                self.counters.record_report(info is not None)
                if info is not None:
                    # The broker has it once acknowledged; bounded so a dead
                    # broker cannot hold up the stop (its will says offline).
                    with contextlib.suppress(RuntimeError, ValueError):
                        await asyncio.to_thread(info.wait_for_publish, 5)
            await self._subscriber.stop()
            self._subscriber = None

    # ------------------------------------------------------------------ API
    async def get_config(self, config_model: type[T]) -> T:
        """The current config as ``config_model``. Fields whose value does not
        fit the model take their default (the service still starts); the log
        names them (never their values) and the applied-state report says
        ``rejected`` / ``invalid_config`` with those ``fields``. Raises
        ``RuntimeError`` (:class:`NotInitializedError`) before
        :meth:`initialize`."""
        pipeline = self._require()
        cached = self._models.get(config_model)
        if isinstance(cached, config_model):
            return cached
        fit = fit_model(config_model, pipeline.raw, self._environ, self.settings.pinned_env)
        self._models[config_model] = fit.instance
        self._pinned[config_model] = fit.pinned
        if fit.failed:
            self._misfits[config_model] = fit.failed
            version = pipeline.applied.version if pipeline.applied else None
            log.error(
                "service=%s config version %s from %s does not fit %s: fields %s; "
                "they run on the model's defaults",
                self.settings.service,
                version if version is not None else "-",
                self._source.value,
                config_model.__name__,
                ", ".join(fit.failed),
            )
            changed = self._reporter.not_fitting(version, self._failed_fields()) is not None
        else:
            changed = False
        if self._reporter.set_pinned(self.pinned) is not None:
            changed = True
        if changed:
            # Only a report this call changed: the start-up one goes out once,
            # on connect (a flush here could race that and send it twice).
            self._report_pending = True
            self._flush_report()
        return fit.instance

    async def subscribe_updates(self, callback: Callback, config_model: type[T]) -> None:
        """Calls ``callback(new_config)`` (sync or async) for every applied
        update. If it raises, the update is refused and the previous config
        stays in force. Subscribing again with the same model replaces the
        callback (as TARS' library does)."""
        self._require()
        await self.get_config(config_model)
        self._callbacks[config_model] = callback

    @property
    def pinned(self) -> dict[str, str]:
        """Config key → variable: the fields the environment holds
        (``CONFIG_PINNED_ENV``), as reported."""
        out: dict[str, str] = {}
        for p in self._pinned.values():
            out.update(p)
        return out

    # ------------------------------------------------------------- internals
    def _failed_fields(self) -> tuple[str, ...]:
        seen: list[str] = []
        for names in self._misfits.values():
            seen.extend(n for n in names if n not in seen)
        return tuple(reportable(seen))

    def _require(self) -> UpdatePipeline:
        if self._pipeline is None:
            raise NotInitializedError("call await initialize() first")
        return self._pipeline

    async def _load_rest(self) -> tuple[dict[str, Any], AppliedState] | None:
        s = self.settings
        if s.manager_url is None:
            return None
        url = f"{s.manager_url}/api/config/services/{s.service}"
        headers = {"X-API-Token": s.api_token} if s.api_token else {}
        try:
            async with httpx.AsyncClient(timeout=s.rest_timeout) as http:
                response = await http.get(url, headers=headers)
            if response.status_code != 200:
                raise ValueError(f"{url} answered {response.status_code}")
            config, version, epoch = parse_rest_config(response.content, s.service)
            # A token not scoped to this service reads set secrets as the
            # mask: not a value, so treated as absent (inherited variable or
            # model default).
            config = {k: v for k, v in config.items() if v != env.SECRET_MASK}
        except (httpx.HTTPError, ValueError) as e:
            log.warning("service=%s could not load configuration over REST: %s", s.service, e)
            return None
        log.info("service=%s loaded configuration version %d over REST", s.service, version)
        # The body carries the service's secrets (scoped token) where the
        # envelope leaves them out: no comparable checksum.
        return config, AppliedState(epoch, version, None)

    def _load_cache(self) -> env.Envelope | None:
        path = self.settings.cache_path
        if path is None or not path.exists():
            return None
        assert self._trusted is not None
        try:
            envelope = cache.read(path, self.settings.service, self._trusted)
        except (env.Rejected, OSError) as e:
            log.warning(
                "service=%s cannot use the on-disk copy %s: %s", self.settings.service, path, e
            )
            return None
        log.info(
            "service=%s loaded configuration version %d from the on-disk copy",
            self.settings.service,
            envelope.version,
        )
        return envelope

    def _received(self, payload: bytes) -> None:
        """On the event loop, for each MQTT payload. Oversized payloads are
        refused before queueing, and the queue is bounded, so a flood on the
        topic cannot grow memory without limit (a dropped payload is counted;
        the manager re-issues the current config periodically)."""
        if self._queue is None or self._pipeline is None:
            return
        if len(payload) > self.settings.max_payload_bytes:
            outcome = Outcome(
                "reject",
                "oversized",
                f"payload is {len(payload)} bytes, more than the "
                f"{self.settings.max_payload_bytes}-byte limit",
            )
            self._pipeline.record(outcome)
            self.last_outcome = outcome
            self._report(outcome, datetime.now(UTC))
        elif self._queue.qsize() >= MAX_QUEUED:
            outcome = Outcome("reject", "overloaded", f"more than {MAX_QUEUED} payloads queued")
            self._pipeline.record(outcome)
        else:
            self._queue.put_nowait(payload)

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            payload = await self._queue.get()
            if payload is None:
                return
            try:
                await self.handle_payload(payload, datetime.now(UTC))
            except Exception:
                log.exception("service=%s failed to handle an update", self.settings.service)

    async def handle_payload(self, payload: bytes, now: datetime) -> Outcome:
        """Runs one payload through every check, the models and the callbacks;
        commits it only if all succeed. Public for tests and replays."""
        pipeline = self._require()
        try:
            outcome = pipeline.check(payload, now)
        except Exception as e:  # a bug, never an input: still one counted rejection
            log.exception("service=%s failed to check an update", self.settings.service)
            outcome = Outcome("reject", "internal_error", f"check failed: {type(e).__name__}")
        if outcome.action == "apply":
            outcome = await self._apply(pipeline, outcome)
        pipeline.record(outcome)
        self.last_outcome = outcome
        self._report(outcome, now)
        if outcome.envelope is not None and outcome.action in ("apply", "ignore"):
            await self._save(outcome.envelope)
        return outcome

    def _report(self, outcome: Outcome, now: datetime) -> None:
        """Updates the applied-state report after an outcome and publishes it
        if it changed; a re-issue (``ignore``) changes nothing."""
        if outcome.action == "apply":
            applied = self._require().applied
            if applied is None:
                return
            self._reporter.applied(applied, now)
            if self._subscriber is not None and self.settings.report_applied:
                # The will names what runs from the next (re)connect on.
                self._subscriber.set_will(self._reporter.topic, encode(self._reporter.offline()))
        elif outcome.action == "reject":
            version = outcome.version
            if version is None and outcome.envelope is not None:
                version = outcome.envelope.version
            if self._reporter.rejected(outcome.reason, version, outcome.fields) is None:
                return
        else:
            return
        self._report_pending = True
        self._flush_report()

    def _reconnected(self) -> None:
        """On the event loop after each (re)connect: say again what runs."""
        if self._reporter.current is not None:
            self._report_pending = True
            self._flush_report()

    def _flush_report(self) -> None:
        """Publishes the current report if one is pending. Never raises and
        never blocks: a report that cannot go out now is counted and sent
        after the next connect; config delivery does not wait for it."""
        report = self._reporter.current
        if not self._report_pending or report is None:
            return
        if not self.settings.report_applied or self._subscriber is None:
            self._report_pending = False
            return
        if not self._subscriber.connected:
            return  # sent by _reconnected
        try:
            info = self._subscriber.publish_retained(self._reporter.topic, encode(report))
        except (OSError, ValueError, RuntimeError) as e:
            log.warning(
                "service=%s could not publish the applied-state report: %s",
                self.settings.service,
                e,
            )
            info = None
        if info is not None:
            self._report_pending = False
        self.counters.record_report(info is not None)

    async def _apply(self, pipeline: UpdatePipeline, outcome: Outcome) -> Outcome:
        assert outcome.config is not None
        fits: dict[type[BaseModel], Fit[BaseModel]] = {}
        wanted = list(self._models) + [m for m in self._callbacks if m not in self._models]
        failed: list[str] = []
        for model in wanted:
            try:
                fit = fit_model(model, outcome.config, self._environ, self.settings.pinned_env)
            except ValidationError as e:
                failed.extend(k for k in failing_keys(e) if k not in failed)
                continue
            fits[model] = fit
            failed.extend(k for k in fit.failed if k not in failed)
        if failed:
            names = ", ".join(failed)
            version = outcome.envelope.version if outcome.envelope else "-"
            log.error(
                "service=%s update to version %s does not fit the model: fields %s",
                self.settings.service,
                version,
                names,
            )
            detail = f"config does not fit the model: fields {names}"
            return Outcome(
                "reject",
                "invalid_config",
                detail,
                outcome.envelope,
                fields=tuple(reportable(failed)),
            )
        for model, callback in self._callbacks.items():
            try:
                result = callback(fits[model].instance)
                if inspect.isawaitable(result):
                    await result
            except Exception as e:
                detail = f"on-change callback failed: {type(e).__name__}: {e}"
                return Outcome("reject", "callback_failed", detail, outcome.envelope)
        pipeline.commit(outcome)
        self._models = {m: f.instance for m, f in fits.items()}
        self._pinned = {m: f.pinned for m, f in fits.items()}
        self._misfits = {}
        self._reporter.set_pinned(self.pinned)
        self._source = ConfigSource.MQTT
        return outcome

    async def _save(self, envelope: env.Envelope) -> None:
        """Writes the on-disk copy when the applied (epoch, version, checksum)
        differs from what is there; re-issues do not rewrite it."""
        pipeline = self._require()
        ident = (envelope.config_epoch, envelope.version, envelope.checksum)
        applied = pipeline.applied
        if applied is None or (applied.epoch, applied.version) != ident[:2]:
            return
        if self._cached == ident or self.settings.cache_path is None:
            return
        path: Path = self.settings.cache_path
        try:
            await asyncio.to_thread(cache.write, path, envelope)
            self._cached = ident
        except OSError as e:
            log.warning(
                "service=%s cannot write the on-disk copy %s: %s", self.settings.service, path, e
            )


__all__ = [
    "ConfigLibrary",
    "ConfigSource",
    "ConfigUpdateCallback",
    "SettingsError",
    "build_model",
]
