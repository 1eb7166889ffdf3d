"""Signed webhooks as a sink: each matching event POSTed to each webhook, at least once.

:class:`WebhookSink` takes the dispatcher's event notices. For every event
that passes a webhook's filters (``kinds``, ``streams``, ``labels``) it writes
one row per webhook into the outbox (:mod:`.webhook_outbox`,
``DATA_DIR/webhooks.db``) in one transaction, committed and fsynced before
:meth:`~WebhookSink.on_event` returns: from then on the delivery survives a
kill or a power cut (what the dispatcher still buffered for this sink, in
memory, does not). Each row's ``webhook-id`` is derived from the event id and
the webhook (:func:`.webhook_signing.webhook_id`), the same over all attempts
and restarts, so a receiver de-duplicates.

Each webhook has its own worker thread (``webhook:<n>``): a slow or dead
receiver only delays its own deliveries. A worker sends its due rows oldest
first, one at a time, each attempt signed afresh (``webhook-timestamp`` is
the time of the attempt). A 2xx delivers; a connection error, a timeout,
408, 429 or 5xx schedules that row again after the backoff of
:class:`.webhook_retry.RetryPolicy` (or the ``Retry-After`` asked for, if
longer) and pauses the whole webhook by the backoff of its failures in a
row, so a receiver that is down is not hammered with every pending row;
after three failures in a row the first success makes every waiting row
due at once (the receiver is back). Any other status, redirects included
(never followed), is final and logged. A row still undelivered
``max_age_h`` after its event was queued is given up (failed). On start,
the pending rows of the previous run are resumed where their schedule left
them; those of a webhook no longer configured (webhooks are told apart by
URL) are marked failed, and logged. A webhook with ``max_pending`` rows
waiting takes no more until some are done (the drops are counted and logged).

The secrets never leave this module: they are registered with
:func:`stream_detect.redact.register_secret`, logs name a webhook by its
redacted URL, and neither the outbox nor :meth:`~WebhookSink.stats` nor the
deliveries route holds them.
"""

from __future__ import annotations

import http.client
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..redact import redact, redact_url, register_secret
from ..sinks import FrameResult, Notice
from ..sources.capture import StateChange
from .webhook_config import SECRET_PREFIX, WebhookConfig
from .webhook_http import Aborted, Answer, Poster, describe_error
from .webhook_outbox import Due, NewDelivery, Outbox, WebhookOutboxError, outbox_path
from .webhook_retry import RetryPolicy, Verdict, retry_after_s, verdict
from .webhook_signing import hook_key, signed_headers, webhook_id

log = logging.getLogger(__name__)

DUE_BATCH = 50
MAX_WAIT_S = 1.0  # workers look at the stop flag and the main thread at least this often
RECOVERY_FAILURES = 3  # failures in a row that make the next success a recovery: waiting rows go at once
PRUNE_INTERVAL_S = 600.0
DROP_LOG_INTERVAL_S = 10.0
STORE_ERROR_WAIT_S = 1.0


@dataclass(frozen=True)
class WebhookStats:
    """Counters since the sink started, and the deliveries pending now (for metrics)."""

    delivered: int
    failed: int  # given up: a final answer, or the retry horizon passed
    attempts: int  # POSTs made, whatever their outcome
    pending: int  # in the outbox, waiting for their first or a further attempt (a gauge)
    dropped: int  # deliveries not queued: their webhook already had max_pending waiting
    lost: int  # deliveries not queued: the outbox could not be written (logged)


class _Counters:
    def __init__(self, pending: Mapping[str, int]) -> None:
        self.lock = threading.Lock()
        self.pending = dict(pending)
        self.delivered = self.failed = self.attempts = self.dropped = self.lost = 0


