/* Cortex-M4 start-up: vector table, .data copy, .bss clear, then main. */
#include <stdint.h>
#include <string.h>

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
int main(void);

void reset_handler(void) {
  memcpy(&__data_start, &__data_load, (size_t)((char *)&__data_end - (char *)&__data_start));
  memset(&__bss_start, 0, (size_t)((char *)&__bss_end - (char *)&__bss_start));
  main();
  for (;;) {}
}

static void fault_handler(void) {
  for (;;) {}
}

__attribute__((section(".vectors"), used))
static void (*const vectors[16])(void) = {
  (void (*)(void))(&__stack_top), reset_handler, fault_handler, fault_handler,
  fault_handler, fault_handler, fault_handler, 0, 0, 0, 0, fault_handler, fault_handler, 0,
  fault_handler, fault_handler,
};
