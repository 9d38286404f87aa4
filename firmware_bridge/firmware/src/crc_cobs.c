/* CRC32 (IEEE 802.3, reflected, as zlib.crc32) and COBS framing. */
#include "fw.h"

uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n) {
  static uint32_t table[256];
  static int ready = 0;
  if (!ready) {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    ready = 1;
  }
  crc = ~crc;
  for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

/* Consistent Overhead Byte Stuffing: output holds no zero byte; a code byte c says "c-1 data
   bytes follow, then a zero" (c = 0xFF: 254 bytes and no zero). */
size_t cobs_encode(const uint8_t *in, size_t n, uint8_t *out) {
  size_t code_at = 0, o = 1;
  uint8_t code = 1;
  for (size_t i = 0; i < n; i++) {
    if (in[i] == 0) {
      out[code_at] = code; code = 1; code_at = o++;
    } else {
      out[o++] = in[i];
      if (++code == 0xFF) { out[code_at] = code; code = 1; code_at = o++; }
    }
  }
  out[code_at] = code;
  return o;
}

long cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
  size_t i = 0, o = 0;
  while (i < n) {
    uint8_t code = in[i++];
    if (code == 0) return -1;
    for (uint8_t k = 1; k < code; k++) {
      if (i >= n || o >= cap) return -1;
      out[o++] = in[i++];
    }
    if (code != 0xFF && i < n) {
      if (o >= cap) return -1;
      out[o++] = 0;
    }
  }
  return (long)o;
}
