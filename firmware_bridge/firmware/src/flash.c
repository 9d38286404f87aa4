/* Two image slots and a ping-pong boot record.

   Layout: [record 0 | record 1 | slot 0 | slot 1]. A record names the active slot and is
   protected by its own CRC; the newest valid record (highest sequence) wins. Activating a slot
   first verifies the image's CRC32, then writes a new record into the *older* record location,
   so a write torn by a power cut (or a killed emulator) leaves the previous record intact and
   the previous model boots. */
#include <string.h>
#include "fw.h"

#define BOOT_MAGIC 0x544F4F42u  /* "BOOT" */
typedef struct {
  uint32_t magic, seq, slot, image_size, image_crc, crc;
} boot_record_t;

static int active_slot = -1;

uint32_t flash_slot_size(void) {
  return ((port_flash_size() - FLASH_SLOTS_OFFSET) / 2u) & ~4095u;
}

uint32_t flash_slot_offset(int slot) {
  return FLASH_SLOTS_OFFSET + (uint32_t)slot * flash_slot_size();
}

static int record_valid(const boot_record_t *r) {
  return r->magic == BOOT_MAGIC && r->slot < 2u &&
         r->crc == crc32_update(0, (const uint8_t *)r, offsetof(boot_record_t, crc));
}

static const boot_record_t *record_at(int i) {
  return (const boot_record_t *)(port_flash() + (uint32_t)i * FLASH_RECORD_BYTES);
}

/* index of the newest valid record, or -1 */
static int newest_record(void) {
  const boot_record_t *a = record_at(0), *b = record_at(1);
  int va = record_valid(a), vb = record_valid(b);
  if (va && vb) return (b->seq > a->seq) ? 1 : 0;
  if (va) return 0;
  if (vb) return 1;
  return -1;
}

int flash_slot_valid(int slot, uint32_t *size, uint32_t *crc) {
  const img_header_t *h = (const img_header_t *)(port_flash() + flash_slot_offset(slot));
  if (h->magic != IMG_MAGIC || h->total_size < sizeof(img_header_t) ||
      h->total_size > flash_slot_size())
    return 0;
  uint32_t c = crc32_update(0, (const uint8_t *)h + 12, h->total_size - 12u);
  if (c != h->crc32) return 0;
  if (size) *size = h->total_size;
  if (crc) *crc = c;
  return 1;
}

int flash_active_slot(void) { return active_slot; }

int flash_activate(int slot) {
  uint32_t size, crc;
  if (slot < 0 || slot > 1) return ST_BAD_ARG;
  if (!flash_slot_valid(slot, &size, &crc)) return ST_CRC_MISMATCH;
  int newest = newest_record();
  boot_record_t r;
  r.magic = BOOT_MAGIC;
  r.seq = (newest < 0) ? 1u : record_at(newest)->seq + 1u;
  r.slot = (uint32_t)slot;
  r.image_size = size;
  r.image_crc = crc;
  r.crc = crc32_update(0, (const uint8_t *)&r, offsetof(boot_record_t, crc));
  int target = (newest == 0) ? 1 : 0;
  port_flash_write((uint32_t)target * FLASH_RECORD_BYTES, (const uint8_t *)&r, sizeof r);
  port_flash_sync();
  active_slot = slot;
  return ST_OK;
}

int flash_boot(void) {
  active_slot = -1;
  int newest = newest_record();
  if (newest < 0) return -1;
  const boot_record_t *r = record_at(newest);
  int slot = (int)r->slot;
  uint32_t size, crc;
  if (flash_slot_valid(slot, &size, &crc) && crc == r->image_crc) {
    active_slot = slot;
  } else {
    /* the active slot went bad (should not happen: loads never write the active slot);
       fall back to the older record's slot if it still verifies */
    const boot_record_t *o = record_at(1 - newest);
    if (record_valid(o) && flash_slot_valid((int)o->slot, &size, &crc) && crc == o->image_crc)
      active_slot = (int)o->slot;
  }
  return active_slot;
}
