/* Cortex-M4 port for QEMU mps2-an386.
   - link: CMSDK APB UART0 at 0x40004000, polled (QEMU drops transmit unless BAUDDIV >= 16);
   - ticks: CMSDK TIMER0 at 0x40000000 counting down at 25 MHz, read as an up-counter. Under
     `-icount shift=N` the emulated clock advances 2^N ns per instruction, so ticks are a
     deterministic instruction clock: instructions = ticks * 40 / 2^N;
   - flash: 4 MiB at 0x21000000, the board's PSRAM, which the launcher backs with a file
     (memory-backend-file, share=on) so a killed emulator keeps what was written;
   - arena: the data SSRAM between .bss/heap and the stack (see mps2_an386.ld). */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include "fw.h"

#define REG(addr) (*(volatile uint32_t *)(addr))
#define UART0 0x40004000u
#define UART_DATA REG(UART0 + 0x00)
#define UART_STATE REG(UART0 + 0x04)
#define UART_CTRL REG(UART0 + 0x08)
#define UART_BAUDDIV REG(UART0 + 0x10)
#define TIMER0 0x40000000u
#define TIMER_CTRL REG(TIMER0 + 0x00)
#define TIMER_VALUE REG(TIMER0 + 0x04)
#define TIMER_RELOAD REG(TIMER0 + 0x08)
#define TIMER1 0x40001000u
#ifndef KICK_TICKS
#define KICK_TICKS 2500u
#endif

#define FLASH_BASE ((uint8_t *)0x21000000u)
#define FLASH_BYTES (4u << 20)

extern uint8_t __arena_start, __arena_end, __heap_start, __heap_end;

int port_read_byte(void) {
  while (!(UART_STATE & 2u)) {}
  return (int)(UART_DATA & 0xFFu);
}

void port_write(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    while (UART_STATE & 1u) {}
    UART_DATA = p[i];
  }
}

void port_flush(void) {}
uint8_t *port_flash(void) { return FLASH_BASE; }
uint32_t port_flash_size(void) { return FLASH_BYTES; }
void port_flash_write(uint32_t off, const uint8_t *p, uint32_t n) {
  if ((uint64_t)off + n <= FLASH_BYTES) memcpy(FLASH_BASE + off, p, n);
}
void port_flash_sync(void) { __asm__ volatile("dsb" ::: "memory"); }
uint8_t *port_arena(void) { return &__arena_start; }
uint32_t port_arena_size(void) { return (uint32_t)(&__arena_end - &__arena_start); }
uint32_t port_ram_size(void) { return 4u << 20; }
uint32_t port_ticks(void) { return 0xFFFFFFFFu - TIMER_VALUE; }
uint32_t port_tick_hz(void) { return 25000000u; }
const char *port_board(void) { return "mps2-an386"; }

/* newlib's printf family may allocate: a bounded heap of its own */
void *_sbrk(ptrdiff_t incr) {
  static uint8_t *brk = &__heap_start;
  if (brk + incr > &__heap_end) { errno = ENOMEM; return (void *)-1; }
  uint8_t *old = brk;
  brk += incr;
  return old;
}

int main(void) {
  UART_BAUDDIV = 16u;
  UART_CTRL = 3u;          /* TX and RX enable */
  TIMER_RELOAD = 0xFFFFFFFFu;
  TIMER_VALUE = 0xFFFFFFFFu;
  TIMER_CTRL = 1u;         /* enable, no interrupt */
  /* QEMU's CMSDK UART does not tell the chardev when the guest empties its 1-byte receive
     buffer, so a byte is only taken when QEMU's main loop wakes up for another reason. A
     periodic timer (no interrupt: it costs the guest no instructions) re-arms a QEMU timer
     and so wakes the main loop every KICK_TICKS ticks of emulated time. */
  REG(TIMER1 + 0x08) = KICK_TICKS;
  REG(TIMER1 + 0x04) = KICK_TICKS;
  REG(TIMER1 + 0x00) = 1u;
  protocol_run();
  return 0;
}
