"""The host's side of ``edge demo seg|kws --device URL``: start the demo on the board, print
the board's view URL, follow its status until Ctrl-C (or until the demo ends there), then stop
it on the board."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sdk.errors import DeviceError, InputError


def is_board_url(value: str | None) -> bool:
    """A ``--device`` value that names a board's agent (http:// or https://), not a
    microphone."""
    return bool(value) and str(value).lower().startswith(("http://", "https://"))


def refuse_local_options(kind: str, given: dict[str, Any]) -> None:
    """One line for an option that only the host-local demo honours."""
    for name, (value, why) in given.items():
        if value:
            raise InputError(f"{name} is not available with --device URL: the {kind} demo runs "
                             f"on the board ({why})")


def _sigterm_as_interrupt() -> Callable[[], None]:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    return lambda: signal.signal(signal.SIGTERM, old)


def _seg_line(st: dict[str, Any]) -> str:
    labels = ", ".join(f"{x['label']} {x['share']:.0%}" for x in st.get("labels", []))
    return (f"frame {st.get('frame', 0):5d}  {st.get('fps', 0.0):5.1f} fps  latency "
            f"{st.get('latency_ms', 0.0):7.1f} ms  {labels}")


def run_remote_demo(kind: str, device: str, token: str | None, ca: str | None,
                    params: dict[str, Any], echo: Callable[..., None],
                    poll_s: float = 0.5) -> dict[str, Any]:
    """Run the ``kind`` demo on the board at ``device`` until Ctrl-C or its end; returns the
    demo's final state. A refusal (bad source, a demo already running) is a one-line
    :class:`~sdk.errors.DeviceError`."""
    from sdk.agent.client import DeviceClient

    c = DeviceClient(device, token=token, ca=ca, timeout=600.0)
    r = c.demo_start(kind, {k: v for k, v in params.items() if v is not None})
    d = r["demo"]
    demo_id = d["id"]
    echo(f"{kind} demo running on the board {c.url}: {d['model']}; source {d['source']}")
    echo(f"view: {c.url}{r['view_path']} (served by the board; the ticket lasts while this "
         f"demo runs, until {r['ticket_expires_at']} at most); Ctrl-C stops")
    c.timeout = 30.0
    restore = _sigterm_as_interrupt()
    since, last_line = 0, 0.0
    final: dict[str, Any] | None = None
    err: BaseException | None = None
    try:
        while True:
            time.sleep(poll_s)
            d = c.demo_status(since)
            if d is None or d["id"] != demo_id:
                raise DeviceError(f"the {kind} demo on {c.url} was stopped from elsewhere")
            for ev in d["events"]:
                since = ev["n"]
                echo(f"{ev['time_s']:8.2f} s  detected {ev['keyword']!r:8s} confidence "
                     f"{ev['confidence']:.2f}")
            st = d["stats"]
            now = time.monotonic()
            if st and now - last_line >= (1.0 if kind == "seg" else 5.0):
                last_line = now
                if kind == "seg":
                    echo(_seg_line(st))
                else:
                    echo(f"{st.get('audio_s', 0.0):8.2f} s of audio  level "
                         f"{st.get('level_dbfs', float('nan')):6.1f} dBFS  "
                         f"{d['n_events']} detection(s)")
            if d["state"] != "running":
                final = d
                break
    except KeyboardInterrupt:
        echo("stopping the demo on the board")
    except BaseException as exc:  # noqa: BLE001 - stop the board's demo, then re-raise this
        err = exc
    finally:
        restore()
        try:
            final = c.demo_stop(demo_id)
        except DeviceError as exc:
            if err is None and final is None:
                err = exc
    if err is not None:
        raise err
    assert final is not None
    if final["state"] == "failed":
        raise DeviceError(f"the {kind} demo failed on the board: {final['reason']}")
    st = final.get("stats") or {}
    if kind == "seg":
        echo(f"stopped on the board ({final['reason']}): {st.get('frame', 0)} frames in "
             f"{final['uptime_s']:.1f} s, {st.get('fps', 0.0):.1f} fps, latency median "
             f"{st.get('latency_median_ms', 0.0):.1f} ms")
    else:
        echo(f"stopped on the board ({final['reason']}): {final['n_events']} detection(s) in "
             f"{st.get('audio_s', 0.0):.1f} s of audio; compute "
             f"{st.get('hop_ms_median') or 0.0:.3f} ms per 10 ms hop")
    return final
