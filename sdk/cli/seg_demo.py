"""`edge demo seg`: live semantic segmentation by an integer-only ViT (I-Segmenter style).

Frames come from ``--source``: a camera index, a V4L2 path, a GStreamer pipeline ending in
``appsink``, a video file, an image folder, ``photos`` (scikit-image's photographs) or the
scene generator (the default, and the fallback, with a one-line notice, when a camera cannot
be opened). Each frame's centre square is segmented, the labels are blended over the frame with
a legend, and per-frame latency, FPS and modelled energy are shown. ``--serve HOST:PORT``
serves a page with the live annotated MJPEG stream and live stats (any number of viewers);
``--window`` opens an OpenCV window where a GUI build of OpenCV and a display exist; otherwise
one line per frame is printed. Ctrl-C stops cleanly.

``--device URL`` (an ``edge agent``'s http:// or https:// URL) runs the demo ON that board
instead: ``--source`` is resolved there (its camera, a file on the board, or the generator),
``--model`` is ``active`` (the deployed model), ``sample`` or a path on the board (default: the
active model when it is a segmentation model, else the sample), the browser view is served by
the board (the printed URL carries a view ticket), and status lines (fps, labels) print here
until Ctrl-C, which stops the demo on the board (see :mod:`sdk.agent.demo`).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import click


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT (e.g. 0.0.0.0:8080, port 0 = any "
                                 "free port)", param_hint="--serve")
    return host or "127.0.0.1", int(port)


def _resolve_model(model: str | None, use_float: bool, echo) -> Path:
    from sdk.errors import InputError
    from sdk.vision.segment import compile_segmenter, default_model

    path = Path(model) if model else default_model()
    if not path.is_file():
        raise InputError(f"model {path} does not exist; pass --model MODEL.onnx|.edge")
    if path.suffix not in (".onnx", ".edge"):
        raise InputError(f"model {path} is neither .onnx nor .edge")
    if use_float:
        if path.suffix != ".onnx":
            raise InputError("--float needs a float .onnx model (--model MODEL.onnx)")
        return path
    if path.suffix == ".edge":
        return path
    t0 = time.perf_counter()
    out = compile_segmenter(path)
    took = time.perf_counter() - t0
    echo(f"integer bundle of {path.name}: {out} ({'cached' if took < 2 else f'compiled in {took:.0f} s'}, "
         f"{out.stat().st_size:,} bytes vs {path.stat().st_size:,} float)")
    return out


def _stop_on_sigterm():
    """SIGTERM (a service manager's stop) ends the loop like Ctrl-C, so the server is closed;
    returns a function that puts the previous handler back."""
    import signal
    import threading

    def stop(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = signal.signal(signal.SIGTERM, stop)
    return lambda: signal.signal(signal.SIGTERM, old)


@click.command("seg")
@click.option("--source", default=None, metavar="SPEC",
              help="camera index, /dev/videoN, GStreamer pipeline (… ! appsink), video file, "
                   "image folder, 'photos' or 'generator' (default)")
@click.option("--model", type=click.Path(dir_okay=False),
              help="segmentation model .onnx (compiled to integers here) or .edge "
                   "[default: samples/seg/seg_vit_mask.onnx]")
@click.option("--float", "use_float", is_flag=True, help="run the float ONNX model instead")
@click.option("--backend", help="backend for the session (reference, onnxruntime, litert, …)")
@click.option("--target", help="board profile (delegates, providers, energy table)")
@click.option("--serve", "serve", metavar="HOST:PORT",
              help="serve the live view: page at /, MJPEG at /stream.mjpg, stats at /stats.json")
@click.option("--window", is_flag=True, help="show an OpenCV window (needs a GUI OpenCV build)")
@click.option("--frames", type=int, help="stop after this many frames")
@click.option("--seconds", type=float, help="stop after this many seconds")
@click.option("--loop", is_flag=True, help="restart a video file or image folder at its end")
@click.option("--max-fps", default=15.0, show_default=True,
              help="pace frames to at most this rate (0 = as fast as possible)")
@click.option("--size", default=320, show_default=True,
              help="side of generated frames (the generator source)")
@click.option("--seed", default=0, show_default=True, help="seed of the scene generator")
@click.option("--save", type=click.Path(dir_okay=False), help="write the last annotated frame "
              "(PNG/JPEG) here")
@click.option("--device", metavar="URL",
              help="run the demo ON the board whose `edge agent` is at URL (e.g. "
                   "http://raspberrypi.local:4910): its camera, its browser view; --model is "
                   "then active, sample or a path on the board")
@click.option("--token", help="the agent's access token, with --device (env EDGE_DEVICE_TOKEN, "
                              "or ~/.config/edge/devices.toml)")
@click.option("--ca", type=click.Path(dir_okay=False),
              help="CA/certificate file of the agent's HTTPS certificate, with --device")
def command(source: str | None, model: str | None, use_float: bool, backend: str | None,
            target: str | None, serve: str | None, window: bool, frames: int | None,
            seconds: float | None, loop: bool, max_fps: float, size: int, seed: int,
            save: str | None, device: str | None, token: str | None, ca: str | None) -> None:
    """Live segmentation of camera / video / image / generated frames by the integer ViT
    (here, or on a board with --device URL)."""
    import numpy as np

    if device is not None or token is not None or ca is not None:
        from sdk.agent.demo_remote import refuse_local_options, run_remote_demo
        from sdk.errors import InputError

        if device is None:
            raise InputError("--token and --ca go with --device URL (the board's agent)")
        refuse_local_options("seg", {
            "--serve": (serve, "the board serves the view; open the URL printed"),
            "--window": (window, "the board serves the view; open the URL printed"),
            "--save": (save, "frames stay on the board"),
            "--float": (use_float, "the board runs its integer model"),
            "--backend": (backend, "the agent's --backend applies"),
            "--target": (target, "the agent's --target applies")})
        if frames is not None and frames < 1:
            raise click.BadParameter("must be >= 1", param_hint="--frames")
        run_remote_demo("seg", device, token, ca, {
            "source": source, "model": model, "max_fps": max_fps, "seconds": seconds,
            "frames": frames, "loop": loop or None, "size": size, "seed": seed}, click.echo)
        return

    from sdk.vision.overlay import encode_jpeg, overlay
    from sdk.vision.scenes import CLASSES
    from sdk.vision.segment import Segmenter, modelled_energy_uj
    from sdk.vision.sources import GeneratorSource, SourceUnavailable, open_source

    if frames is not None and frames < 1:
        raise click.BadParameter("must be >= 1", param_hint="--frames")
    if max_fps < 0:
        raise click.BadParameter("must be >= 0", param_hint="--max-fps")
    hp = _host_port(serve) if serve else None
    try:
        src = open_source(source, size=size, seed=seed, loop=loop)
    except SourceUnavailable as exc:
        click.echo(f"{exc}: falling back to the scene generator")
        src = GeneratorSource(size, seed)
    model_path = _resolve_model(model, use_float, click.echo)
    if target is not None and not use_float:
        from targets import load_target

        if load_target(target).is_mcu:  # a microcontroller: the model must fit its firmware
            from sdk.vision.mcu import segmenter_image

            mcu = segmenter_image(model_path, target,
                                  name=Path(model).stem if model else "seg_vit_mask")
            click.echo(f"{mcu.target}: {mcu.weights_bytes:,} B of int8 weights, "
                       f"{mcu.arena_bytes:,} B arena, {mcu.image_bytes:,} B flash image; the "
                       "frames run here on the same integer kernels (tools/seg_eval.py --mcu "
                       "runs them in the QEMU firmware)")
    seg = Segmenter(model_path, backend=backend, target=target)
    if seg.classes != len(CLASSES):
        click.echo(f"note: the model has {seg.classes} classes, the legend names "
                   f"{len(CLASSES)}")
    names = list(CLASSES) + [f"class {i}" for i in range(len(CLASSES), seg.classes)]
    energy = modelled_energy_uj(model_path, target)
    backend_name = str(getattr(seg.session, "backend", backend or "reference"))
    kind = "integer" if seg.integer else "float"
    click.echo(f"model {model_path.name} ({kind}, {seg.size}x{seg.size} input) on "
               f"{backend_name}; source: {src.name}"
               + (f"; modelled energy {energy:.1f} uJ/frame ({target or 'laptop'})"
                  if energy is not None else ""))
    server = None
    if hp is not None:
        from sdk.vision.mjpeg import MjpegServer

        try:
            server = MjpegServer(hp[0], hp[1], title=f"edge demo seg: {model_path.name}").start()
        except OSError as exc:
            src.close()
            raise click.ClickException(f"cannot serve on {serve}: {exc.strerror or exc}; pick "
                                       "another port (0 = any free port)") from None
        click.echo(f"serving {server.url} (MJPEG at {server.url}stream.mjpg); Ctrl-C stops",
                   nl=True)
    show = None
    if window:
        try:
            import cv2

            cv2.namedWindow("edge demo seg")
            show = cv2
        except Exception:  # noqa: BLE001 - headless OpenCV raises cv2.error
            click.echo("no window: this OpenCV build has no GUI (opencv-python-headless) or "
                       "there is no display; use --serve HOST:PORT to watch in a browser")
    lat: list[float] = []
    fps = 0.0
    n = 0
    last = None
    restore_sigterm = _stop_on_sigterm()
    t_start = time.perf_counter()
    try:
        pending = src.read()  # the first frame (and the source's set-up) before the clock
        seg(np.zeros((seg.size, seg.size, 3), np.uint8))  # warm-up: JIT kernels load
        t_start = time.perf_counter()
        t_prev = t_start
        while True:
            if frames is not None and n >= frames:
                break
            if seconds is not None and time.perf_counter() - t_start >= seconds:
                break
            frame, pending = (pending, None) if pending is not None else (src.read(), None)
            if frame is None:
                break
            labels, dt = seg(frame)
            lat.append(dt)
            n += 1
            now = time.perf_counter()
            inst = 1.0 / max(now - t_prev, 1e-9)
            fps = inst if n == 1 else 0.8 * fps + 0.2 * inst
            t_prev = now
            stats = {"frame": n, "latency_ms": dt * 1e3, "fps": fps,
                     "energy_uj": energy, "backend": backend_name, "model": model_path.name,
                     "source": src.name, "integer": seg.integer}
            text = (f"{kind} {dt * 1e3:.0f} ms  {fps:.1f} fps"
                    + (f"  {energy:.0f} uJ" if energy is not None else ""))
            last = overlay(frame, labels, names, stats=text)
            if server is not None:
                server.publish(encode_jpeg(last), stats)
            elif show is not None:
                show.imshow("edge demo seg", show.cvtColor(last, show.COLOR_RGB2BGR))
                if show.waitKey(1) & 0xFF == ord("q"):
                    break
            if server is None:
                counts = np.bincount(labels.ravel(), minlength=seg.classes) / labels.size
                top = ", ".join(f"{names[i]} {counts[i]:.0%}" for i in np.argsort(-counts)[:3]
                                if counts[i] > 0)
                click.echo(f"frame {n:4d}  latency {dt * 1e3:7.1f} ms  fps {fps:5.1f}"
                           + (f"  energy {energy:.1f} uJ" if energy is not None else "")
                           + f"  {top}")
            if max_fps > 0:
                wait = 1.0 / max_fps - (time.perf_counter() - now + dt)
                if wait > 0 and not src.live:
                    time.sleep(wait)
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        restore_sigterm()
        src.close()
        if server is not None:
            server.stop()
        if show is not None:
            show.destroyAllWindows()
    if save and last is not None:
        import cv2

        if not cv2.imwrite(save, cv2.cvtColor(last, cv2.COLOR_RGB2BGR)):
            raise click.ClickException(f"could not write {save}; use a .png or .jpg name in "
                                       "an existing folder")
    if lat:
        wall = time.perf_counter() - t_start
        click.echo(f"{n} frames in {wall:.1f} s: latency median "
                   f"{statistics.median(lat) * 1e3:.1f} ms, {n / wall:.1f} fps overall"
                   + (f", modelled energy {energy:.1f} uJ/frame" if energy is not None else ""))
    else:
        click.echo("no frames")
