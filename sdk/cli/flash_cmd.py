"""`edge flash MODEL.edge --port URL`: load a model into a board (real or emulated)."""

from __future__ import annotations

import sys
import time

import click


@click.command("flash")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--port", required=True,
              help="serial URL: /dev/ttyACM0, socket://127.0.0.1:PORT (edge emulate), loop://")
@click.option("--slot", type=click.IntRange(0, 1), default=None,
              help="A/B slot to write (default: the inactive one)")
@click.option("--force", is_flag=True, help="load even if the device already runs this image")
def command(model: str, port: str, slot: int | None, force: bool) -> None:
    """Pack MODEL into a flash image and load it into the device's inactive A/B slot.

    The device checks the image's CRC32 before it switches slots, so an interrupted load
    leaves the previous model running. (Flashing the firmware itself onto a real board goes
    through its debug probe, e.g. pyocd.)
    """
    from rich.progress import BarColumn, Progress, TransferSpeedColumn

    from firmware_bridge.image import pack_image
    from firmware_bridge.session import DeviceModel
    from sdk.backends.emulator import FitReport, activation_widths, decide_fit
    from sdk.backends.mcu import connect
    from sdk.compile.bundle import load_bundle
    from sdk.errors import TargetError

    graph = load_bundle(model).graph
    packed = pack_image(graph)
    client = connect(port)
    DeviceModel(client, packed, load=False)
    info = client.hello()
    # refuse before any byte of the model is sent: the one fit decision compile and profile
    # use, with the device's own slot and arena sizes
    fit = decide_fit(FitReport(info.board, packed.arena_bytes, info.arena_size, 0,
                               2 * info.slot_size, image_bytes=len(packed.data),
                               slot_bytes=info.slot_size), *activation_widths(graph))
    if not fit.fits:
        raise TargetError(fit.message(graph.name))
    info = client.info
    if not force and info.active_slot >= 0 and info.slot_crc[info.active_slot] == packed.crc32:
        click.echo(f"{info.board} already runs this image (slot {info.active_slot}, "
                   f"crc32 {packed.crc32:08x}); use --force to load it again")
        return
    t0 = time.monotonic()
    with Progress("{task.description}", BarColumn(), TransferSpeedColumn(), transient=True,
                  disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"flashing {graph.name}", total=len(packed.data))
        used = client.load_image(packed.data, slot,
                                 progress=lambda done, total: bar.update(task, completed=done))
    dt = time.monotonic() - t0
    click.echo(f"flashed {graph.name} to {info.board} slot {used}: {len(packed.data)} B image "
               f"(crc32 {packed.crc32:08x}), arena {packed.arena_bytes} B, "
               f"{len(packed.op_names)} ops, {dt:.2f} s ({len(packed.data) / dt / 1024:.1f} KiB/s)")
