/* Per-instruction execution counts for QEMU TCG (system emulation, one vCPU), written for
 * sdk.profile.qemu_mix.
 *
 *   qemu-system-arm ... -plugin file=libedgeinsn.so,out=/path/counts.txt[,flash=BASE:SIZE]
 *
 * Every translated instruction gets an inline 64-bit counter (no helper call, so the guest
 * runs at TCG speed). Loads also get a memory callback that counts the reads falling in the
 * flash window (BASE, SIZE in hex; default 0x21000000:0x400000, the firmware's flash in the
 * mps2-an386 PSRAM) and how many of them left the 8-byte and the 32-byte flash line of the
 * previous flash read (a one-line buffer: the wait-state model charges those).
 * At exit the plugin writes one line per distinct guest address that ran:
 * "ADDRESS_HEX COUNT FLASH_READS LINE8_FETCHES LINE32_FETCHES DISASSEMBLY". A block translated
 * twice (after a TB flush) gets a second set of counters; the lines are summed by address on
 * the Python side.
 *
 * QEMU's plugin header is not shipped by Debian's qemu-system packages, so the few entry
 * points used are declared here from the documented plugin API (QEMU_PLUGIN_VERSION 1, the
 * API of QEMU 6.x-7.x; QEMU checks the version below when it loads the plugin).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
typedef uint32_t qemu_plugin_meminfo_t;
typedef void (*mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info, uint64_t vaddr,
                         void *userdata);
typedef void (*tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb_t cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb_t cb, void *userdata);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn,
                                                enum qemu_plugin_op op, void *ptr,
                                                uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *insn);
_Bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t info);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, mem_cb_t cb,
                                      enum qemu_plugin_cb_flags flags,
                                      enum qemu_plugin_mem_rw rw, void *userdata);
void qemu_plugin_outs(const char *string);

EXPORT int qemu_plugin_version = 1;

typedef struct Slot {
    uint64_t count;          /* first: the inline add targets this address */
    uint64_t vaddr;
    uint64_t flash_reads, line8, line32;
    char *disas;
} Slot;

/* Slots live in fixed-size chunks that are never moved (QEMU keeps their addresses). */
#define CHUNK 4096
static Slot **chunks;
static size_t n_chunks, used_in_last = CHUNK;
static char out_path[1024] = "insn-counts.txt";
static uint64_t flash_base = 0x21000000u, flash_size = 0x400000u;
static uint64_t last8 = UINT64_MAX, last32 = UINT64_MAX;

static void on_load(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr,
                    void *userdata) {
    Slot *s = userdata;
    if (qemu_plugin_mem_is_store(info) || vaddr - flash_base >= flash_size)
        return;
    s->flash_reads++;
    if (vaddr >> 3 != last8) {
        last8 = vaddr >> 3;
        s->line8++;
    }
    if (vaddr >> 5 != last32) {
        last32 = vaddr >> 5;
        s->line32++;
    }
}

static Slot *new_slot(void) {
    if (used_in_last == CHUNK) {
        Slot **grown = realloc(chunks, (n_chunks + 1) * sizeof *chunks);
        Slot *chunk = calloc(CHUNK, sizeof(Slot));
        if (!grown || !chunk) {
            qemu_plugin_outs("edge insn plugin: out of memory\n");
            exit(1);
        }
        chunks = grown;
        chunks[n_chunks++] = chunk;
        used_in_last = 0;
    }
    return &chunks[n_chunks - 1][used_in_last++];
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        Slot *s = new_slot();
        s->vaddr = qemu_plugin_insn_vaddr(insn);
        s->disas = qemu_plugin_insn_disas(insn);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                   &s->count, 1);
        /* asked for reads and writes (QEMU 7.2 called nothing for reads alone here);
         * stores are skipped in the callback */
        qemu_plugin_register_vcpu_mem_cb(insn, on_load, QEMU_PLUGIN_CB_NO_REGS,
                                         QEMU_PLUGIN_MEM_RW, s);
    }
}

static void on_exit_(qemu_plugin_id_t id, void *userdata) {
    FILE *f = fopen(out_path, "w");
    if (!f) {
        qemu_plugin_outs("edge insn plugin: cannot open the output file\n");
        return;
    }
    for (size_t c = 0; c < n_chunks; c++) {
        size_t n = c + 1 == n_chunks ? used_in_last : CHUNK;
        for (size_t i = 0; i < n; i++) {
            Slot *s = &chunks[c][i];
            if (s->count)
                fprintf(f, "%" PRIx64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %s\n",
                        s->vaddr, s->count, s->flash_reads, s->line8, s->line32,
                        s->disas ? s->disas : "?");
        }
    }
    fclose(f);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                               char **argv) {
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
        } else if (strncmp(argv[i], "flash=", 6) == 0) {
            char *end;
            flash_base = strtoull(argv[i] + 6, &end, 16);
            flash_size = *end == ':' ? strtoull(end + 1, NULL, 16) : 0;
        } else {
            qemu_plugin_outs("edge insn plugin: unknown argument (out=FILE, flash=BASE:SIZE)\n");
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit_, NULL);
    return 0;
}
