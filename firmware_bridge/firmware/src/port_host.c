/* Host port: the firmware as a Linux process. The serial link is a pseudo-terminal (its path
   is printed on stdout as "pty: /dev/pts/N"), flash is a file mapped into memory (writes land
   in the page cache at once, so a killed process keeps what it wrote, like real flash), the
   arena is a heap block and ticks are nanoseconds of CLOCK_MONOTONIC.
   usage: edge-fw-host FLASH_FILE [FLASH_BYTES [ARENA_BYTES]] */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include "fw.h"

static int master = -1;
static uint8_t *flash;
static uint32_t flash_size = 4u << 20, arena_size = 1u << 20;
static uint8_t *arena;
static uint8_t txbuf[8192];
static size_t txlen;

int port_read_byte(void) {
  static uint8_t buf[4096];
  static ssize_t have, pos;
  while (pos >= have) {
    port_flush();
    have = read(master, buf, sizeof buf);
    pos = 0;
    if (have < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EIO) { usleep(2000); have = 0; continue; }
      return -1;
    }
  }
  return buf[pos++];
}

void port_flush(void) {
  size_t off = 0;
  while (off < txlen) {
    ssize_t w = write(master, txbuf + off, txlen - off);
    if (w < 0) { if (errno == EINTR || errno == EAGAIN) { usleep(1000); continue; } break; }
    off += (size_t)w;
  }
  txlen = 0;
}

void port_write(const uint8_t *p, size_t n) {
  while (n) {
    if (txlen == sizeof txbuf) port_flush();
    size_t k = sizeof txbuf - txlen < n ? sizeof txbuf - txlen : n;
    memcpy(txbuf + txlen, p, k);
    txlen += k; p += k; n -= k;
  }
}

uint8_t *port_flash(void) { return flash; }
uint32_t port_flash_size(void) { return flash_size; }
void port_flash_write(uint32_t off, const uint8_t *p, uint32_t n) {
  if ((uint64_t)off + n <= flash_size) memcpy(flash + off, p, n);
}
void port_flash_sync(void) { msync(flash, flash_size, MS_ASYNC); }
uint8_t *port_arena(void) { return arena; }
uint32_t port_arena_size(void) { return arena_size; }
uint32_t port_ram_size(void) { return arena_size; }
uint32_t port_ticks(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint32_t)((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
}
uint32_t port_tick_hz(void) { return 1000000000u; }
const char *port_board(void) { return "host"; }

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s FLASH_FILE [FLASH_BYTES [ARENA_BYTES]]\n", argv[0]); return 2; }
  if (argc > 2) flash_size = (uint32_t)strtoul(argv[2], 0, 0);
  if (argc > 3) arena_size = (uint32_t)strtoul(argv[3], 0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  int fd = open(argv[1], O_RDWR | O_CREAT, 0644);
  if (fd < 0 || ftruncate(fd, flash_size) != 0) { perror(argv[1]); return 1; }
  flash = mmap(0, flash_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (flash == MAP_FAILED) { perror("mmap"); return 1; }
  arena = aligned_alloc(64, arena_size);
  master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) || unlockpt(master)) { perror("pty"); return 1; }
  const char *name = ptsname(master);
  int slave = open(name, O_RDWR | O_NOCTTY);  /* held open so reads block instead of EIO */
  struct termios tio;
  tcgetattr(slave, &tio);
  cfmakeraw(&tio);
  tcsetattr(slave, TCSANOW, &tio);
  printf("pty: %s\n", name);
  fflush(stdout);
  protocol_run();
  return 0;
}
