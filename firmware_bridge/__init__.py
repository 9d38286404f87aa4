"""Host <-> microcontroller link: framing, commands, flash images, firmware launchers.

* :mod:`firmware_bridge.framing` — COBS + CRC32 frames
* :mod:`firmware_bridge.protocol` — commands, status codes, HELLO layout
* :mod:`firmware_bridge.client` — :class:`DeviceClient` over any pyserial URL
* :mod:`firmware_bridge.image` — :func:`pack_image`: integer graph -> flash image
* :mod:`firmware_bridge.host_firmware` / :mod:`firmware_bridge.qemu` — run the firmware as a
  host process (pty) or on an emulated Cortex-M4 (QEMU mps2-an386, socket://)
* :mod:`firmware_bridge.faults` — fault injection on a link
"""
