/* The framed binary protocol (firmware_bridge/protocol.py is the host side).

   Frame on the wire: 0x00, COBS(payload), 0x00. Payload: marker 0x00, seq, cmd, status,
   body, CRC32(all before it) little-endian; requests carry status REQUEST_FLAG (0x80), so an
   echo of a request (loop://, a misconfigured pty) is never mistaken for a reply. The marker byte makes every binary frame's COBS
   code byte 0x01, so a line of printable text ending in '%' is told apart as an MLPerf Tiny
   command. A frame with a bad CRC is dropped (the host times out and retries). A request that
   repeats the previous one (same seq and CRC) gets the cached reply without running again, so
   retries and duplicated frames never execute a command twice. */
#include <string.h>
#include "fw.h"

#define REQUEST_FLAG 0x80u

static uint8_t rx_enc[2 * FRAME_MAX_PAYLOAD + 16];
static uint8_t rx[FRAME_MAX_PAYLOAD + 8];
static uint8_t tx[FRAME_MAX_PAYLOAD + 8];
static uint8_t tx_enc[FRAME_MAX_PAYLOAD + FRAME_MAX_PAYLOAD / 254 + 8];
static size_t tx_enc_len;
static int have_last;
static uint8_t last_seq;
static uint32_t last_crc;

static struct { int active; int slot; uint32_t size, crc; } load;

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static uint32_t get_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t get_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

void link_puts(const char *s) {
  port_write((const uint8_t *)s, strlen(s));
  port_write((const uint8_t *)"\r\n", 2);
  port_flush();
}

static void send_reply(uint8_t seq, uint8_t cmd, uint8_t status, size_t body_len) {
  tx[0] = 0; tx[1] = seq; tx[2] = cmd; tx[3] = status;
  size_t n = FRAME_HEADER + body_len;
  put_u32(tx + n, crc32_update(0, tx, n));
  tx_enc[0] = 0;
  size_t e = cobs_encode(tx, n + 4, tx_enc + 1);
  tx_enc[1 + e] = 0;
  tx_enc_len = e + 2;
  port_write(tx_enc, tx_enc_len);
  port_flush();
}

static int open_active(void) {
  int slot = flash_active_slot();
  if (slot < 0) { model_close(); return ST_NO_MODEL; }
  return model_open(port_flash() + flash_slot_offset(slot), flash_slot_size());
}