class _Hook:
    """One configured webhook: its filters, its outbox key, its poster and its worker thread."""

    def __init__(self, index: int, config: WebhookConfig, sink: WebhookSink) -> None:
        self.index = index
        self.config = config
        self.key = hook_key(config.url)
        self.shown_url = redact_url(config.url)
        self._secret = config.key
        self._sink = sink
        self._poster = Poster(config.url, config.timeout_s)
        self._wake = threading.Event()
        self._failures = 0  # in a row, any row
        self._paused_until = 0.0
        self._thread = threading.Thread(target=self._run, name=f"webhook:{index}")

    def matches(self, event: Mapping[str, Any]) -> bool:
        config = self.config
        return ((config.kinds is None or event.get("kind") in config.kinds)
                and (config.streams is None or event.get("stream") in config.streams)
                and (config.labels is None or event.get("label") in config.labels))

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._poster.abort()
        self._wake.set()

    def join(self, timeout_s: float) -> bool:
        if self._thread.ident is not None:
            self._thread.join(max(0.0, timeout_s))
        return not self._thread.is_alive()

    # --- the worker thread ---------------------------------------------------------------

    def _run(self) -> None:
        sink = self._sink
        while not sink.stopping.is_set() and threading.main_thread().is_alive():
            try:
                wait = self._work()
            except (sqlite3.Error, WebhookOutboxError) as error:
                if sink.stopping.is_set():
                    return
                log.error("webhook %s: the outbox failed: %s", self.shown_url, redact(str(error)))
                wait = STORE_ERROR_WAIT_S
            except Exception:
                log.exception("webhook %s: delivery failed unexpectedly", self.shown_url)
                wait = STORE_ERROR_WAIT_S
            if wait > 0:
                self._wake.wait(min(wait, MAX_WAIT_S))
                self._wake.clear()

    def _work(self) -> float:
        """Sends what is due now; how long to wait before looking again."""
        outbox, clock = self._sink.outbox, self._sink.clock
        now = clock()
        if now < self._paused_until:
            return self._paused_until - now
        due = outbox.due(self.key, now, DUE_BATCH)
        if not due:
            next_at = outbox.next_due(self.key)
            return MAX_WAIT_S if next_at is None else next_at - now
        for row in due:
            if self._sink.stopping.is_set() or not self._attempt(row):
                break
        return 0.0

    def _attempt(self, row: Due) -> bool:
        """One attempt at ``row``; False when the webhook should pause (or the sink is closing)."""
        sink = self._sink
        now = sink.clock()
        if now >= row.created_at + self.config.max_age_s:
            sink.outbox.expire(row.webhook_id, at=now, reason=f"not delivered within {self.config.max_age_h:g} h")
            sink.finished(self.key, delivered=False)
            log.warning("webhook %s: %s (event %s) given up after %d attempts: older than max_age_h",
                        self.shown_url, row.webhook_id, redact(row.event_id[:100]), row.attempts)
            return True
        headers = signed_headers(self._secret, row.webhook_id, int(now), row.body)
        try:
            answer = self._poster.post(row.body, headers)
        except Aborted:
            return False  # closing: the row stays as it was, for the next start
        except (OSError, http.client.HTTPException) as error:
            sink.attempted()
            return self._retry(row, None, describe_error(error), None)
        sink.attempted()
        outcome = verdict(answer.status)
        if outcome is Verdict.DELIVERED:
            self._delivered(row, answer)
            return True
        if outcome is Verdict.RETRY:
            return self._retry(row, answer.status, _answer_error(answer), retry_after_s(answer.retry_after, now))
        if 300 <= answer.status < 400:
            final = f"HTTP {answer.status}: redirect to {redact_url(answer.location or '?')[:200]} not followed"
        else:
            final = _answer_error(answer)
        sink.outbox.record(row.webhook_id, at=sink.clock(), status="failed", status_code=answer.status, error=final)
        sink.finished(self.key, delivered=False)
        self._failures = 0  # the receiver answered: it is up
        log.warning("webhook %s: %s (event %s) not delivered, final: %s", self.shown_url, row.webhook_id,
                    redact(row.event_id[:100]), final)
        return True

    def _delivered(self, row: Due, answer: Answer) -> None:
        sink = self._sink
        now = sink.clock()
        sink.outbox.record(row.webhook_id, at=now, status="delivered", status_code=answer.status, error=None)
        sink.finished(self.key, delivered=True)
        if self._failures >= RECOVERY_FAILURES:
            hurried = sink.outbox.hurry(self.key, now)
            log.info("webhook %s: delivering again after %d failures in a row; %d waiting deliveries due now",
                     self.shown_url, self._failures, hurried)
        self._failures = 0

    def _retry(self, row: Due, status_code: int | None, error: str, retry_after: float | None) -> bool:
        sink, policy = self._sink, self._sink.retry
        now = sink.clock()
        self._failures += 1
        if self._failures == 1:
            log.warning("webhook %s: delivery failed (%s); retrying", self.shown_url, error)
        wait = policy.next_wait(row.attempts + 1, retry_after, sink.rng)
        if now + wait >= row.created_at + self.config.max_age_s:
            sink.outbox.record(row.webhook_id, at=now, status="failed", status_code=status_code,
                               error=f"{error} (gave up: the next attempt would be past max_age_h)")
            sink.finished(self.key, delivered=False)
            log.warning("webhook %s: %s (event %s) given up after %d attempts: %s", self.shown_url,
                        row.webhook_id, redact(row.event_id[:100]), row.attempts + 1, error)
        else:
            sink.outbox.record(row.webhook_id, at=now, status="pending", status_code=status_code, error=error,
                               next_at=now + wait)
            log.debug("webhook %s: %s again in %.1f s (%s)", self.shown_url, row.webhook_id, wait, error)
        self._paused_until = now + policy.next_wait(self._failures, retry_after, sink.rng)
        return False


