/* MLPerf Tiny benchmark runner text protocol: commands end with '%', replies are "m-..." lines
   followed by "m-ready"; errors are "e-[...]". Results are the raw integer outputs of output 0
   (the firmware is integer-only; the host knows the output scale). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fw.h"

#define DB_MAX 65536u
static uint8_t db[DB_MAX];
static uint32_t db_expect, db_have;

static void printf_line(const char *fmt, long a) {
  char line[96];
  snprintf(line, sizeof line, fmt, a);
  link_puts(line);
}

static void print_results(void) {
  uint8_t *p; uint32_t nb;
  if (model_io(1, 0, &p, &nb) != ST_OK) { link_puts("e-[no model loaded]"); return; }
  char line[FRAME_MAX_BODY];
  size_t o = (size_t)snprintf(line, sizeof line, "m-results-[");
  for (uint32_t i = 0; i < nb && o + 8 < sizeof line; i++)
    o += (size_t)snprintf(line + o, sizeof line - o, i ? ",%d" : "%d", (int)(int8_t)p[i]);
  snprintf(line + o, sizeof line - o, "]");
  link_puts(line);
}

static int run_once(void) {
  uint8_t *p; uint32_t nb;
  if (model_io(0, 0, &p, &nb) != ST_OK) return ST_NO_MODEL;
  memcpy(p, db, db_have < nb ? db_have : nb);
  return model_invoke();
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void mlperf_command(const char *line) {
  char cmd[32] = {0};
  sscanf(line, "%31s", cmd);
  if (!strcmp(cmd, "name")) {
    link_puts("m-name-[edge-fw]");
  } else if (!strcmp(cmd, "profile")) {
    link_puts("m-profile-[ULPMark for tinyML Firmware V0.0.1]");
    char l[64];
    snprintf(l, sizeof l, "m-model-[%s]", port_board());
    link_puts(l);
  } else if (!strcmp(cmd, "db")) {
    const char *arg = line + 2;
    while (*arg == ' ') arg++;
    if (!strncmp(arg, "load", 4)) {
      long n = strtol(arg + 4, 0, 10);
      if (n <= 0 || (unsigned long)n > DB_MAX) {
        link_puts("e-[db load size out of range]");
      } else {
        db_expect = (uint32_t)n; db_have = 0;
        printf_line("m-[Expecting %ld bytes]", n);
      }
    } else {
      for (const char *c = arg; c[0] && c[1]; c += 2) {
        int hi = hexval(c[0]), lo = hexval(c[1]);
        if (hi < 0 || lo < 0) { link_puts("e-[db: bad hex]"); break; }
        if (db_have < db_expect) db[db_have++] = (uint8_t)(hi * 16 + lo);
      }
      if (db_expect && db_have == db_expect) link_puts("m-load-done");
    }
  } else if (!strcmp(cmd, "infer")) {
    long n = 1, w = 0;
    sscanf(line, "%*s %ld %ld", &n, &w);
    printf_line("m-warmup-start-%ld", w);
    int st = ST_OK;
    for (long i = 0; i < w && st == ST_OK; i++) st = run_once();
    link_puts("m-warmup-done");
    uint32_t t0 = port_ticks();
    printf_line("m-infer-start-%ld", n);
    for (long i = 0; i < n && st == ST_OK; i++) st = run_once();
    uint32_t dt = port_ticks() - t0;
    printf_line("m-lap-ticks-%ld", (long)dt);
    link_puts("m-infer-done");
    if (st != ST_OK) printf_line("e-[inference failed: status %ld]", st);
    else print_results();
  } else if (!strcmp(cmd, "results")) {
    print_results();
  } else {
    char l[64];
    snprintf(l, sizeof l, "e-[Unknown command: %.40s]", cmd);
    link_puts(l);
  }
  link_puts("m-ready");
}