/* body handlers return the status and write the reply body into tx + FRAME_HEADER */
static int handle(uint8_t cmd, const uint8_t *b, size_t n, size_t *out_len) {
  uint8_t *o = tx + FRAME_HEADER;
  *out_len = 0;
  switch (cmd) {
    case CMD_HELLO: {
      uint32_t crc[2] = {0, 0};
      uint8_t valid[2];
      for (int s = 0; s < 2; s++) valid[s] = (uint8_t)flash_slot_valid(s, 0, &crc[s]);
      put_u16(o, FW_VERSION); put_u16(o + 2, FRAME_MAX_BODY);
      put_u32(o + 4, flash_slot_size()); put_u32(o + 8, port_arena_size());
      put_u32(o + 12, port_ram_size()); put_u32(o + 16, port_tick_hz());
      o[20] = (uint8_t)(int8_t)flash_active_slot(); o[21] = valid[0]; o[22] = valid[1];
      o[23] = (uint8_t)model_ready();
      put_u32(o + 24, crc[0]); put_u32(o + 28, crc[1]);
      put_u32(o + 32, model_n_io(0)); put_u32(o + 36, model_n_io(1));
      put_u32(o + 40, model_n_io(2)); put_u32(o + 44, model_n_ops());
      memset(o + 48, 0, 16);
      strncpy((char *)o + 48, port_board(), 15);
      *out_len = 64;
      return ST_OK;
    }
    case CMD_LOAD_BEGIN: {
      if (n < 12) return ST_BAD_ARG;
      int slot = b[0];
      uint32_t size = get_u32(b + 4), crc = get_u32(b + 8);
      if (slot > 1) return ST_BAD_ARG;
      if (slot == flash_active_slot()) return ST_SLOT_ACTIVE;
      if (size > flash_slot_size() || size < sizeof(img_header_t)) return ST_TOO_BIG;
      static const uint8_t zeros[16] = {0};
      port_flash_write(flash_slot_offset(slot), zeros, sizeof zeros);  /* invalidate */
      load.active = 1; load.slot = slot; load.size = size; load.crc = crc;
      return ST_OK;
    }
    case CMD_LOAD_CHUNK: {
      if (n < 8) return ST_BAD_ARG;
      uint32_t off = get_u32(b + 4), len = (uint32_t)(n - 8);
      if (!load.active || b[0] != load.slot) return ST_NOT_LOADING;
      if ((uint64_t)off + len > load.size) return ST_BAD_ARG;
      port_flash_write(flash_slot_offset(load.slot) + off, b + 8, len);
      return ST_OK;
    }
    case CMD_LOAD_COMMIT: {
      if (n < 1) return ST_BAD_ARG;
      if (!load.active || b[0] != load.slot) return ST_NOT_LOADING;
      port_flash_sync();
      uint32_t size, crc;
      const uint8_t *img = port_flash() + flash_slot_offset(load.slot);
      if (!flash_slot_valid(load.slot, &size, &crc) || size != load.size || crc != load.crc) {
        load.active = 0;
        return ST_CRC_MISMATCH;
      }
      int st = model_open(img, flash_slot_size());
      if (st != ST_OK) { load.active = 0; open_active(); return st; }
      st = flash_activate(load.slot);
      load.active = 0;
      if (st != ST_OK) { open_active(); return st; }
      return ST_OK;
    }
    case CMD_SELECT: {
      if (n < 1 || b[0] > 1) return ST_BAD_ARG;
      if (!flash_slot_valid(b[0], 0, 0)) return ST_CRC_MISMATCH;
      int st = model_open(port_flash() + flash_slot_offset(b[0]), flash_slot_size());
      if (st != ST_OK) { open_active(); return st; }
      return flash_activate(b[0]);
    }
    case CMD_SET_INPUT: case CMD_SET_STATE: case CMD_GET_OUTPUT: case CMD_GET_STATE: {
      if (n < 8) return ST_BAD_ARG;
      int kind = cmd == CMD_SET_INPUT ? 0 : cmd == CMD_GET_OUTPUT ? 1 : 2;
      uint8_t *ptr; uint32_t nbytes, off = get_u32(b + 4);
      int st = model_io(kind, b[0], &ptr, &nbytes);
      if (st != ST_OK) return st;
      if (cmd == CMD_SET_INPUT || cmd == CMD_SET_STATE) {
        uint32_t len = (uint32_t)(n - 8);
        if ((uint64_t)off + len > nbytes) return ST_BAD_ARG;
        memcpy(ptr + off, b + 8, len);
        return ST_OK;
      }
      if (n < 10) return ST_BAD_ARG;
      uint32_t len = get_u16(b + 8);
      if (len > FRAME_MAX_BODY || (uint64_t)off + len > nbytes) return ST_BAD_ARG;
      memcpy(o, ptr + off, len);
      *out_len = len;
      return ST_OK;
    }
    case CMD_INVOKE: {
      uint32_t t0 = port_ticks();
      int st = model_invoke();
      put_u32(o, port_ticks() - t0);
      put_u32(o + 4, (uint32_t)model_exit());  /* early exit taken, 0xffffffff: none */
      *out_len = 8;
      return st;
    }
    case CMD_GET_PROFILE: {
      uint32_t first = n >= 4 ? get_u32(b) : 0, total = model_n_ops();
      if (!model_ready()) return ST_NO_MODEL;
      put_u32(o, total);
      uint32_t k = 0;
      const uint32_t *ticks = model_profile();
      for (; first + k < total && 4u * (k + 2u) <= FRAME_MAX_BODY; k++) put_u32(o + 4 + 4 * k, ticks[first + k]);
      *out_len = 4 + 4 * k;
      return ST_OK;
    }
    case CMD_RESET: {
      load.active = 0;
      flash_boot();
      int st = open_active();
      return st == ST_NO_MODEL ? ST_OK : st;
    }
    default:
      return ST_BAD_CMD;
  }
}

static void on_frame(const uint8_t *enc, size_t n) {
  long len = cobs_decode(enc, n, rx, sizeof rx);
  if (len < (long)(FRAME_HEADER + 4) || rx[0] != 0 || rx[3] != REQUEST_FLAG) return;
  uint32_t crc = get_u32(rx + len - 4);
  if (crc != crc32_update(0, rx, (size_t)len - 4)) return;  /* corrupted: drop */
  uint8_t seq = rx[1], cmd = rx[2];
  if (have_last && seq == last_seq && crc == last_crc) {  /* retry or duplicate */
    port_write(tx_enc, tx_enc_len);
    port_flush();
    return;
  }
  size_t out_len;
  int st = handle(cmd, rx + FRAME_HEADER, (size_t)len - FRAME_HEADER - 4, &out_len);
  have_last = 1; last_seq = seq; last_crc = crc;
  send_reply(seq, cmd, (uint8_t)st, out_len);
}

void protocol_run(void) {
  flash_boot();
  open_active();
  size_t n = 0;
  int overflow = 0;
  for (;;) {
    int c = port_read_byte();
    if (c < 0) return;
    if (c == 0) {
      if (n && !overflow && rx_enc[0] == 0x01) on_frame(rx_enc, n);
      n = 0; overflow = 0;
      continue;
    }
    if (n == 0 && (c == '\r' || c == '\n' || c == ' ')) continue;
    if (n >= sizeof rx_enc - 1) { overflow = 1; n = 0; continue; }
    rx_enc[n++] = (uint8_t)c;
    if (c == '%' && rx_enc[0] != 0x01) {   /* MLPerf Tiny text command */
      rx_enc[n - 1] = 0;
      mlperf_command((const char *)rx_enc);
      n = 0;
    }
  }
}
