/* Edge firmware: shared definitions (wire protocol, image format, platform port). */
#ifndef EDGE_FW_H
#define EDGE_FW_H
#include <stdint.h>
#include <stddef.h>

#define FW_VERSION 0x0100u      /* major.minor */
#define FRAME_MAX_BODY 1024u    /* request/response body bytes */
#define FRAME_HEADER 4u         /* marker(0), seq, cmd, status */
#define FRAME_MAX_PAYLOAD (FRAME_HEADER + FRAME_MAX_BODY + 4u)  /* + CRC32 */

/* Commands (see firmware_bridge/protocol.py, the host-side twin). */
enum {
  CMD_HELLO = 0x01, CMD_LOAD_BEGIN = 0x10, CMD_LOAD_CHUNK = 0x11, CMD_LOAD_COMMIT = 0x12,
  CMD_SELECT = 0x13, CMD_SET_INPUT = 0x20, CMD_INVOKE = 0x21, CMD_GET_OUTPUT = 0x22,
  CMD_GET_PROFILE = 0x23, CMD_GET_STATE = 0x24, CMD_SET_STATE = 0x25, CMD_RESET = 0x30,
};

enum {
  ST_OK = 0, ST_BAD_CMD = 1, ST_BAD_ARG = 2, ST_NO_MODEL = 3, ST_CRC_MISMATCH = 4,
  ST_TOO_BIG = 5, ST_BAD_IMAGE = 6, ST_SLOT_ACTIVE = 7, ST_NOT_LOADING = 8,
  ST_UNSUPPORTED_OP = 9, ST_INVOKE_FAILED = 10,
};

/* ---- image format (firmware_bridge/image.py writes it) ---- */
#define IMG_MAGIC 0x474D4945u   /* "EIMG" little-endian */
#define IMG_VERSION 1u
typedef struct {
  uint32_t magic;          /* IMG_MAGIC */
  uint32_t total_size;     /* bytes of the whole image */
  uint32_t crc32;          /* CRC32 of bytes [12, total_size) */
  uint16_t version;
  uint16_t header_size;
  uint32_t n_ops, ops_offset, ops_bytes;
  uint32_t n_tensors, tensors_offset;
  uint32_t n_inputs, n_outputs, n_state, io_offset;  /* io: inputs, outputs, state (in,out) pairs */
  uint32_t arena_size;     /* bytes of RAM the arena plan needs */
  uint32_t weights_offset, weights_bytes;
  uint32_t reserved[3];
} img_header_t;            /* 76 bytes */

enum { DT_INT8 = 0, DT_UINT8 = 1, DT_INT16 = 2, DT_INT32 = 3 };
enum { TK_CONST = 0, TK_ARENA = 1 };
typedef struct {
  uint8_t dtype, kind, ndim, pad;
  int32_t zero_point;
  uint32_t offset;         /* into the image (const) or the arena */
  uint32_t nbytes;
  uint32_t dims[4];
} img_tensor_t;            /* 32 bytes */

/* op record: u16 opcode, u8 n_in, u8 n_out, u16 n_params, u16 words (record length in 32-bit
   words); then (n_in + n_out) u16 tensor ids padded to 4 bytes; then n_params int32. */
#define TENSOR_NONE 0xFFFFu

/* ---- platform port (port_host.c / port_m4.c) ---- */
int port_read_byte(void);                        /* blocking; -1 on end of link */
void port_write(const uint8_t *p, size_t n);
void port_flush(void);
uint8_t *port_flash(void);                       /* memory-mapped flash base */
uint32_t port_flash_size(void);
void port_flash_write(uint32_t off, const uint8_t *p, uint32_t n);
void port_flash_sync(void);                      /* make writes durable */
uint8_t *port_arena(void);
uint32_t port_arena_size(void);
uint32_t port_ticks(void);                       /* free-running counter */
uint32_t port_tick_hz(void);
const char *port_board(void);
uint32_t port_ram_size(void);

/* ---- modules ---- */
uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n);
size_t cobs_encode(const uint8_t *in, size_t n, uint8_t *out);
long cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap);

/* flash: boot records + two slots */
#define FLASH_RECORD_BYTES 4096u
#define FLASH_SLOTS_OFFSET (2u * FLASH_RECORD_BYTES)
uint32_t flash_slot_size(void);
uint32_t flash_slot_offset(int slot);
int flash_boot(void);                            /* returns active slot or -1 */
int flash_active_slot(void);
int flash_slot_valid(int slot, uint32_t *size, uint32_t *crc);
int flash_activate(int slot);                    /* verify CRC, write boot record; status */

/* model */
int model_open(const uint8_t *image, uint32_t size);  /* status */
void model_close(void);
int model_ready(void);
int model_invoke(void);
uint32_t model_n_ops(void);
const uint32_t *model_profile(void);
int model_io(int kind, uint32_t index, uint8_t **ptr, uint32_t *nbytes);  /* kind 0 in,1 out,2 state */
void model_reset_state(void);
uint32_t model_n_io(int kind);
int model_exit(void);  /* early exit taken by the last INVOKE (-1: none fired) */

/* protocol */
void protocol_run(void);
void mlperf_command(const char *line);
void link_puts(const char *s);
#endif