def _answer_error(answer: Answer) -> str:
    text = " ".join(answer.text.split())
    return redact(f"HTTP {answer.status}" + (f": {text}" if text else ""))[:300]


class WebhookSink:
    """Delivers the events that match each webhook's filters, signed, through a durable outbox.

    Args:
        webhooks: the configured webhooks (``Config.webhooks``); their URLs must differ.
        data_dir: the data directory; the outbox is ``data_dir/webhooks.db``.
        retry: the backoff between attempts.
        max_pending: deliveries waiting per webhook at most; further events for it are dropped (counted).
        keep_finished_days: delivered and failed rows are deleted this long after they finished.
        clock: epoch seconds now.
        rng: the jitter's random numbers.

    Raises:
        ConfigError: two webhooks have the same URL.
        WebhookOutboxError: the outbox cannot be opened (see :class:`.webhook_outbox.Outbox`).
    """

    name = "webhooks"

    def __init__(self, webhooks: Sequence[WebhookConfig], data_dir: Path, *, retry: RetryPolicy | None = None,
                 max_pending: int = 100_000, keep_finished_days: float = 7.0,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        if max_pending < 1 or keep_finished_days <= 0:
            raise ValueError("max_pending must be at least 1 and keep_finished_days positive")
        self.retry = retry or RetryPolicy()
        self.max_pending = max_pending
        self.keep_finished_s = keep_finished_days * 86400.0
        self.clock = clock
        self.rng = rng or random.Random()
        self.stopping = threading.Event()
        self._closed = False
        self._last_drop_log = -DROP_LOG_INTERVAL_S
        for config in webhooks:
            secret = config.secret.get_secret_value()
            register_secret(secret)
            register_secret(secret.removeprefix(SECRET_PREFIX))
        self._hooks = [_Hook(index, config, self) for index, config in enumerate(webhooks)]
        seen: dict[str, int] = {}
        for hook in self._hooks:
            if hook.key in seen:
                raise ConfigError(f"webhooks {seen[hook.key]} and {hook.index} have the same url "
                                  f"{hook.shown_url}: merge their filters into one")
            seen[hook.key] = hook.index
        self.outbox = Outbox(outbox_path(data_dir))
        try:
            now = clock()
            abandoned = self.outbox.abandon_hooks(seen, now)
            if abandoned:
                log.warning("webhooks: %d pending deliveries of webhooks no longer configured marked failed",
                            abandoned)
            self.outbox.prune(now - self.keep_finished_s)
            pending = self.outbox.pending_by_hook()
        except BaseException:
            self.outbox.close()
            raise
        self._next_prune = time.monotonic() + PRUNE_INTERVAL_S
        self._counters = _Counters({hook.key: pending.get(hook.key, 0) for hook in self._hooks})
        if sum(pending.values()):
            log.info("webhooks: resuming %d pending deliveries", sum(pending.values()))
        for hook in self._hooks:
            hook.start()

    # --- the sink --------------------------------------------------------------------------

    def on_event(self, notice: Notice) -> None:
        """Queues the event for each webhook it matches; committed to disk when this returns."""
        if notice.type != "event" or self._closed:
            return
        event = notice.message
        event_id = event.get("id")
        if not isinstance(event_id, str) or not event_id:
            log.error("webhooks: an event without an id is not sent (kind %r)", event.get("kind"))
            return
        hooks = [hook for hook in self._hooks if hook.matches(event)]
        if not hooks:
            return
        queued = self._with_room(hooks)
        if queued:
            rows = [NewDelivery(webhook_id(event_id, hook.key), hook.key, hook.shown_url, event_id, notice.json())
                    for hook in queued]
            try:
                new = self.outbox.add(rows, self.clock())
            except (sqlite3.Error, WebhookOutboxError) as error:
                with self._counters.lock:
                    self._counters.lost += len(rows)
                log.error("webhooks: event %s not queued for %d webhooks: %s", redact(event_id[:100]), len(rows),
                          redact(str(error)))
                return
            with self._counters.lock:
                for hook, is_new in zip(queued, new, strict=True):
                    self._counters.pending[hook.key] += is_new
            for hook in queued:
                hook.wake()
        self._maybe_prune()

    def _with_room(self, hooks: list[_Hook]) -> list[_Hook]:
        counters = self._counters
        with counters.lock:
            full = [hook for hook in hooks if counters.pending[hook.key] >= self.max_pending]
            counters.dropped += len(full)
            dropped = counters.dropped
        now = time.monotonic()
        if full and now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            self._last_drop_log = now
            log.warning("webhooks: %s have %d deliveries pending; events dropped for them so far: %d",
                        ", ".join(hook.shown_url for hook in full), self.max_pending, dropped)
        return [hook for hook in hooks if hook not in full]

    def _maybe_prune(self) -> None:
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_INTERVAL_S
        try:
            self.outbox.prune(self.clock() - self.keep_finished_s)
        except (sqlite3.Error, WebhookOutboxError) as error:
            log.error("webhooks: pruning finished deliveries failed: %s", error)

    def on_result(self, result: FrameResult) -> None:
        pass

    def on_status(self, change: StateChange) -> None:
        pass

    def close(self, timeout_s: float = 10.0) -> None:
        """Stops the workers (an attempt in flight is cut short and stays pending) and closes the outbox;
        idempotent."""
        if self._closed:
            return
        self._closed = True
        self.stopping.set()
        for hook in self._hooks:
            hook.stop()
        deadline = time.monotonic() + timeout_s
        stuck = [hook.shown_url for hook in self._hooks if not hook.join(deadline - time.monotonic())]
        if stuck:
            log.error("webhooks: the workers of %s did not stop within %.0f s", ", ".join(stuck), timeout_s)
            return  # they still use the outbox
        self.outbox.close()

    def __enter__(self) -> WebhookSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- for the workers, the API and metrics -------------------------------------------------

    def attempted(self) -> None:
        with self._counters.lock:
            self._counters.attempts += 1

    def finished(self, hook: str, *, delivered: bool) -> None:
        with self._counters.lock:
            self._counters.pending[hook] = max(0, self._counters.pending[hook] - 1)
            if delivered:
                self._counters.delivered += 1
            else:
                self._counters.failed += 1

    def stats(self) -> WebhookStats:
        """Delivered, failed, attempts and dropped since start; pending now."""
        counters = self._counters
        with counters.lock:
            return WebhookStats(counters.delivered, counters.failed, counters.attempts,
                                sum(counters.pending.values()), counters.dropped, counters.lost)

    def deliveries(self, *, status: str | None = None, limit: int = 100,
                   cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """See :meth:`.webhook_outbox.DeliveryReader.deliveries`."""
        return self.outbox.reader.deliveries(status=status, limit=limit, cursor=cursor)
