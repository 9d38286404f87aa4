"""`edge emulate --target mps2-an386`: run the firmware on an emulated board."""

from __future__ import annotations

import click


@click.command("emulate")
@click.option("--target", default="mps2-an386", show_default=True,
              type=click.Choice(["mps2-an386", "host", "raspberry-pi-4"]),
              help="mps2-an386: Cortex-M4 build in QEMU; host: the firmware as a local process; "
                   "raspberry-pi-4: `edge agent` on an arm64 Debian under qemu-aarch64 "
                   "(built once, cached; sdk/agent/emulated_pi.py)")
@click.option("--flash", "flash_path", type=click.Path(dir_okay=False),
              help="file backing the board's flash (kept across runs); default: a temp file")
@click.option("--tcp-port", type=int, default=None, help="TCP port of the serial link")
@click.option("--icount-shift", type=click.IntRange(0, 10), default=6, show_default=True,
              help="QEMU -icount shift: 2^N ns per instruction (deterministic counts)")
@click.option("--model", type=click.Path(dir_okay=False), help="a .edge bundle to flash at start")
@click.option("--print-url", is_flag=True, help="print the serial URL and return (the "
                                                "emulator keeps running in the background)")
def command(target: str, flash_path: str | None, tcp_port: int | None, icount_shift: int,
            model: str | None, print_url: bool) -> None:
    """Build the firmware if needed, start the emulated board and print its serial URL.

    The normal backend API then works against it, e.g.
    `edge flash MODEL.edge --port URL` and the `mcu` backend with `port=URL`.
    """
    if target == "raspberry-pi-4":
        from sdk.agent.emulated_pi import emulate_cli

        emulate_cli(port=tcp_port, model=model, print_url=print_url, say=click.echo)
        return
    if print_url and target == "host":
        raise click.UsageError("--print-url needs --target mps2-an386 (the host build stops "
                               "with this command)")
    if print_url and flash_path is None:
        import tempfile
        from pathlib import Path
        flash_path = str(Path(tempfile.mkdtemp(prefix="edge-emulate-")) / "flash.bin")
    if target == "host":
        from firmware_bridge.host_firmware import HostFirmware
        board = HostFirmware(flash_path)
        note = "host build on a pty; counts are nanoseconds"
    else:
        from firmware_bridge.qemu import QemuFirmware
        board = QemuFirmware(flash_path, icount_shift=icount_shift, port=tcp_port,
                             detached=print_url)
        note = (f"QEMU {target}, -icount shift={icount_shift}: profile counts are instructions "
                "(not cycles)")
    url = board.start()
    click.echo(f"serial: {url}")
    click.echo(note)
    if model:
        from firmware_bridge.image import pack_image
        from firmware_bridge.session import DeviceModel
        from sdk.backends.mcu import connect
        from sdk.compile.bundle import load_bundle

        client = connect(url)
        DeviceModel(client, pack_image(load_bundle(model).graph))
        click.echo(f"flashed {model}")
        if print_url:
            client.close()
    if print_url:
        board.proc = None  # leave it running: the caller owns it now
        return
    click.echo("press Ctrl-C to stop")
    try:
        board.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
